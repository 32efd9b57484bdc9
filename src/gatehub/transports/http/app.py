"""The FastAPI application: management API under /api/v1, /healthz, /metrics, OpenAPI at /docs."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.responses import Response

import gatehub
from gatehub.domain.telemetry import INT64_MAX, INT64_MIN
from gatehub.transports.http.api import accounts, catalog, certificates, data, devicelink, rpc, services, topology
from gatehub.transports.http.api.deps import principal
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import (
    ERROR_STATUS,
    BodyLimit,
    ErrorBody,
    JsonByDefault,
    RefuseNul,
    install_error_handlers,
)

DESCRIPTION = """Management API of a gatehub node. Authenticate with `Authorization: Bearer <API key>`.

Every error answers `{"error": {"code", "message", "details"?}}` with the status its route
documents: 400 for invalid input (validation included), 401 without a valid key, 403 when the
key lacks the right, 404 for what does not exist *or is not visible to the key* (another
tenant's objects are simply not found), 409 when an id or name is taken (ids are unique across
the hub, so a 409 says only that the id is taken, never by whom), 413 for a body over
`http_max_body_bytes`, 503 when the database or a transport the route needs is unavailable.
"""


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
    app = FastAPI(title="gatehub", version=gatehub.__version__, description=DESCRIPTION)
    app.state.hub = ctx
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    for mod in (accounts, catalog, data, topology, certificates, rpc, services, devicelink):
        _document_errors(mod.router)
        api.include_router(mod.router)
    app.include_router(api)
    _openapi_without_422(app)
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

    app.add_middleware(RefuseNul)
    app.add_middleware(JsonByDefault)
    app.add_middleware(BodyLimit, limit=ctx.settings.http_max_body_bytes)
    return app


def _authenticated(dep: Dependant) -> bool:
    return dep.call is principal or any(_authenticated(d) for d in dep.dependencies)


def _document_errors(router: APIRouter) -> None:
    """The error statuses every REST route can answer, on top of those it declares itself:
    400 (invalid input; also a bad Content-Length) and 503 (the database failed) on every route;
    401, 403 and 429 (the credential guard refuses a backed-off address unchecked) on every route
    that takes an API key; 413 on every route that takes a body."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        codes = {400, 503}
        if _authenticated(route.dependant):
            codes |= {401, 403, 429}
        if route.body_field is not None or "requestBody" in (route.openapi_extra or {}):
            codes.add(413)
        common: dict[int | str, dict[str, Any]] = {
            c: {"model": ErrorBody, "description": ERROR_STATUS[c]} for c in sorted(codes)
        }
        route.responses = {**common, **route.responses}  # a new dict: routes may share the one declared


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents 422 for validation errors; this API answers them 400 (the one error
    status for invalid input, whether the framework or a rule of the hub finds it), so 422 and
    its schemas leave the description."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for ops in spec.get("paths", {}).values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            schemas = spec.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            _integer_bounds(schemas)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _integer_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model keeps the bounds of body fields as floats, so ``le=2**63 - 1``
    (a certificate serial) comes out as 2**63, one past what the database stores. Integer bounds
    go back to integers; no bound of this API is beyond 64 bits, so one that rounded past them
    is the 64-bit limit it was written as."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for k in ("minimum", "maximum"):
                if isinstance(node.get(k), float):
                    node[k] = max(INT64_MIN, min(INT64_MAX, int(node[k])))
        for v in node.values():
            _integer_bounds(v)
    elif isinstance(node, list):
        for v in node:
            _integer_bounds(v)
