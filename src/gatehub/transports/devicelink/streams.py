"""Stream channels: the bytes of a via-gateway TCP link on a TCP connection of their own.

Framing a byte stream into MQTT messages costs both the hub and the agent CPU on every chunk
(each is parsed, routed and acknowledged as a message); a relay of two sockets costs almost
nothing beyond the copy. So when an agent offers ``streams`` in its HELLO, the hub tells it the
port of this listener, and every OPEN of a TCP channel carries a one-time ``stream`` token. The
agent connects to the device, then to this port (the host it reaches the hub's MQTT at), sends
the preamble ``GHS1 <token>\\n`` and from then on relays raw bytes; the hub relays them to the
link's client like a direct device connection. Backpressure is TCP's own: a full socket buffer
stops the other side being read. Control (OPEN, CLOSE before the stream exists) stays in the
tunnel; an agent that cannot reach this port answers OPENED and the channel is framed as before.

A session on the plain MQTT listener is offered the plain stream port; a session on the TLS
listener the TLS one (the hub's server certificate, a client certificate optional: the token
authenticates), so a link's data is protected exactly as its gateway's MQTT connection is.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from typing import TYPE_CHECKING

from gatehub.pki.tlsgate import TlsServer, serve_tls
from gatehub.protocols import devicelink as proto
from gatehub.services.guard import CredentialGuard, mask
from gatehub.transports.devicelink.tcp import DirectDevice, nodelay

if TYPE_CHECKING:
    from gatehub.services.links.contracts import StreamChannel
    from gatehub.transports.devicelink.tcp import ClientConn

log = logging.getLogger("gatehub.devicelink")

MAGIC = b"GHS1 "
TOKEN_CHARS = 32  # hex
PREAMBLE_SIZE = len(MAGIC) + TOKEN_CHARS + 1
PREAMBLE_TIMEOUT = 10.0


class StreamListener:
    """The port agents open stream channels to, and the tokens of channels waiting for one."""

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None, guard: CredentialGuard | None = None
    ) -> None:
        self.guard = guard if guard is not None else CredentialGuard()  # the stream tokens' credential checks
        self.host = host
        self.requested_port = port
        self.ssl = ssl_context
        self.port = 0
        self.pending: dict[str, StreamChannel] = {}
        self.server: asyncio.Server | TlsServer | None = None
        self.attached = 0
        self.refused = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.ssl is not None:  # own accept loop: a TLS 1.0/1.1 hello gets the protocol_version alert
            self.server = await serve_tls(
                lambda: StreamConn(self),
                self.ssl,
                self.host or None,
                self.requested_port,
                backlog=64,
                handshake_timeout=PREAMBLE_TIMEOUT,
                name="device-link-tls",
                on_refused=lambda h, e: self.guard.tls_refused(h, "device-link-tls", e),
            )
        else:
            self.server = await loop.create_server(
                lambda: StreamConn(self), self.host or None, self.requested_port, reuse_address=True, backlog=64
            )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("device-link stream channels on port %d%s", self.port, " (TLS)" if self.ssl else "")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.pending.clear()

    def expect(self, channel: StreamChannel) -> str:
        token = secrets.token_hex(TOKEN_CHARS // 2)
        self.pending[token] = channel
        return token

    def forget(self, token: str) -> None:
        self.pending.pop(token, None)


class StreamConn(DirectDevice):
    """An agent's stream connection: the preamble first, then the device end of one client
    connection (as ``DirectDevice`` is in direct mode)."""

    __slots__ = ("_buf", "_check", "_timer", "channel", "eof_at", "listener", "received", "sent")

    def __init__(self, listener: StreamListener) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # the client is known after the preamble
        self.listener = listener
        self.channel: StreamChannel | None = None
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None
        self.received = 0  # bytes from the agent (after the preamble)
        self.sent = 0  # bytes to the agent
        self.eof_at: int | None = None  # TLS: the agent's EOF, due once this much has come
        self._check: asyncio.Task[None] | None = None  # the preamble's token check, when it must wait

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay(transport)
        self._timer = asyncio.get_running_loop().call_later(PREAMBLE_TIMEOUT, self._refuse, "no preamble in time")

    def _refuse(self, why: str, reason: str = "no_preamble", *, score: bool = False) -> None:
        """Refuse the connection; counted and logged (rate-limited) by the credential guard, and,
        for a wrong token (``score``), only after the back-off delay of its source."""
        self.listener.refused += 1
        self._check = asyncio.get_running_loop().create_task(self._refused(why, reason, score))

    async def _refused(self, why: str, reason: str, score: bool) -> None:
        transport = self.transport
        if transport is not None:
            transport.pause_reading()
        await self.listener.guard.refused(self._peer_host(), "device-link-stream", why, reason, score=score)
        if self.transport is not None:
            self.transport.abort()

    def _peer_host(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else None

    def data_received(self, data: bytes) -> None:
        if self.client is not None:
            self.received += len(data)
            self.client.on_device_data(data)
            if self.eof_at is not None and self.received >= self.eof_at:
                self.eof_at = None
                self.client.on_device_eof()
            return
        self._buf += data
        if self._check is not None or len(self._buf) < PREAMBLE_SIZE:  # (or kept until the check is done)
            return
        head, rest = self._buf[:PREAMBLE_SIZE], self._buf[PREAMBLE_SIZE:]
        self._buf = b""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not head.startswith(MAGIC) or head[-1:] != b"\n":
            self._refuse("not a stream preamble", "bad_preamble")
            return
        token = head[len(MAGIC) : -1].decode("ascii", "replace")
        if self.transport is not None:  # the token check may wait (a backed-off source): hold the rest
            self.transport.pause_reading()
        self._check = asyncio.get_running_loop().create_task(self._admit(token, rest))

    async def _admit(self, token: str, rest: bytes) -> None:
        guard = self.listener.guard
        host = self._peer_host()
        refusal = await guard.admit(host, "device-link-stream", "stream token")
        if self.transport is None:
            return
        if refusal is not None:
            self.listener.refused += 1
            self.transport.abort()
            return
        channel = self.listener.pending.pop(token, None)
        if channel is None or channel.closed:
            self.listener.refused += 1
            await guard.refused(host, "device-link-stream", f"token {mask(token)}", "bad_token")
            if self.transport is not None:
                self.transport.abort()
            return
        guard.succeeded(host)
        rest, self._buf = rest + self._buf, b""
        self._check = None
        self.transport.resume_reading()  # nothing is delivered before this method returns
        self.channel = channel
        self.listener.attached += 1
        client: ClientConn = channel.stream_attached(self)
        self.client = client
        if rest:
            self.received += len(rest)
            client.on_device_data(rest)

    def eof_received(self) -> bool:
        if self.client is None or self.listener.ssl is not None:
            return False  # TLS ends whole (close_notify): the connection closes
        return super().eof_received()

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        super().write(data)

    def device_eof(self, offset: int) -> None:
        """The agent's EOF frame of a TLS stream: passed on once ``offset`` bytes came."""
        if self.client is None:
            return
        if self.received >= offset:
            self.client.on_device_eof()
        else:
            self.eof_at = offset

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if self.channel is not None:
            self.channel.stream_closed()
        if self.client is not None:
            self.client.on_device_closed()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.device_pause()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.device_resume()

    def write_eof(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing() and self.client is not None:
            if self.client._eof_out:
                t.close()
            elif t.can_write_eof():
                t.write_eof()
            elif self.channel is not None:  # TLS has no half close: EOF through the tunnel, counted
                self.channel.tunnel.send(proto.stream_eof_frame(self.channel.id, self.sent))
