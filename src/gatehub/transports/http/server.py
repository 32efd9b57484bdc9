"""Running an ASGI app on a socket we bind, with uvicorn, inside our own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

import uvicorn

from gatehub.pki.tlsgate import RefusalHook, TlsServer, serve_tls
from gatehub.transports.http.limits import HttpLimits as HttpLimits
from gatehub.transports.http.limits import guarded_protocol

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (with proto 0
    # every response waits ~40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """A uvicorn server on a pre-bound socket; ``port`` is known before it starts serving.

    The HTTP backend is uvicorn's httptools protocol with our limits on request heads, header
    count, head read time and bodies (:mod:`gatehub.transports.http.limits`), chosen explicitly:
    uvicorn's "auto" picks httptools whenever it is installed, and httptools has none of these
    limits (``h11_max_incomplete_event_size`` only binds the h11 backend, which is slower)."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "http",
        on_refused: RefusalHook | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        self.name = name
        self.on_refused = on_refused  # told of every refused TLS handshake
        self.sock = bind_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.host = host
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            http=guarded_protocol(limits or HttpLimits()),
        )
        self._ssl = ssl_context
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._tls: TlsServer | None = None

    async def start(self) -> None:
        config = self.server.config
        if not config.loaded:
            config.load()
        self.server.lifespan = config.lifespan_class(config)
        if self._ssl is None:
            await self.server.startup(sockets=[self.sock])
        else:
            # TLS: uvicorn gets no socket (it creates no server of its own); our accept loop serves
            # its protocol over the context (ours comes ready-made and may swap per handshake) and
            # answers a TLS 1.0/1.1 ClientHello with the protocol_version alert (pki.tlsgate)
            config.ssl = None
            await self.server.startup(sockets=[])
            server = self.server

            def protocol() -> asyncio.Protocol:
                p: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=server.server_state, app_state=server.lifespan.state
                )
                return p

            self._tls = await serve_tls(
                protocol,
                self._ssl,
                sock=self.sock,
                backlog=config.backlog,
                handshake_timeout=10.0,
                name=self.name,
                on_refused=self.on_refused,
            )
        self._task = asyncio.create_task(self.server.main_loop(), name=f"{self.name}-main-loop")
        log.info("%s listening on %s:%d", self.name, self.host, self.port)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tls is not None:
            self._tls.close()
        await self.server.shutdown(sockets=[self.sock])
        if self._tls is not None:
            await self._tls.wait_closed()
            self._tls = None
        self.sock.close()
