"""Sub-device takeover: may a gateway take another gateway's sub-device? One policy for every
dialect in which a gateway can name a sub-device it does not own (ThingsBoard connect, data and
the ``topology/add`` extension; Alink ``thing/topo/add``).

``subdevice_takeover`` (settings):

- ``when_parent_offline`` (default): a gateway takes a sub-device from another gateway only while
  that gateway is offline, i.e. no session serves it (the session directory,
  :class:`~gatehub.services.presence.SessionDirectory`; a gateway whose node crashed has no
  session, whatever the database still says). While it is online the takeover is refused: the
  dialect drops what the gateway sent for that sub-device (ThingsBoard has no per-device error)
  or answers a per-device error (the extension, Alink), and the refusal is counted
  (:attr:`SubdeviceTakeover.refused`, ``gatehub_subdevice_takeovers_refused``) and logged.
- ``allow``: ThingsBoard's behaviour, the gateway that names a sub-device last takes it.

Every takeover that happens is counted (``gatehub_subdevice_takeovers``) and logged (WARNING
when the old gateway was online, INFO otherwise) with the tenant, the sub-device, the old and
the new gateway; the store publishes it on the bus as topology events of both gateways
(``t.{tenant}.topology.{gateway}`` with ``"takeovers": [{"deviceId", "from", "to"}]``), which the
REST event stream (``/events/stream?types=topology``) and the gateways' topology pushes carry.
"""

from __future__ import annotations

import logging

from gatehub.config import Settings
from gatehub.domain.model import Device
from gatehub.services.presence import SessionDirectory

__all__ = ["ALLOW", "WHEN_PARENT_OFFLINE", "SubdeviceTakeover"]

log = logging.getLogger(__name__)

ALLOW = "allow"
WHEN_PARENT_OFFLINE = "when_parent_offline"


class SubdeviceTakeover:
    def __init__(self, settings: Settings, presence: SessionDirectory) -> None:
        self.mode = settings.subdevice_takeover
        self.presence = presence
        self.taken = 0  # takeovers that happened
        self.refused = 0  # attempts refused (each message or request whose part for the device was dropped)

    def parent_online(self, gateway_id: str) -> bool:
        """Whether a live session serves ``gateway_id`` now."""
        s = self.presence.local_device(gateway_id)
        return s is not None and not s.closed

    def check(self, device: Device, new_parent: str, *, via: str, quiet: bool = False) -> str | None:
        """None when ``new_parent`` may have ``device`` (it is unowned, already its own, or the
        policy lets it move); otherwise why not. A refusal is counted, and logged unless
        ``quiet`` (a dialect that already said so for this session and device)."""
        old = device.parent_id
        if old is None or old == new_parent or self.mode == ALLOW or not self.parent_online(old):
            return None
        self.refused += 1
        why = (
            f"{device.name!r} ({device.id}) belongs to gateway {old}, which is online; "
            f"it is not taken over (subdevice_takeover = {self.mode})"
        )
        if not quiet:
            log.warning(
                "sub-device takeover refused: tenant %s, device %s (%r), gateway %s is online, "
                "gateway %s asked (%s); its data for the device is dropped",
                device.tenant_id,
                device.id,
                device.name,
                old,
                new_parent,
                via,
            )
        return why

    def still_refused(self, old_parent: str) -> bool:
        """A refused takeover whose old gateway is still online is still refused (counted, not logged)."""
        if self.mode == ALLOW or not self.parent_online(old_parent):
            return False
        self.refused += 1
        return True

    def taken_over(self, device: Device, old_parent: str, new_parent: str, *, via: str) -> None:
        """``new_parent`` took ``device`` from ``old_parent`` (committed): count and log it."""
        self.taken += 1
        online = self.parent_online(old_parent)
        log.log(
            logging.WARNING if online else logging.INFO,
            "sub-device takeover: tenant %s, device %s (%r) moved from gateway %s (%s) to gateway %s (%s)",
            device.tenant_id,
            device.id,
            device.name,
            old_parent,
            "online" if online else "offline",
            new_parent,
            via,
        )
