"""Answer a TLS 1.0/1.1-only ClientHello with the ``protocol_version`` alert, then close.

Every TLS listener of the hub has ``minimum_version = TLSv1_2``. OpenSSL refuses an older
ClientHello and writes the fatal ``protocol_version`` alert (70) into its outgoing buffer, but
both asyncio's and uvloop's SSL transports treat a handshake ``SSLError`` as a fatal transport
error and abort the socket without flushing that buffer: the client sees a bare close (EOF/RST)
instead of the alert every mainstream server sends.

:func:`serve_tls` replaces ``loop.create_server(..., ssl=ctx)`` with its own accept loop
(:class:`TlsServer`): each accepted socket, before any transport owns it, is *peeked* at
(``MSG_PEEK``, nothing is consumed) until its first TLS record is in. A ClientHello whose
``legacy_version`` is below TLS 1.2 and that has no ``supported_versions`` extension offering
TLS 1.2 or later is answered with the alert record (content type 21, level fatal, description
70) in the client's record version, and closed. Anything else is handed unchanged to
``loop.connect_accepted_socket(factory, sock, ssl=ctx)``: OpenSSL sees exactly the bytes the
client sent, and the protocol gets its TLS transport as with ``create_server(ssl=...)``. The
same code serves asyncio's loop and uvloop (a gate in a protocol cannot: uvloop reads the
first bytes before the protocol can pause it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TLS12 = 0x0303
_HANDSHAKE, _ALERT, _CLIENT_HELLO = 22, 21, 1
_SUPPORTED_VERSIONS = 43
PROTOCOL_VERSION_ALERT = 70
_MAX_RECORD = 5 + 16384 + 2048

RefusalHook = Callable[[str | None, BaseException], object]  # (client address, handshake error)


def legacy_only_hello(data: bytes) -> int | None:
    """The client's version when ``data`` (the start of a connection) is a complete ClientHello
    record that offers nothing from TLS 1.2 on; ``None`` when it offers TLS 1.2+, is not a
    ClientHello, or cannot be judged (OpenSSL then decides as usual)."""
    if len(data) < 11 or data[0] != _HANDSHAKE or data[5] != _CLIENT_HELLO:
        return None
    client_version: int = struct.unpack_from(">H", data, 9)[0]
    if client_version >= TLS12 or client_version < 0x0300:
        return None
    end = 5 + struct.unpack_from(">H", data, 3)[0]
    if len(data) < end:
        return None
    try:
        i = 11 + 32
        i += 1 + data[i]  # session id
        i += 2 + struct.unpack_from(">H", data, i)[0]  # cipher suites
        i += 1 + data[i]  # compression methods
        if i >= end:
            return client_version  # no extensions at all
        ext_end = min(end, i + 2 + struct.unpack_from(">H", data, i)[0])
        i += 2
        while i + 4 <= ext_end:
            kind, size = struct.unpack_from(">HH", data, i)
            i += 4
            if kind == _SUPPORTED_VERSIONS:
                body = data[i : i + size]
                versions = [struct.unpack_from(">H", body, j)[0] for j in range(1, 1 + body[0], 2)]
                return None if any(v >= TLS12 for v in versions) else client_version
            i += size
    except (IndexError, struct.error):
        return None
    return client_version


def alert_record(version: int, description: int = PROTOCOL_VERSION_ALERT) -> bytes:
    """A plaintext fatal alert record."""
    return struct.pack(">BHHBB", _ALERT, version, 2, 2, description)


class TlsServer:
    """A TLS listener with its own accept loop (see module doc); ``close``/``wait_closed``/
    ``sockets`` as an ``asyncio.Server`` (existing connections are left open, as there)."""

    def __init__(
        self,
        factory: Callable[[], asyncio.BaseProtocol],
        ctx: ssl.SSLContext,
        sockets: list[socket.socket],
        *,
        handshake_timeout: float | None = None,
        name: str = "tls",
        on_refused: RefusalHook | None = None,
    ) -> None:
        self.factory = factory
        self.on_refused = on_refused
        self.ctx = ctx
        self.handshake_timeout = handshake_timeout
        self.name = name
        self.sockets = sockets
        self._pending: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.setblocking(False)
            self._tasks.append(loop.create_task(self._accept_loop(sock), name=f"{self.name}-accept"))

    def is_serving(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def close(self) -> None:
        for task in (*self._tasks, *self._pending):
            task.cancel()
        for sock in self.sockets:
            sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()
        tasks = [*self._tasks, *self._pending]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _addr = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # EMFILE and the like: keep the listener, back off a little
                log.warning("%s: accept failed: %s", self.name, exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve(conn), name=f"{self.name}-hello")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                data = await _peek_hello(conn, self.handshake_timeout or 60.0)
            except (TimeoutError, OSError):
                return
            version = legacy_only_hello(data) if data else None
            if not data:
                return
            if version is not None:
                log.debug(
                    "%s: TLS %s ClientHello from %s refused (TLS 1.2+ only): protocol_version alert",
                    self.name,
                    _name(version),
                    _peer(conn),
                )
                with contextlib.suppress(OSError):
                    # read the peeked hello for real first: closing with unread input sends a
                    # TCP RST, which can make the client drop the alert before it reads it
                    conn.recv(len(data))
                    await asyncio.wait_for(loop.sock_sendall(conn, alert_record(version)), 5.0)
                    conn.shutdown(socket.SHUT_WR)
                    await asyncio.wait_for(_drain(conn), 2.0)  # until the client closes, bounded
                return
            handed_over = True
            host = _peer_host(conn)
            try:
                await loop.connect_accepted_socket(
                    self.factory, conn, ssl=self.ctx, ssl_handshake_timeout=self.handshake_timeout
                )
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                conn.close()
                if self.on_refused is None:
                    log.debug("%s: TLS handshake with a client failed: %s", self.name, exc)
                    return
                try:  # counted and logged (rate-limited) by the listener's owner
                    self.on_refused(host, exc)
                except Exception:
                    log.exception("%s: the handshake refusal hook failed", self.name)
        finally:
            if not handed_over:
                conn.close()


async def _peek_hello(conn: socket.socket, timeout: float) -> bytes:
    """The start of ``conn`` up to its first whole TLS record, or less when that is enough to
    judge it (a TLS 1.2+ legacy_version, not a handshake), without consuming anything; ``b""``
    if the peer closed. A record still incomplete after ~0.6 s is returned as it is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    data = b""
    for _ in range(64):  # a ClientHello comes in one or a few segments
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, ready)
        try:
            await asyncio.wait_for(ready, max(0.0, deadline - loop.time()))
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data = conn.recv(_MAX_RECORD, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data or _judgeable(data):
            return data
        await asyncio.sleep(0.01)  # the socket stays readable while peeked: let the rest arrive
    return data


def _judgeable(data: bytes) -> bool:
    if len(data) >= _MAX_RECORD or (len(data) >= 1 and data[0] != _HANDSHAKE):
        return True
    if len(data) < 11:
        return False
    if struct.unpack_from(">H", data, 9)[0] >= TLS12:
        return True
    record_end: int = 5 + struct.unpack_from(">H", data, 3)[0]
    return len(data) >= record_end


async def _drain(conn: socket.socket) -> None:
    """Discard what the peer still sends (at most 64 KiB) until it closes."""
    loop = asyncio.get_running_loop()
    left = 65536
    while left > 0:
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            return
        left -= len(chunk)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _peer(conn: socket.socket) -> object:
    try:
        return conn.getpeername()
    except OSError:
        return None


def _peer_host(conn: socket.socket) -> str | None:
    try:
        peer = conn.getpeername()
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) else None


