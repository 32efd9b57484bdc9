"""Server-side RPC and device claiming over REST (ThingsBoard-compatible bodies).

- ``POST /devices/{id}/rpc`` ``{"method", "params", "timeout", "oneway", "persistent",
  "expirationTime"}``: a two-way call answers with the device's reply (504 on timeout); a
  one-way call answers ``{"rpcId", "status"}`` once delivered; a persistent call answers
  ``{"rpcId", "status"}`` at once and is delivered when the device is reachable, until it expires.
- ``GET /devices/{id}/rpc`` and ``GET /rpc/{rpcId}``: calls and their states.
- ``POST /devices/{id}/claim`` ``{"secretKey"}``: inside the device's claim window, the device
  is assigned to the caller's customer (a key without a customer names one: ``customerId``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatehub.domain.permissions import Action, Resource
from gatehub.domain.rpc import RpcStatus
from gatehub.domain.telemetry import TS_MAX
from gatehub.errors import InvalidInput
from gatehub.transports.http.api.bounds import storable_json
from gatehub.transports.http.api.deps import Caller, Hub, Paging, device_for
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404))


class RpcIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str = Field(min_length=1, max_length=255)
    params: Any = None
    timeout: int | None = Field(None, ge=100, le=600_000, description="ms to wait for the reply")
    oneway: bool = False
    persistent: bool = False
    expiration_time: int | None = Field(None, alias="expirationTime", ge=0, le=TS_MAX, description="ms since the epoch")
    expiration: int | None = Field(None, ge=0, le=TS_MAX, description="alias of expirationTime")

    _params = field_validator("params")(storable_json)


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    secret_key: str = Field("", alias="secretKey", max_length=255)
    customer_id: str | None = Field(None, alias="customerId", min_length=1, max_length=128)


@router.post("/devices/{device_id}/rpc", tags=["rpc"], responses=error_responses(502, 504))
async def send_rpc(device_id: str, body: RpcIn, hub: Hub, p: Caller) -> JSONResponse:
    dev = await device_for(hub, p, device_id, Resource.RPC, Action.CREATE)
    svc = hub.rpc
    req = svc.request(
        {
            "method": body.method,
            "params": body.params,
            "timeout": body.timeout,
            "oneway": body.oneway,
            "persistent": body.persistent,
            "expiration": body.expiration_time if body.expiration_time is not None else body.expiration,
        }
    )
    call = await svc.call(dev, req)
    if req.persistent or req.oneway:
        return JSONResponse({"rpcId": call.id, "status": call.status.value})
    if call.status is RpcStatus.SUCCESSFUL:
        return JSONResponse(call.response)
    code = {RpcStatus.FAILED: 502, RpcStatus.EXPIRED: 504, RpcStatus.TIMEOUT: 504}.get(call.status, 502)
    return JSONResponse(
        {"error": {"code": f"rpc_{call.status.value.lower()}", "message": f"RPC {call.id} ended {call.status.value}"}},
        status_code=code,
    )


@router.get("/devices/{device_id}/rpc", tags=["rpc"])
async def list_rpc(
    device_id: str, hub: Hub, p: Caller, pg: Paging, status: RpcStatus | None = Query(None)
) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.RPC, Action.READ)
    items, total = await hub.rpc.calls.list_for_device(dev.id, status, pg.offset, pg.limit)
    return {"items": [c.public() for c in items], "total": total, "offset": pg.offset, "limit": pg.limit}


@router.get("/rpc/{rpc_id}", tags=["rpc"])
async def get_rpc(rpc_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.RPC, Action.READ)
    call = await hub.rpc.calls.get(None if p.is_system else p.tenant_id, rpc_id)
    await device_for(hub, p, call.device_id, Resource.RPC, Action.READ)  # a customer sees only its devices
    return call.public()


@router.post("/devices/{device_id}/claim", tags=["devices"], responses=error_responses(409))
async def claim_device(device_id: str, body: ClaimIn, hub: Hub, p: Caller) -> dict[str, Any]:
    """Claim a device whose claim window is open, for the caller's customer."""
    p.require(Resource.DEVICE, Action.UPDATE)
    # not device_for(): the device belongs to no customer yet, so a customer key could not see it
    dev = await hub.store.devices.get(None if p.is_system else p.tenant_id, device_id)
    customer = p.customer_id or body.customer_id
    if customer is None:
        raise InvalidInput("customerId is required for an API key that does not belong to a customer")
    if p.customer_id is not None and body.customer_id not in (None, p.customer_id):
        raise InvalidInput("a customer key claims for its own customer only")
    await hub.claims.claim(dev, body.secret_key, customer)
    return {"deviceId": dev.id, "customerId": customer, "claimed": True}
