"""TCP links: a listener on the link's port, one client at a time, relayed to the device.

Hot path: ``asyncio.Protocol`` on both sockets, TCP_NODELAY on both, bytes handed from one
transport to the other as they come (decrypted or encrypted in place by the CTR context of the
connection). Backpressure: when one side's transport buffer is full (``pause_writing``), the
other side stops being read (``pause_reading``) until it drains. Half-close (EOF) is passed on.

The device end is either a socket of ours (direct mode, ``DirectDevice``) or a channel of the
gateway's tunnel (``transports.mqtt.devicelink_tunnel.HubChannel``); both offer the small
``services.links.contracts.DeviceEnd`` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from time import monotonic
from typing import TYPE_CHECKING, Any

from gatehub.protocols.linkcrypto import DOWNSTREAM, MAX_NUMBER, NUMBER_BYTES, UPSTREAM, decode_number
from gatehub.services.links.contracts import DeviceEnd
from gatehub.services.links.model import Link, Mode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext

log = logging.getLogger("gatehub.devicelink")

_WAIT_DEVICE = 1  # reasons the client is not read
_DEVICE_FULL = 2


WRITE_HIGH = 1024 * 1024  # a relay socket's buffer before the other side stops being read
WRITE_LOW = 256 * 1024


def nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY, and write-buffer limits that let a whole read (up to 256 KiB) through
    without pausing the other side on every chunk."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(AttributeError, ValueError):
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)  # type: ignore[attr-defined]


def reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST, not a FIN: SO_LINGER with a zero timeout, then close. A refused
    client reads ConnectionResetError, which cannot be taken for the device ending the session
    (a FIN, EOF, would look exactly like that)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class TcpLink(Link):
    protocol = "tcp"

    def __init__(self, *, connect_timeout: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.connect_timeout = connect_timeout
        self.server: asyncio.Server | None = None
        self.client: ClientConn | None = None
        self.last_number = -1  # encrypted links: the last connection number used

    async def bind(self, port: int, host: str) -> None:
        self.server = await self.loop.create_server(
            lambda: ClientConn(self), host, port, reuse_address=True, backlog=16
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.start_timer()

    def _shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            self.client.close()


class ClientConn(asyncio.Protocol):
    """The client's connection to a TCP link, and the pipe to the device end."""

    __slots__ = (
        "_eof_in",
        "_eof_out",
        "_header",
        "_pause",
        "_pending",
        "_task",
        "closed",
        "device",
        "down",
        "link",
        "transport",
        "up",
    )

    def __init__(self, link: TcpLink) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.device: DeviceEnd | None = None
        self.up: CipherContext | None = None  # client -> device: decrypts
        self.down: CipherContext | None = None  # device -> client: encrypts
        cipher = link.cipher
        # per-connection mode: the connection number comes first; literal mode: CTR from the IV
        self._header = bytearray() if cipher is not None and cipher.per_connection else None
        if cipher is not None and not cipher.per_connection:
            self.up = cipher.literal_stream()
            self.down = cipher.literal_stream()
        self._pending = b""  # what came after the header, before the device was reached
        self._pause = 0
        self._eof_in = self._eof_out = False
        self._task: asyncio.Task[None] | asyncio.TimerHandle | None = None
        self.closed = False

    # client socket ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        link = self.link
        peer = transport.get_extra_info("peername") or ("?", 0)
        busy = link.client is not None and not link.client.closed
        if link.closed or busy or not link.admits(peer[0], peer[1], lock_port=False):
            link.refused += 1
            log.info("link %s: refused %s:%s (%s)", link.id, peer[0], peer[1], "busy" if busy else "not its client")
            self.closed = True
            reset(transport)
            return
        link.client = self
        link.connections += 1
        nodelay(transport)
        if self._header is None:
            self._pause_client(_WAIT_DEVICE)
            self._reach_device()
        else:  # read the connection number first: the device's replies are encrypted with it
            self._task = link.loop.call_later(link.connect_timeout, self._header_timeout)

    def _header_timeout(self) -> None:
        if self.device is None and not self.closed:
            self._fail("no connection number within the connect timeout")

    def _reach_device(self) -> None:
        link = self.link
        target = link.target
        if target.mode is Mode.DIRECT:
            self._task = link.loop.create_task(self._connect_direct())
        else:
            tunnel = target.tunnel()
            if tunnel is None:
                self._fail(f"gateway {target.gateway_id} is not connected")
                return
            tunnel.open_tcp(self, target, link.connect_timeout)

    async def _connect_direct(self) -> None:
        link = self.link
        host, port = link.target.host, link.target.port
        try:
            await asyncio.wait_for(
                link.loop.create_connection(lambda: DirectDevice(self), host or "", port), link.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            self._fail(f"device {host}:{port} not reachable: {exc or type(exc).__name__}")

    def device_ready(self, device: DeviceEnd) -> None:
        """The device end is connected: relay from now on."""
        if self.closed:
            device.close()
            return
        self.device = device
        if self._pending:  # already decrypted and counted
            data, self._pending = self._pending, b""
            device.write(data)
        self._resume_client(_WAIT_DEVICE)

    def device_failed(self, reason: str) -> None:
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        log.info("link %s: client connection closed: %s", self.link.id, reason)
        self.close()

    def data_received(self, data: bytes) -> None:
        if self._pause and self.transport is not None:
            # paused in connection_made: uvloop starts reading after it returns all the same, so
            # the pause is made again here, where it takes effect (what came is kept in _pending)
            self.transport.pause_reading()
        if self._header is not None:
            self._read_header(data)
            return
        self._to_device(data)

    def _to_device(self, data: bytes) -> None:
        link = self.link
        if self.up is not None:
            data = self.up.update(data)
        link.bytes_in += len(data)
        if link._timer is not None:
            link.last_activity = monotonic()
        dev = self.device
        if dev is None:
            self._pending += data  # only between header and device (the client is paused)
            return
        dev.write(data)

    def _read_header(self, data: bytes) -> None:
        header = self._header
        assert header is not None and self.link.cipher is not None
        need = NUMBER_BYTES - len(header)
        header += data[:need]
        if len(header) < NUMBER_BYTES:
            return
        rest = data[need:]
        number = decode_number(header)
        link = self.link
        self._header = None
        if number > MAX_NUMBER or number <= link.last_number:
            link.refused += 1
            self._fail(f"connection number {number} is not above the last one ({link.last_number}) or too large")
            return
        link.last_number = number
        cipher = link.cipher
        assert cipher is not None
        self.up = cipher.stream(UPSTREAM, number)
        self.down = cipher.stream(DOWNSTREAM, number)
        if isinstance(self._task, asyncio.TimerHandle):
            self._task.cancel()
        self._pause_client(_WAIT_DEVICE)
        if rest:
            self._to_device(rest)
        self._reach_device()

    def eof_received(self) -> bool:
        self._eof_in = True
        if self.device is not None:
            self.device.write_eof()
        return not (self._eof_out or self.device is None)  # True: keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self.link.client is not self:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        if self.device is not None:
            self.device.close()
        if self.link.client is self:
            self.link.client = None

    def pause_writing(self) -> None:
        if self.device is not None:
            self.device.pause_reading()

    def resume_writing(self) -> None:
        if self.device is not None:
            self.device.resume_reading()

    def _pause_client(self, why: int) -> None:
        if not self._pause and self.transport is not None:
            self.transport.pause_reading()
        self._pause |= why

    def _resume_client(self, why: int) -> None:
        if not self._pause:
            return
        self._pause &= ~why
        if not self._pause and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        elif self.transport is None:
            self.closed = True

    # device end -> client ---------------------------------------------------------------------
    def on_device_data(self, data: bytes) -> None:
        link = self.link
        link.bytes_out += len(data)
        if link._timer is not None:
            link.last_activity = monotonic()
        if self.down is not None:
            data = self.down.update(data)
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def on_device_eof(self) -> None:
        self._eof_out = True
        t = self.transport
        if t is None or self.closed:
            return
        if self._eof_in:
            t.close()
        elif t.can_write_eof():
            t.write_eof()

    def on_device_closed(self) -> None:
        self.device = None
        self.close()

    def device_pause(self) -> None:
        self._pause_client(_DEVICE_FULL)

    def device_resume(self) -> None:
        self._resume_client(_DEVICE_FULL)


class DirectDevice(asyncio.Protocol):
    """Our connection to the device's own address (direct mode)."""

    __slots__ = ("client", "transport")

    def __init__(self, client: ClientConn) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay(transport)
        self.client.device_ready(self)

    def data_received(self, data: bytes) -> None:
        self.client.on_device_data(data)

    def eof_received(self) -> bool:
        self.client.on_device_eof()
        return not self.client._eof_in

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.on_device_closed()

    def pause_writing(self) -> None:
        self.client.device_pause()

    def resume_writing(self) -> None:
        self.client.device_resume()

    # DeviceEnd
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def write_eof(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            if self.client._eof_out:
                t.close()
            elif t.can_write_eof():
                t.write_eof()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