def _name(version: int) -> str:
    return {0x0300: "SSL 3.0", 0x0301: "1.0", 0x0302: "1.1"}.get(version, hex(version))


async def serve_tls(
    factory: Callable[[], Any],
    ctx: ssl.SSLContext,
    host: str | None = None,
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    backlog: int = 128,
    reuse_address: bool = True,
    handshake_timeout: float | None = None,
    name: str = "tls",
    on_refused: RefusalHook | None = None,
) -> TlsServer:
    """Serve ``factory`` over TLS with ``ctx`` on ``sock`` or a new socket bound to ``host``:
    ``port``, answering a TLS 1.0/1.1-only ClientHello with the ``protocol_version`` alert. In
    place of ``loop.create_server(factory, host, port, ssl=ctx, ssl_handshake_timeout=...)``.

    ``on_refused(client address, error)`` is told of every failed handshake (a refused client
    certificate: unknown CA, expired, revoked; a timeout, ...); without it they are logged at
    debug level only."""
    sockets = [sock] if sock is not None else await _bind(host, port, reuse_address)
    for s in sockets:
        s.listen(backlog)
    server = TlsServer(factory, ctx, sockets, handshake_timeout=handshake_timeout, name=name, on_refused=on_refused)
    server.start()
    return server


async def _bind(host: str | None, port: int, reuse_address: bool) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (all interfaces when empty), as create_server."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    out: list[socket.socket] = []
    try:
        for family, kind, proto, _canon, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out
