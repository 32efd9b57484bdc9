"""Which session serves a device or a client: the session directory of a node.

A transport binds a session here once it knows who is connected (a client id in a tenant and,
for a device principal, the device) and unbinds it when the connection ends; whoever must reach
a device or a client asks here. The directory is transport-neutral: it keeps an opaque
:class:`SessionHandle` with the identifiers the transport gave, never a transport's own types.

- Keys: (tenant id, client id), and the device id (device ids are unique across tenants).
- Takeover: binding a client key that another handle holds removes that handle (with its device
  key); binding a device that another handle serves moves the device to the new handle, and the
  old one keeps its client key until it unbinds (its transport is closing it). :meth:`bind`
  returns whom it displaced: closing them (MQTT: DISCONNECT 0x8E) is the transport's job.
- :meth:`unbind` removes only what that same handle still holds, so the late unbind of a
  taken-over session never removes its successor.
- Reads for this node's hot paths are synchronous (:meth:`local_client`, :meth:`local_device`);
  the questions that will cross nodes once the directory is shared (:meth:`find_client`,
  :meth:`find_device`, :meth:`sessions`, :meth:`evict`) are async and answer values
  (:class:`SessionEntry`), leaving out sessions that are already closed.
- Each bind and unbind is a :class:`PresenceEvent`, plain data with a bus subject, handed to the
  listeners of :meth:`watch` (none yet: a directory spanning nodes would publish them).

Device presence in the database (online/offline, a gateway's sub-devices going offline with it)
stays in the store (``store.devices.set_presence``); the transports decide when to set it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

__all__ = [
    "ClientKey",
    "Displaced",
    "PresenceEvent",
    "SessionDirectory",
    "SessionEntry",
    "SessionHandle",
]

log = logging.getLogger(__name__)

ClientKey = tuple[str, str]  # (tenant id, client id)


class SessionHandle(Protocol):
    """What the directory needs of a session: whether it is over, and a way to end it."""

    @property
    def closed(self) -> bool: ...

    def evict(self, reason: str) -> None:
        """End the session from the server side (an operator's decision), saying why."""
        ...


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One bound session: who it is, which transport holds it, since when (epoch seconds)."""

    tenant_id: str
    client_id: str
    device_id: str | None
    transport: str
    handle: SessionHandle = field(compare=False, repr=False)
    since: float = 0.0

    @property
    def key(self) -> ClientKey:
        return (self.tenant_id, self.client_id)


@dataclass(frozen=True, slots=True)
class Displaced:
    """What a :meth:`SessionDirectory.bind` took over from other handles."""

    client: SessionHandle | None = None  # held the client key: no longer in the directory
    device: SessionHandle | None = None  # served the device: keeps its client key until unbound


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A session was bound or unbound; plain data, as a bus would carry it."""

    kind: Literal["bound", "unbound"]
    tenant_id: str
    client_id: str
    device_id: str | None
    transport: str

    @property
    def subject(self) -> str:
        return f"t.{self.tenant_id}.presence.{self.kind}"

    def data(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "clientId": self.client_id,
            "deviceId": self.device_id,
            "transport": self.transport,
        }


Listener = Callable[[PresenceEvent], None]


class SessionDirectory:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._clients: dict[ClientKey, SessionEntry] = {}
        self._devices: dict[str, SessionEntry] = {}
        self._handles: dict[int, SessionEntry] = {}  # id(handle) -> its entry (the entry holds it)
        self._counts: dict[str, int] = {}  # bound handles per transport
        self._listeners: list[Listener] = []
        # read-only views, for transports that expose their part as a mapping
        self.clients: Mapping[ClientKey, SessionEntry] = MappingProxyType(self._clients)
        self.devices: Mapping[str, SessionEntry] = MappingProxyType(self._devices)

    # changes (by the transport that holds the session) ------------------------------------------
    def bind(
        self,
        handle: SessionHandle,
        *,
        tenant_id: str,
        client_id: str,
        device_id: str | None = None,
        transport: str,
    ) -> Displaced:
        """``handle`` now serves (tenant id, client id) and, if given, ``device_id``."""
        if id(handle) in self._handles:
            self.unbind(handle)
        key = (tenant_id, client_id)
        old = self._clients.get(key)
        if old is not None:
            self._remove(old)
        entry = SessionEntry(tenant_id, client_id, device_id, transport, handle, self._clock())
        self._clients[key] = entry
        self._handles[id(handle)] = entry
        self._counts[transport] = self._counts.get(transport, 0) + 1
        prev_device: SessionHandle | None = None
        if device_id is not None:
            prev = self._devices.get(device_id)
            if prev is not None:
                prev_device = prev.handle
            self._devices[device_id] = entry
        self._emit("bound", entry)
        return Displaced(old.handle if old is not None else None, prev_device)

    def unbind(self, handle: SessionHandle) -> SessionEntry | None:
        """``handle`` is gone: remove the keys it still holds. Its entry, or None if it held none."""
        entry = self._handles.get(id(handle))
        if entry is None:
            return None
        self._remove(entry)
        return entry

    def _remove(self, entry: SessionEntry) -> None:
        del self._handles[id(entry.handle)]
        self._counts[entry.transport] -= 1
        if self._clients.get(entry.key) is entry:
            del self._clients[entry.key]
        if entry.device_id is not None and self._devices.get(entry.device_id) is entry:
            del self._devices[entry.device_id]
        self._emit("unbound", entry)

    # this node's sessions (synchronous) ------------------------------------------------------
    def local_client(self, tenant_id: str, client_id: str) -> SessionHandle | None:
        entry = self._clients.get((tenant_id, client_id))
        return None if entry is None else entry.handle

    def local_device(self, device_id: str) -> SessionHandle | None:
        entry = self._devices.get(device_id)
        return None if entry is None else entry.handle

    def count(self, transport: str | None = None) -> int:
        """Bound sessions (of one transport)."""
        if transport is None:
            return len(self._handles)
        return self._counts.get(transport, 0)

    # questions (async: they may cross nodes) -------------------------------------------------
    async def find_client(self, tenant_id: str, client_id: str) -> SessionEntry | None:
        return _open(self._clients.get((tenant_id, client_id)))

    async def find_device(self, device_id: str) -> SessionEntry | None:
        return _open(self._devices.get(device_id))

    async def sessions(self, tenant_id: str | None = None, *, transport: str | None = None) -> list[SessionEntry]:
        """The open sessions (of one tenant, of one transport), in the order they were bound."""
        return [
            e
            for e in self._clients.values()
            if (tenant_id is None or e.tenant_id == tenant_id)
            and (transport is None or e.transport == transport)
            and not e.handle.closed
        ]

    async def evict(self, tenant_id: str, client_id: str, reason: str) -> bool:
        """End the session of a client; False if no open session serves it."""
        entry = await self.find_client(tenant_id, client_id)
        if entry is None:
            return False
        entry.handle.evict(reason)
        return True

    # events -----------------------------------------------------------------------------------
    def watch(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every bind and unbind from now on; returns the way to stop."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def _emit(self, kind: Literal["bound", "unbound"], entry: SessionEntry) -> None:
        if not self._listeners:
            return
        event = PresenceEvent(kind, entry.tenant_id, entry.client_id, entry.device_id, entry.transport)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("presence listener failed on %s", event.subject)


def _open(entry: SessionEntry | None) -> SessionEntry | None:
    return None if entry is None or entry.handle.closed else entry
