"""Telemetry, attributes, the event log and the live event stream (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from gatehub.domain.model import AttributeScope
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.domain.telemetry import TS_MAX, check_key, flatten_points, now_ms, typed
from gatehub.errors import InvalidInput, PermissionDenied
from gatehub.store import WriteBatch
from gatehub.transports.http.api.deps import Caller, Hub, device_for
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404))

EVENT_TYPES = {"status", "telemetry", "attributes", "topology", "message", "rpc"}


def _keys(keys: str | None) -> list[str] | None:
    if not keys:
        return None
    out = [k.strip() for k in keys.split(",") if k.strip()]
    return out or None


@router.get("/devices/{device_id}/telemetry", tags=["telemetry"])
async def query_telemetry(
    device_id: str,
    hub: Hub,
    p: Caller,
    keys: str | None = Query(None, description="Comma-separated keys; all when absent"),
    start: int = Query(0, ge=0, le=TS_MAX, description="From (ms since the epoch, inclusive)"),
    end: int | None = Query(None, ge=1, le=TS_MAX, description="To (ms, exclusive); now when absent"),
    limit: int = Query(1000, ge=1, le=100_000),
    order: str = Query("asc", pattern="^(asc|desc)$"),
    agg: str | None = Query(None, pattern="^(min|max|avg|sum|count)$"),
    interval: int | None = Query(None, ge=1, le=TS_MAX, description="Aggregation interval (ms)"),
) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.TELEMETRY, Action.READ)
    stop = end if end is not None else now_ms() + 1
    if agg is not None:
        if interval is None:
            raise InvalidInput("interval is required with agg")
        return await hub.store.data.aggregate(dev.id, _keys(keys), start, stop, interval, agg)
    return await hub.store.data.telemetry(dev.id, _keys(keys), start, stop, limit, order)


@router.post("/devices/{device_id}/telemetry", tags=["telemetry"])
async def post_telemetry(device_id: str, hub: Hub, p: Caller, body: Any = Body(...)) -> dict[str, Any]:
    """Store points for a device: ``{k: v}``, ``{"ts", "values"}`` or a list of those.
    Answers after the points are committed."""
    dev = await device_for(hub, p, device_id, Resource.TELEMETRY, Action.CREATE)
    rows: list[Any] = []
    flatten_points(dev.id, body, now_ms(), rows)
    if not rows:
        raise InvalidInput("no data points in the body")
    await hub.ingest.write(WriteBatch(dev.tenant_id, telemetry=rows))
    return {"stored": len(rows)}


@router.get("/devices/{device_id}/telemetry/latest", tags=["telemetry"])
async def latest_values(device_id: str, hub: Hub, p: Caller, keys: str | None = None) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.TELEMETRY, Action.READ)
    return await hub.store.data.latest(dev.id, _keys(keys))


@router.get("/devices/{device_id}/attributes", tags=["attributes"])
async def read_attributes(
    device_id: str, hub: Hub, p: Caller, scope: AttributeScope | None = None, keys: str | None = None
) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.ATTRIBUTE, Action.READ)
    return await hub.store.data.attributes(dev.id, scope, _keys(keys))


@router.get("/devices/{device_id}/attributes/{scope}", tags=["attributes"])
async def read_scope(device_id: str, scope: AttributeScope, hub: Hub, p: Caller) -> list[dict[str, Any]]:
    dev = await device_for(hub, p, device_id, Resource.ATTRIBUTE, Action.READ)
    return await hub.store.data.attributes_detailed(dev.id, scope)


@router.post("/devices/{device_id}/attributes/{scope}", tags=["attributes"])
async def write_attributes(
    device_id: str, scope: AttributeScope, hub: Hub, p: Caller, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Write shared or server attributes (client attributes belong to the device)."""
    dev = await device_for(hub, p, device_id, Resource.ATTRIBUTE, Action.UPDATE)
    if scope is AttributeScope.CLIENT:
        raise InvalidInput("client attributes are written by the device, not through the API")
    if not body:
        raise InvalidInput("the body must be an object with at least one attribute")
    now = now_ms()
    rows = []
    for k, v in body.items():
        check_key(k)
        if v is None:
            raise InvalidInput(f"attribute {k!r} is null; DELETE it instead")
        typed(v)  # refuses what cannot be stored (NaN, integers beyond 64 bits)
        try:
            text = orjson.dumps(v).decode()
        except orjson.JSONEncodeError as exc:
            raise InvalidInput(f"attribute {k!r} cannot be stored: {exc}") from None
        rows.append((dev.id, scope.value, k, text, now))
    await hub.ingest.write(WriteBatch(dev.tenant_id, attributes=rows))
    return {"updated": sorted(body)}


