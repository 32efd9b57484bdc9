"""Thing-model services and property sets over REST (``services.things``; Link SDK devices).

- ``POST /devices/{id}/services/{identifier}`` ``{"params": {...}, "timeout": ms, "wait": true}``:
  the input is checked against the service's ``inputData``; the call goes to the session that
  serves the device (its own, or its gateway's after the sub-device logged in) and the answer is
  ``{"rpcId", "status", "code", "data", "message"}`` with the device's reply (its ``data``
  checked against ``outputData``). ``"wait": false`` answers 202 ``{"rpcId", "status"}`` at once;
  the reply is then read at ``GET /rpc/{rpcId}``.
- ``POST /devices/{id}/properties/set`` ``{"params": {...}}``: property set (writable properties
  of the thing model only), answered like a service.

Errors: 400 ``thing_model`` (naming the field), 409 ``device_offline``, 502 ``thing_model`` (the
device's reply does not fit the model), 504 ``rpc_timeout``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatehub.domain.permissions import Action, Resource
from gatehub.transports.http.api.bounds import storable_json
from gatehub.transports.http.api.deps import Caller, Hub, device_for
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404, 409, 502, 504))
#: ``"wait": false``: the call was sent, its reply comes later (``GET /rpc/{rpcId}``)
SENT: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Sent without waiting (`wait: false`): `{rpcId, status}`",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class ServiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    timeout: int | None = Field(None, ge=100, le=600_000, description="ms to wait for the reply")
    wait: bool = True

    _params = field_validator("params")(storable_json)


async def _invoke(hub: HubContext, p: Any, device_id: str, identifier: str, body: ServiceIn) -> JSONResponse:
    dev = await device_for(hub, p, device_id, Resource.RPC, Action.CREATE)
    res = await hub.things.call(dev, identifier, body.params, body.timeout, body.wait)
    return JSONResponse(res.public(), status_code=200 if body.wait else 202)


@router.post("/devices/{device_id}/services/{identifier}", tags=["things"], responses=SENT)
async def invoke_service(device_id: str, identifier: str, body: ServiceIn, hub: Hub, p: Caller) -> JSONResponse:
    """Invoke a thing-model service of a device and return its reply."""
    return await _invoke(hub, p, device_id, identifier, body)


@router.post("/devices/{device_id}/properties/set", tags=["things"], responses=SENT)
async def set_properties(device_id: str, body: ServiceIn, hub: Hub, p: Caller) -> JSONResponse:
    """Set writable properties of a device (thing model ``accessMode`` rw) and return its reply."""
    return await _invoke(hub, p, device_id, "property/set", body)
