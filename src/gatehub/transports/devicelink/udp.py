"""UDP links: datagrams relayed both ways between the link's port and the device.

One UDP socket on the link's port faces clients; the device side is opened when the link is
created (a connected UDP socket of ours in direct mode, a tunnel channel through the gateway
otherwise), so that with ``source`` the device's datagrams reach that client at once. Without
``source`` the first client's host:port inherits the link; datagrams from anyone else, and
device datagrams before a client is known, are dropped and counted (UDP may lose datagrams;
memory never grows for them). With ``encrypt`` every datagram carries its own 8-byte number
and is decrypted on its own, so loss and reordering do no harm.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any

from gatehub.services.links.contracts import UdpDeviceEnd
from gatehub.services.links.model import Link, Mode, normalise_ip

log = logging.getLogger("gatehub.devicelink")

MAX_BUFFERED = 1 << 20  # bytes waiting in a UDP transport before datagrams are dropped


def _buffered(t: asyncio.DatagramTransport) -> int:
    size: int = t.get_write_buffer_size()  # type: ignore[attr-defined]  # every loop's datagram transport has it
    return size


class UdpLink(Link):
    protocol = "udp"

    def __init__(self, *, connect_timeout: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.connect_timeout = connect_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.device: UdpDeviceEnd | None = None
        self.client_addr: tuple[str, int] | None = None
        self._raw_client: tuple[Any, ...] | None = None  # the admitted client address as the socket gives it
        self._ready: asyncio.Future[None] | None = None

    async def bind(self, port: int, host: str) -> None:
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: _ClientSide(self), local_addr=(host, port))
        self.port = self.transport.get_extra_info("sockname")[1]

    async def open_device(self) -> None:
        r = self.request
        if r.source_host is not None and r.source_port is not None and r.source_ips:
            self.client_addr = (sorted(r.source_ips)[0], r.source_port)
            self.connections = 1
        target = self.target
        if target.mode is Mode.DIRECT:
            try:
                _t, proto = await asyncio.wait_for(
                    self.loop.create_datagram_endpoint(
                        lambda: _DirectDevice(self), remote_addr=(target.host or "", target.port)
                    ),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot open a UDP socket to {target.host}:{target.port}: {exc}") from None
            self.device = proto
        else:
            tunnel = target.tunnel()
            if tunnel is None:
                raise ConnectionError(f"gateway {target.gateway_id} is not connected")
            self._ready = self.loop.create_future()
            self.device = tunnel.open_udp(self, target, self.connect_timeout)
            try:
                await asyncio.shield(self._ready)  # the channel's own OPEN timeout ends the wait
            except ConnectionError:
                raise
        self.start_timer()

    # tunnel callbacks
    def device_ready(self, _device: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def device_failed(self, reason: str) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError(reason))
        self.close(f"gateway could not reach the device: {reason}")

    def on_device_closed(self) -> None:
        self.device = None
        self.close("the gateway closed the channel")

    def _shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.device is not None:
            self.device.close()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError(self.close_reason))
            self._ready.exception()  # retrieved: nobody may be waiting

    # relaying ---------------------------------------------------------------------------------
    def from_client(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if addr != self._raw_client:  # not the address seen last: the admission rule decides
            known = self.client_addr
            if known is None or known[1] != addr[1] or known[0] != normalise_ip(addr[0]):
                if not self.admits(addr[0], addr[1], lock_port=True):
                    self.refused += 1
                    return
                if known is None:
                    self.connections = 1
                self.client_addr = (normalise_ip(addr[0]), addr[1])
            self._raw_client = addr
        if self.cipher is not None:
            plain = self.cipher.open_datagram(data)
            if plain is None:
                self.dropped += 1
                return
            data = plain
        self.bytes_in += len(data)
        if self._timer is not None:
            self.last_activity = monotonic()
        if self.device is not None:
            self.device.send(data)

    def from_device(self, data: bytes) -> None:
        if self._timer is not None:
            self.last_activity = monotonic()
        addr = self.client_addr
        t = self.transport
        if addr is None or t is None or _buffered(t) > MAX_BUFFERED:
            self.dropped += 1
            return
        self.bytes_out += len(data)
        if self.cipher is not None:
            data = self.cipher.seal_datagram(data)
        t.sendto(data, addr)

    # UdpLink is also what a tunnel channel calls for device data
    def on_device_data(self, data: bytes) -> None:
        self.from_device(data)


class _ClientSide(asyncio.DatagramProtocol):
    def __init__(self, link: UdpLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.link.from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("link %s: client socket error %s", self.link.id, exc)


class _DirectDevice(asyncio.DatagramProtocol):
    def __init__(self, link: UdpLink) -> None:
        self.link = link
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.link.from_device(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("link %s: device socket error %s", self.link.id, exc)  # e.g. ICMP port unreachable

    def send(self, data: bytes) -> None:
        t = self.transport
        if t is None or _buffered(t) > MAX_BUFFERED:
            self.link.dropped += 1
            return
        t.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
