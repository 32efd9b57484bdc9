"""The device-link service of a node: creates, lists and closes links, and closes them when
their device or gateway goes away.

- Where a link leads (docs/devicelink.md, "How the hub knows where the device is"): a sub-device
  goes through its gateway's tunnel; any other device is reached directly at its server
  attribute ``deviceLinkAddress`` when an operator set one, else at the address of its last
  direct (MQTT) connection.
- Limits: open links per device and per tenant; ports from the pool (503 when none is free).
- Closing: DELETE, the idle timeout, the device deleted, a connection-learned address gone
  stale (the device went offline), a sub-device leaving its gateway, the gateway's session
  ending, node shutdown. Every link is logged in the event log (``devicelink.opened`` and
  ``devicelink.closed`` with bytes in/out) and in the process log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.domain.model import AttributeScope, Device, DeviceKind, Presence
from gatehub.domain.telemetry import now_ms
from gatehub.errors import Conflict, NotFound, Unavailable
from gatehub.services.ingest import Ingest
from gatehub.services.links.contracts import Tunnels
from gatehub.services.links.model import Link, LinkRequest, Mode, Target
from gatehub.services.links.pool import PortPool
from gatehub.store import Store

log = logging.getLogger("gatehub.devicelink")

ADDRESS_ATTRIBUTE = "deviceLinkAddress"
_PORT_TAKEN = {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL}
_WATCH = ("t.*.status.*", "t.*.topology.*", "t.*.device.*", "t.*.tenant.*")


class LinkFactory(Protocol):
    """Makes the relay of a new link (``transports.devicelink``): TCP or UDP."""

    def __call__(
        self,
        protocol: str,
        *,
        tenant_id: str,
        identifier: str,
        request: LinkRequest,
        target: Target,
        on_closed: Callable[[Link], None],
        connect_timeout: float,
    ) -> Link: ...


class DeviceLinks:
    name = "devicelink"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ingest: Ingest,
        bus: Bus,
        make_link: LinkFactory,
        tunnels: Tunnels | None = None,
        gateway_connected: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ingest = ingest
        self.bus = bus
        self.make_link = make_link  # the relays (transports.devicelink)
        self.tunnels = tunnels  # the gateways' tunnels (the MQTT tunnel dialect), when MQTT is on
        self.gateway_connected = gateway_connected or (lambda _gw: False)
        self.pool = PortPool(settings.devicelink_port_min, settings.devicelink_port_max)
        self.bind_host = settings.devicelink_bind_host or settings.bind_host
        self.links: dict[str, Link] = {}  # token -> link
        self.per_tenant: dict[str, int] = {}
        self.per_device: dict[str, int] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._log_tasks: set[asyncio.Task[Any]] = set()
        self.closed_total = 0

    # lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        for pattern in _WATCH:
            self._watchers.append(asyncio.get_running_loop().create_task(self._watch(pattern)))
        if self.tunnels is not None:
            self.tunnels.on_gateway_gone = self._gateway_gone
            for listener in self.tunnels.listeners():
                await listener.start()

    async def stop(self) -> None:
        for link in list(self.links.values()):
            link.close("node shutting down")
        for t in self._watchers:
            t.cancel()
        for t in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._watchers.clear()
        for listener in self.tunnels.listeners() if self.tunnels is not None else []:
            await listener.close()
        if self._log_tasks:
            await asyncio.wait(list(self._log_tasks), timeout=5)

    # create -----------------------------------------------------------------------------------
    async def target_for(self, device: Device, device_port: int) -> Target:
        attrs = await self.store.data.attributes(device.id, AttributeScope.SERVER, [ADDRESS_ATTRIBUTE])
        configured = attrs.get(AttributeScope.SERVER.value, {}).get(ADDRESS_ATTRIBUTE)
        if configured is not None and (not isinstance(configured, str) or not configured.strip()):
            raise Conflict(
                f"the server attribute {ADDRESS_ATTRIBUTE} of {device.id} must be a host name or address (a string)",
                code="address_invalid",
            )
        host = configured.strip() if isinstance(configured, str) else None
        if device.kind is DeviceKind.SUBDEVICE:
            if device.parent_id is None:
                raise Conflict(f"sub-device {device.id} has no gateway to reach it through", code="no_gateway")
            gw = device.parent_id
            if self.tunnels is None or self.tunnels.tunnel_for(gw) is None:
                if self.gateway_connected(gw):
                    raise Conflict(
                        f"gateway {gw} is connected but its agent does not speak the device-link tunnel",
                        code="gateway_unsupported",
                    )
                raise Conflict(f"gateway {gw} of {device.id} is not connected to this hub", code="gateway_offline")
            return Target(Mode.GATEWAY, device.id, device.name, device_port, host, "gateway", gw, self.tunnels)
        if host is not None:
            return Target(Mode.DIRECT, device.id, device.name, device_port, host, "attribute")
        if device.last_address:
            return Target(Mode.DIRECT, device.id, device.name, device_port, device.last_address, "connection")
        raise Conflict(
            f"the address of {device.id} is unknown: it never connected directly, and its server attribute "
            f"{ADDRESS_ATTRIBUTE} is not set",
            code="address_unknown",
        )

    async def create(self, device: Device, identifier: str, request: LinkRequest) -> Link:
        target = await self.target_for(device, request.device_port)
        s = self.settings
        tenant = device.tenant_id
        if self.per_device.get(device.id, 0) >= s.devicelink_max_per_device:
            raise Conflict(
                f"device {identifier} has {s.devicelink_max_per_device} open links (devicelink_max_per_device)",
                code="too_many_links",
            )
        if self.per_tenant.get(tenant, 0) >= s.devicelink_max_per_tenant:
            raise Conflict(
                f"this tenant has {s.devicelink_max_per_tenant} open links (devicelink_max_per_tenant)",
                code="too_many_links",
            )
        link = self.make_link(
            request.protocol,
            tenant_id=tenant,
            identifier=identifier,
            request=request,
            target=target,
            on_closed=self._closed,
            connect_timeout=s.devicelink_connect_timeout,
        )
        # count the link now: the awaits below must not let parallel requests pass the limits
        self._count(link, +1)
        try:
            await self._bind(link)
            try:
                await link.open_device()
            except ConnectionError as exc:
                raise Conflict(f"the device cannot be reached: {exc}", code="device_unreachable") from None
            if link.closed:  # closed while opening (its gateway went away)
                raise Conflict(f"link closed while opening: {link.close_reason}", code="device_unreachable")
        except BaseException:
            link.closed = True  # not open yet: no log record, just give everything back
            link._shutdown()
            self.pool.release(link.port)
            self._count(link, -1)
            raise
        self.links[link.token] = link
        log.info(
            "link %s opened: %s port %d -> %s (%s %s:%d)",
            link.id,
            link.protocol,
            link.port,
            device.id,
            target.mode.value,
            target.host or target.gateway_id,
            target.port,
        )
        self._log(link, "devicelink.opened")
        return link

    async def _bind(self, link: Link) -> None:
        for port in self.pool.candidates():
            if port in self.pool.used:
                continue
            try:
                await link.bind(port, self.bind_host)
            except OSError as exc:
                if exc.errno in _PORT_TAKEN:
                    continue
                raise
            self.pool.take(link.port)
            return
        size = self.pool.size
        raise Unavailable(
            f"no free device-link port ({size} in the pool {self.settings.devicelink_port_min}-"
            f"{self.settings.devicelink_port_max}, {len(self.pool.used)} used by links)",
            code="no_free_port",
        )

    def _count(self, link: Link, delta: int) -> None:
        for table, key in ((self.per_tenant, link.tenant_id), (self.per_device, link.target.device_id)):
            n = table.get(key, 0) + delta
            if n > 0:
                table[key] = n
            else:
                table.pop(key, None)

    # close and list ---------------------------------------------------------------------------
    def get(self, token: str, tenant_id: str | None) -> Link:
        link = self.links.get(token)
        if link is None or (tenant_id is not None and link.tenant_id != tenant_id):
            raise NotFound("no open device link has this token")
        return link

    def list(self, tenant_id: str | None, device_id: str | None = None) -> list[Link]:
        return [
            lk
            for lk in self.links.values()
            if (tenant_id is None or lk.tenant_id == tenant_id)
            and (device_id is None or lk.target.device_id == device_id)
        ]

    def _closed(self, link: Link) -> None:
        if self.links.get(link.token) is not link:
            return  # never registered (failed while opening)
        del self.links[link.token]
        self.pool.release(link.port)
        self._count(link, -1)
        self.closed_total += 1
        self._log(link, "devicelink.closed")

    def _log(self, link: Link, type_: str) -> None:
        body = orjson.dumps(link.log_body()).decode()
        task = asyncio.get_running_loop().create_task(
            self._write(link.tenant_id, link.target.device_id, now_ms(), type_, body)
        )
        self._log_tasks.add(task)
        task.add_done_callback(self._log_tasks.discard)

    async def _write(self, tenant_id: str, device_id: str, ts: int, type_: str, body: str) -> None:
        try:
            await self.ingest.event(tenant_id, device_id, ts, type_, body)
        except Exception as exc:
            log.warning("device-link log record not stored: %s", exc)

    # the device or gateway goes away ----------------------------------------------------------
    def _close_where(self, reason: str, pred: Any) -> None:
        for link in [lk for lk in self.links.values() if pred(lk)]:
            link.close(reason)

    def _gateway_gone(self, tenant_id: str, gateway_id: str) -> None:
        self._close_where(
            f"gateway {gateway_id} disconnected",
            lambda lk: lk.tenant_id == tenant_id and lk.target.gateway_id == gateway_id,
        )

    def on_event(self, subject: str, data: dict[str, Any]) -> None:
        parts = subject.split(".")
        if len(parts) != 4 or not self.links:
            return
        tenant, kind = parts[1], parts[2]
        if kind == "status":
            dev = data.get("deviceId")
            if data.get("presence") != Presence.ONLINE.value:
                self._close_where(
                    f"device {dev} went offline (its address came from its connection)",
                    lambda lk: (
                        lk.tenant_id == tenant
                        and lk.target.device_id == dev
                        and lk.target.address_source == "connection"
                    ),
                )
        elif kind == "topology":
            gw = data.get("gatewayId")
            removed = set(data.get("removed") or ())
            if removed:
                self._close_where(
                    f"the device left gateway {gw}",
                    lambda lk: lk.tenant_id == tenant and lk.target.gateway_id == gw and lk.target.device_id in removed,
                )
            if data.get("deleted"):
                self._close_where(
                    f"gateway {gw} was deleted",
                    lambda lk: lk.tenant_id == tenant and gw in (lk.target.gateway_id, lk.target.device_id),
                )
        elif kind == "tenant" and data.get("type") == "deleted":
            self._close_where(f"tenant {tenant} was deleted", lambda lk: lk.tenant_id == tenant)
        elif kind == "device" and data.get("type") == "deleted":
            dev = data.get("deviceId")
            self._close_where(
                f"device {dev} was deleted",
                lambda lk: lk.tenant_id == tenant and dev in (lk.target.device_id, lk.target.gateway_id),
            )

    async def _watch(self, pattern: str) -> None:
        while True:
            sub = self.bus.subscribe(pattern, maxsize=10_000)
            try:
                async for env in sub:
                    try:
                        self.on_event(env.subject, env.data)
                    except Exception:
                        log.exception("device-link watcher failed on %s", env.subject)
            finally:
                sub.close()
            if not sub.overflowed:
                return
            log.warning("device-link watcher of %s fell behind; resubscribed", pattern)

    def stats(self) -> dict[str, int]:
        return {"open": len(self.links), "closed": self.closed_total, "ports_free": self.pool.free}
