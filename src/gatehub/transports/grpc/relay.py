"""The mTLS front of the gRPC listener: TLS ends here, bytes go on to grpc.aio over loopback.

Why: grpc's Python credentials cannot check a CRL, cannot swap it while running and do not say
which certificate a connection used. So the public port (``grpc_port``, 4010) is an asyncio
server with a TLS context that follows the hub's blacklist (every handshake is checked against
the current CRL, exactly as on every other mTLS listener), and each accepted connection is
relayed byte for byte to a grpc.aio server bound to ``127.0.0.1:<ephemeral>`` in plaintext.

The relay opens one upstream connection per client connection and, before forwarding a single
byte, records the verified client-certificate identity under the upstream connection's local
port. grpc reports that port in ``context.peer()`` (``ipv4:127.0.0.1:PORT``), so every call
knows the certificate of the connection it arrived on (:meth:`TlsRelay.lookup`). A connection to
the loopback port that did not come through the relay is unknown and every call on it is refused.

When certificates are blacklisted, :meth:`TlsRelay.revoke` tells the live calls of connections
that used them (streams end with UNAUTHENTICATED) and closes those connections shortly after.

ALPN: gRPC clients insist on ``h2``. The hub's shared contexts
(:class:`gatehub.pki.TlsContextProvider`) swap every handshake over to an inner context in the
SNI callback, and OpenSSL takes the ALPN selection from that inner context, which has none. So
:class:`GrpcTlsContexts` builds this listener's own pair from the provider's current server
certificate and CRL, with ALPN ``h2``, and rebuilds its inner context whenever the provider's
CRL changes (checked on every ClientHello: one integer comparison).

Flow control: each side pauses reading the other when its transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from gatehub.errors import GatehubError
from gatehub.pki import CertificateIdentity, TlsContextProvider, peer_identity
from gatehub.pki.tlsgate import RefusalHook, TlsServer, serve_tls

__all__ = ["ConnInfo", "GrpcTlsContexts", "TlsRelay"]

log = logging.getLogger(__name__)

_ALPN = ["h2"]


class GrpcTlsContexts:
    """Server contexts with ALPN h2 that follow a :class:`TlsContextProvider` (see module doc)."""

    def __init__(self, provider: TlsContextProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._key: tuple[int, int] = (-1, -1)
        self._inner = self._current()
        self.outer = self._build()
        self.outer.sni_callback = self._on_client_hello

    def _build(self) -> ssl.SSLContext:
        p = self._provider
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(_ALPN)
        server = p.server_certificate
        directory = p.ca.directory
        with _temp_pem(server.cert_pem.rstrip("\n") + "\n" + server.key_pem, directory) as chain:
            ctx.load_cert_chain(chain)
        ctx.load_verify_locations(cadata=p.ca.cert_pem)
        with _temp_pem(p.crl.pem, directory) as crl_file:
            ctx.load_verify_locations(cafile=crl_file)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
        return ctx

    def _current(self) -> ssl.SSLContext:
        """The inner context for the provider's current CRL and server certificate."""
        key = (self._provider.crl.number, self._provider.server_certificate.serial)
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._inner = self._build()
                    self._key = key
        return self._inner

    def refresh(self) -> None:
        """Follow the provider now (after a blacklist change) rather than at the next handshake."""
        self._current()

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        try:
            self._provider.refresh()  # renews the CRL / server certificate when due (cheap otherwise)
        except Exception:
            log.exception("could not refresh the CRL or server certificate")
        ssl_object.context = self._current()


