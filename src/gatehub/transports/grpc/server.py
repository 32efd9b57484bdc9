"""The G-SDK master-gateway gRPC listener (``grpc_port``, default 4010, mTLS).

Two parts (see :mod:`gatehub.transports.grpc.relay` for why): a grpc.aio server on
``127.0.0.1:<ephemeral>`` serving ``gsdk.gateway.Gateway``, ``gsdk.login.Login`` and
``gsdk.tenant.Tenant``, and the TLS relay on ``bind_host:grpc_port`` in front of it. On every
``pki.blacklist`` bus event (published by :meth:`gatehub.node.Node.reload_blacklist`) the calls
of connections whose certificate is now blacklisted are ended with UNAUTHENTICATED and the
connections closed (within ``close_grace`` = 0.25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import grpc

from gatehub.registry import GatewayRegistry
from gatehub.transports.grpc._generated import gateway_pb2, login_pb2, tenant_pb2
from gatehub.transports.grpc.auth import TokenAuthority
from gatehub.transports.grpc.dispatch import Gate, service_handler
from gatehub.transports.grpc.gateway_service import GatewayService
from gatehub.transports.grpc.login_service import PUBLIC_METHODS, LoginService
from gatehub.transports.grpc.relay import TlsRelay
from gatehub.transports.grpc.status import StatusHub
from gatehub.transports.grpc.tenant_service import TenantService

if TYPE_CHECKING:
    from gatehub.node import Node

__all__ = ["GrpcListener", "build_grpc_listener"]

log = logging.getLogger(__name__)

_MAX_MESSAGE = 4 * 1024 * 1024


class GrpcListener:
    name = "grpc"

    def __init__(self, node: Node, registry: GatewayRegistry) -> None:
        assert node.pki is not None and node.store is not None
        s = node.settings
        self.node = node
        self.registry = registry
        self.tokens = TokenAuthority(s.pki_dir, s.grpc_token_ttl)
        self.status = StatusHub(node.bus)
        self.server: Any = None
        self.relay: TlsRelay | None = None
        self.port: int | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        node = self.node
        assert node.pki is not None and node.store is not None
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
        relay = TlsRelay(node.pki, node.settings.bind_host, node.settings.grpc_port, internal_port)
        gate = Gate(relay, node.pki, self.tokens)
        services: list[tuple[Any, object, frozenset[str]]] = [
            (
                gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
                GatewayService(self.registry, self.status, node.settings.grpc_status_queue_size),
                frozenset(),
            ),
            (
                login_pb2.DESCRIPTOR.services_by_name["Login"],
                LoginService(node.store, node.pki, self.tokens),
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
        node.endpoints.extra["grpc"] = self.port
        self._watch = asyncio.get_running_loop().create_task(self._on_blacklist(), name="grpc-blacklist")
        log.info("gRPC (G-SDK) listening on %s:%d (mTLS)", node.settings.bind_host, self.port)

    async def _on_blacklist(self) -> None:
        assert self.node.pki is not None
        pki = self.node.pki
        while True:  # a subscription that overflowed is closed by the bus: subscribe again
            sub = self.node.bus.subscribe("pki.blacklist", maxsize=100)
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


async def build_grpc_listener(node: Node) -> GrpcListener | None:
    if node.settings.grpc_port < 0:
        return None
    assert node.ctx is not None
    registry = node.ctx.extras.get("registry")
    if not isinstance(registry, GatewayRegistry):
        raise RuntimeError("the gRPC listener needs the pki service (gatehub.pki_service) built before it")
    return GrpcListener(node, registry)
