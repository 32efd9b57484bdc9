"""The FastAPI application: management API under /api/v1, /healthz, /metrics, OpenAPI at /docs."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.responses import Response

import gatehub
from gatehub.transports.http.api import accounts, catalog, certificates, data, devicelink, rpc, services, topology
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import BodyLimit, JsonByDefault, install_error_handlers


class _HubCollector:
    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def collect(self) -> Any:
        w = self.ctx.ingest.writer
        yield CounterMetricFamily("gatehub_ingest_rows", "Telemetry rows committed", value=w.rows_committed)
        yield CounterMetricFamily("gatehub_ingest_batches", "Write batches committed", value=w.batches_committed)
        yield CounterMetricFamily("gatehub_ingest_transactions", "Group-commit transactions", value=w.transactions)
        yield CounterMetricFamily("gatehub_ingest_commit_seconds", "Time spent committing", value=w.commit_seconds)
        yield GaugeMetricFamily("gatehub_ingest_queue_depth", "Batches waiting for the writer", value=w.queue_depth)
        yield GaugeMetricFamily(
            "gatehub_uptime_seconds",
            "Seconds since the node started",
            value=time.time() - self.ctx.started_at,
        )
        for name, fn in self.ctx.metrics.gauges.items():
            yield GaugeMetricFamily(name, name.replace("_", " "), value=fn())
        for name, (doc, labels, read) in self.ctx.metrics.counters.items():
            family = CounterMetricFamily(name, doc, labels=list(labels))
            for values, value in read():
                family.add_metric(list(values), value)
            yield family


def create_app(ctx: HubContext) -> FastAPI:
    """Every route is always there; one whose transport is off on this node (RPC without MQTT,
    device links switched off) answers 503 with a message naming the setting."""
    app = FastAPI(
        title="gatehub",
        version=gatehub.__version__,
        description="Management API of a gatehub node. Authenticate with `Authorization: Bearer <API key>`.",
    )
    app.state.hub = ctx
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    for mod in (accounts, catalog, data, topology, certificates, rpc, services, devicelink):
        api.include_router(mod.router)
    app.include_router(api)
    registry = CollectorRegistry()
    registry.register(_HubCollector(ctx))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness and readiness: the database answers and the ingest writer runs."""
        from sqlalchemy import text

        async with ctx.store.db.connect() as c:
            await c.execute(text("SELECT 1"))
        return {
            "status": "ok",
            "version": gatehub.__version__,
            "database": ctx.store.db.dialect,
            "ingestQueue": ctx.ingest.queue_depth,
        }

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    app.add_middleware(JsonByDefault)
    app.add_middleware(BodyLimit, limit=ctx.settings.http_max_body_bytes)
    return app
