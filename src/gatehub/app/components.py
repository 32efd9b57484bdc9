"""The optional parts of a node, in start order, and how each is built from the services.

Each builder ``(parts) -> Component | None`` reads the settings, returns None when its listener
is switched off (port -1), and registers its gauges in ``services.metrics``. The node starts
the components in this order and stops them in reverse. Transports never build services: they
get them from :class:`gatehub.services.context.Services`.
"""

from __future__ import annotations

from gatehub.app.base import Component, ComponentFactory, Parts, Started
from gatehub.app.devicelink import build_devicelink
from gatehub.app.mqtt import build_mqtt


async def build_grpc(parts: Parts) -> Component | None:
    """The G-SDK master-gateway gRPC listener (mTLS) unless grpc_port is -1."""
    if parts.services.settings.grpc_port < 0:
        return None
    from gatehub.transports.grpc.server import GrpcListener

    listener = GrpcListener(parts.services)
    parts.services.transports.add("grpc")
    return Started(listener, parts, lambda: {"grpc": listener.port} if listener.port is not None else {})


async def build_iotda(parts: Parts) -> Component | None:
    """The IoTDA-compatible HTTPS device API unless iotda_port is -1."""
    if parts.services.settings.iotda_port < 0:
        return None
    from gatehub.transports.http.iotda import IotdaListener

    s = parts.services.settings
    listener = IotdaListener(parts.services, s.bind_host, s.iotda_port)
    parts.iotda = listener
    parts.services.transports.add("iotda")
    return Started(listener, parts, lambda: {"iotda": listener.port})


async def build_compaction(parts: Parts) -> Component | None:
    """Merging of small telemetry chunks (PostgreSQL only; telemetry_compact_interval > 0)."""
    s = parts.services.settings
    if parts.db.dialect != "postgresql" or s.telemetry_compact_interval <= 0:
        return None
    from gatehub.store.compaction import ChunkCompactor, CompactionService

    svc = CompactionService(ChunkCompactor(parts.db, points=s.telemetry_compact_points), s.telemetry_compact_interval)
    parts.services.metrics.add(gatehub_telemetry_chunks_merged=lambda: svc.chunks_merged)
    return svc


def component_builders() -> list[ComponentFactory]:
    return [build_mqtt, build_grpc, build_iotda, build_devicelink, build_compaction]