@router.delete("/devices/{device_id}/attributes/{scope}", status_code=204, tags=["attributes"])
async def delete_attributes(
    device_id: str, scope: AttributeScope, hub: Hub, p: Caller, keys: str = Query(..., min_length=1)
) -> Response:
    dev = await device_for(hub, p, device_id, Resource.ATTRIBUTE, Action.DELETE)
    names = _keys(keys) or []
    deleted = await hub.store.data.delete_attributes(dev.id, scope, names)
    if deleted:
        hub.bus.publish(
            f"t.{dev.tenant_id}.attributes.{dev.id}",
            {"type": "attributes", "deviceId": dev.id, "scope": scope.value, "data": {}, "deleted": deleted},
        )
    return Response(status_code=204)


def _customer_needs_device(p: Principal, device_id: str | None) -> None:
    """A customer key sees only its customer's devices: its events are read one device at a time."""
    if p.customer_id is not None and device_id is None:
        raise PermissionDenied("a customer API key must name one of its devices (deviceId)")


@router.get("/events", tags=["events"])
async def event_log(
    hub: Hub,
    p: Caller,
    tenant_id: str | None = Query(None, alias="tenantId"),
    device_id: str | None = Query(None, alias="deviceId"),
    type: str | None = None,
    start: int | None = Query(None, ge=0, le=TS_MAX, description="From (ms since the epoch, inclusive)"),
    end: int | None = Query(None, ge=0, le=TS_MAX, description="To (ms since the epoch)"),
    limit: int = Query(100, ge=1, le=10_000),
) -> dict[str, Any]:
    p.require(Resource.EVENT, Action.READ)
    tid = p.scope_tenant(tenant_id)
    _customer_needs_device(p, device_id)
    if p.customer_id is not None and device_id is not None:
        await device_for(hub, p, device_id, Resource.EVENT, Action.READ)
    items = await hub.store.data.events(tid, device_id, type, start, end, limit)
    return {"items": items}


@router.get("/events/stream", tags=["events"], response_class=StreamingResponse)
async def event_stream(
    request: Request,
    hub: Hub,
    p: Caller,
    tenant_id: str | None = Query(None, alias="tenantId"),
    types: str | None = Query(None, description="Comma-separated: " + ", ".join(sorted(EVENT_TYPES))),
    device_id: str | None = Query(None, alias="deviceId"),
) -> StreamingResponse:
    """Server-sent events: ``event: <type>`` and ``data: <json>`` per change, a comment every 15 s.
    A client that falls behind gets ``event: overflow`` and the stream ends."""
    p.require(Resource.EVENT, Action.READ)
    tid = p.scope_tenant(tenant_id)
    wanted = set(_keys(types) or EVENT_TYPES)
    bad = wanted - EVENT_TYPES
    if bad:
        raise InvalidInput(f"unknown event types: {', '.join(sorted(bad))}")
    _customer_needs_device(p, device_id)
    if device_id is not None:
        await device_for(hub, p, device_id, Resource.EVENT, Action.READ)
    sub = hub.bus.subscribe(f"t.{tid}.>", maxsize=hub.settings.sse_queue_size)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                env = await sub.get(timeout=15.0)
                if env is None:
                    if sub.closed:
                        if sub.overflowed:
                            yield b"event: overflow\ndata: {}\n\n"
                        return
                    if await request.is_disconnected():
                        return
                    yield b": keepalive\n\n"
                    continue
                parts = env.subject.split(".")
                etype = parts[2] if len(parts) > 2 else "event"
                if etype not in wanted:
                    continue
                if device_id is not None and (len(parts) < 4 or parts[3] != device_id):
                    continue
                yield b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(env.data) + b"\n\n"
        except asyncio.CancelledError:
            raise
        finally:
            sub.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
