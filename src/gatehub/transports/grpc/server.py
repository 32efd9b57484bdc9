"""The G-SDK master-gateway gRPC listener (``grpc_port``, default 4010, mTLS).

Two parts (see :mod:`gatehub.transports.grpc.relay` for why): a grpc.aio server on
``127.0.0.1:<ephemeral>`` serving ``gsdk.gateway.Gateway``, ``gsdk.login.Login`` and
``gsdk.tenant.Tenant``, and the TLS relay on ``bind_host:grpc_port`` in front of it. On every
``pki.blacklist`` bus event (published by :meth:`gatehub.services.pki.Blacklist.reload`) the calls
of connections whose certificate is now blacklisted are ended with UNAUTHENTICATED and the
connections closed (within ``close_grace`` = 0.25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from gatehub.services.context import Services
from gatehub.transports.grpc._generated import gateway_pb2, login_pb2, tenant_pb2
from gatehub.transports.grpc.auth import TokenAuthority
from gatehub.transports.grpc.dispatch import Gate, service_handler
from gatehub.transports.grpc.gateway_service import GatewayService
from gatehub.transports.grpc.login_service import PUBLIC_METHODS, LoginService
from gatehub.transports.grpc.relay import TlsRelay
from gatehub.transports.grpc.status import StatusHub
from gatehub.transports.grpc.tenant_service import TenantService

__all__ = ["GrpcListener"]

log = logging.getLogger(__name__)

_MAX_MESSAGE = 4 * 1024 * 1024


class GrpcListener:
    name = "grpc"

    def __init__(self, services: Services) -> None:
        s = services.settings
        self.services = services
        self.registry = services.registry
        self.tokens = TokenAuthority(s.pki_dir, s.grpc_token_ttl)
        self.status = StatusHub(services.bus)
        self.server: Any = None
        self.relay: TlsRelay | None = None
        self.port: int | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        svc = self.services
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ]
        )
        internal_port = server.add_insecure_port("127.0.0.1:0")
        guard = svc.guard
        relay = TlsRelay(
            svc.pki,
            svc.settings.bind_host,
            svc.settings.grpc_port,
            internal_port,
            on_refused=lambda host, exc: guard.tls_refused(host, "grpc", exc),
        )
        gate = Gate(relay, svc.pki, self.tokens, guard)
        services: list[tuple[Any, object, frozenset[str]]] = [
            (
                gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
                GatewayService(self.registry, self.status, svc.settings.grpc_status_queue_size),
                frozenset(),
            ),
            (
                login_pb2.DESCRIPTOR.services_by_name["Login"],
                LoginService(svc.store, svc.pki, self.tokens),
                PUBLIC_METHODS,
            ),
            (tenant_pb2.DESCRIPTOR.services_by_name["Tenant"], TenantService(self.registry), frozenset()),
        ]
        server.add_generic_rpc_handlers(tuple(service_handler(d, impl, gate, pub) for d, impl, pub in services))
        await server.start()
        self.server = server
        try:
            self.port = await relay.start()
        except BaseException:
            await server.stop(None)
            raise
        self.relay = relay
        self._watch = asyncio.get_running_loop().create_task(self._on_blacklist(), name="grpc-blacklist")
        log.info("gRPC (G-SDK) listening on %s:%d (mTLS)", svc.settings.bind_host, self.port)

    async def _on_blacklist(self) -> None:
        pki = self.services.pki
        while True:  # a subscription that overflowed is closed by the bus: subscribe again
            sub = self.services.bus.subscribe("pki.blacklist", maxsize=100)
            try:
                if self.relay is not None:
                    self.relay.revoke(pki.is_blacklisted)
                async for _env in sub:
                    if self.relay is not None:
                        self.relay.revoke(pki.is_blacklisted)
            finally:
                sub.close()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.status.close()
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.server is not None:
            await self.server.stop(1.0)
            self.server = None