@contextlib.contextmanager
def _temp_pem(data: str, directory: Path) -> Iterator[str]:
    fd, name = tempfile.mkstemp(prefix=".grpc-tls-", suffix=".pem", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(data)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


RevokeCallback = Callable[[str], None]


class _StreamTransport(Protocol):
    """What the relay uses of a stream transport.

    Typed structurally on purpose: uvloop's transports (the hub's default loop) have all of these
    methods but are not subclasses of :class:`asyncio.Transport`, so an ``isinstance`` check on
    the concrete class refuses every connection on uvloop.
    """

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def _stream_transport(transport: asyncio.BaseTransport) -> _StreamTransport:
    """``transport`` as a :class:`_StreamTransport`, or TypeError naming what it lacks."""
    missing = [m for m in _STREAM_METHODS if not callable(getattr(transport, m, None))]
    if missing:
        raise TypeError(f"{type(transport).__name__} is not a stream transport (no {', '.join(missing)})")
    return transport  # type: ignore[return-value]  # checked structurally just above


_STREAM_METHODS = (
    "write",
    "write_eof",
    "can_write_eof",
    "is_closing",
    "pause_reading",
    "resume_reading",
    "close",
    "abort",
    "get_extra_info",
)


class ConnInfo:
    """One client connection: its certificate identity and the live calls on it."""

    __slots__ = ("_down", "calls", "host", "identity", "port", "revoked")

    def __init__(self, identity: CertificateIdentity, port: int, down: _Downstream, host: str | None = None) -> None:
        self.identity = identity
        self.host = host  # the client's address (the credential guard's source)
        self.port = port
        self._down = down
        self.calls: set[RevokeCallback] = set()
        self.revoked = False

    def close(self) -> None:
        self._down.close()


class _Upstream(asyncio.Protocol):
    __slots__ = ("down", "transport")

    def __init__(self, down: _Downstream) -> None:
        self.down = down
        self.transport: _StreamTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _stream_transport(transport)

    def data_received(self, data: bytes) -> None:
        t = self.down.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def eof_received(self) -> bool | None:
        self.down.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()

    def pause_writing(self) -> None:
        if self.down.transport is not None:
            self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.down.transport is not None and not self.down.transport.is_closing():
            self.down.transport.resume_reading()


class _Downstream(asyncio.Protocol):
    __slots__ = ("host", "info", "pending", "relay", "task", "transport", "up")

    def __init__(self, relay: TlsRelay) -> None:
        self.relay = relay
        self.transport: _StreamTransport | None = None
        self.up: _Upstream | None = None
        self.pending: list[bytes] = []
        self.info: ConnInfo | None = None
        self.task: asyncio.Task[None] | None = None
        self.host: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = _stream_transport(transport)
        ssl_object = stream.get_extra_info("ssl_object")
        peer = stream.get_extra_info("peername")
        self.host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        try:
            identity = peer_identity(self.relay.provider.ca, ssl_object)
        except GatehubError as exc:
            self.relay.refused(self.host, exc)
            stream.abort()
            return
        if self.relay.provider.is_blacklisted(identity.serial):  # blacklisted during the handshake
            self.relay.refused(self.host, GatehubError(f"certificate {identity.serial} is revoked (blacklisted)"))
            stream.abort()
            return
        stream.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._connect(identity))

    async def _connect(self, identity: CertificateIdentity) -> None:
        loop = asyncio.get_running_loop()
        try:
            up_transport, up = await loop.create_connection(
                lambda: _Upstream(self), self.relay.upstream_host, self.relay.upstream_port
            )
        except OSError as exc:
            log.warning("grpc relay: cannot reach the gRPC server: %s", exc)
            self.close()
            return
        assert isinstance(up, _Upstream)
        if self.transport is None or self.transport.is_closing():
            up_transport.close()
            return
        port = up_transport.get_extra_info("sockname")[1]
        self.info = ConnInfo(identity, port, self, self.host)
        self.relay.connections[port] = self.info
        self.up = up
        for chunk in self.pending:
            up_transport.write(chunk)
        self.pending.clear()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.write(data)
        else:
            self.pending.append(data)
            if self.transport is not None:  # paused in connection_made: made again where it holds (uvloop)
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # TLS has no half-close: pass the EOF on; the transport then closes (connection_lost)
        if self.up is not None and self.up.transport is not None and self.up.transport.can_write_eof():
            self.up.transport.write_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._drop()

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None and not self.up.transport.is_closing():
            self.up.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._drop()

    def _drop(self) -> None:
        if self.info is not None:
            self.relay.connections.pop(self.info.port, None)
        if self.up is not None and self.up.transport is not None and not self.up.transport.is_closing():
            self.up.transport.close()
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()


def _close_all(conns: list[ConnInfo]) -> None:
    for conn in conns:
        conn.close()


class TlsRelay:
    """The TLS listener in front of the loopback grpc.aio server (see the module docstring)."""

    def __init__(
        self,
        provider: TlsContextProvider,
        host: str,
        port: int,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        close_grace: float = 0.25,
        on_refused: RefusalHook | None = None,
    ) -> None:
        self.provider = provider
        self.on_refused = on_refused  # told of every refused handshake or client certificate
        self.contexts = GrpcTlsContexts(provider)
        self.host = host
        self.port = port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.close_grace = close_grace
        self.connections: dict[int, ConnInfo] = {}
        self._server: TlsServer | None = None

    async def start(self) -> int:
        # own accept loop: a TLS 1.0/1.1 hello gets the protocol_version alert (pki.tlsgate)
        self._server = await serve_tls(
            lambda: _Downstream(self),
            self.contexts.outer,
            self.host,
            self.port,
            handshake_timeout=10.0,
            name="grpc",
            on_refused=self.on_refused,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        return self.port

    def refused(self, host: str | None, exc: BaseException) -> None:
        """A client certificate refused after the handshake (unusable, blacklisted meanwhile)."""
        if self.on_refused is not None:
            self.on_refused(host, exc)
        else:
            log.info("grpc: refusing %s: %s", host, exc)

    def lookup(self, peer: str) -> ConnInfo | None:
        """The connection a grpc ``context.peer()`` (``ipv4:127.0.0.1:PORT``) belongs to."""
        host, sep, port = peer.rpartition(":")
        if not sep or not host.startswith(("ipv4:127.", "ipv6:[::1]")):
            return None
        try:
            return self.connections.get(int(port))
        except ValueError:
            return None

    def revoke(self, blacklisted: Callable[[int], bool]) -> int:
        """End the calls and close the connections whose certificate is now blacklisted."""
        self.contexts.refresh()
        hit = [c for c in self.connections.values() if not c.revoked and blacklisted(c.identity.serial)]
        reason = "the client certificate of this connection has been blacklisted"
        for conn in hit:
            conn.revoked = True
            for cb in list(conn.calls):
                try:
                    cb(reason)
                except Exception:
                    log.exception("grpc: ending a call failed")
        if hit:
            loop = asyncio.get_running_loop()
            loop.call_later(self.close_grace, _close_all, hit)
            log.info("grpc: closing %d connection(s) of blacklisted certificates", len(hit))
        return len(hit)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections.values()):
                conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
