"""Topology, provisioning and thing models over REST.

- ``GET /gateways/{id}/topology``: the gateway and its sub-devices as a tree, with the topology
  version and every presence. ``POST /gateways/{id}/topology`` ``{"add": [ids], "remove": [ids]}``
  changes it as an operator (no credentials needed; a sub-device of another gateway moves);
  ``DELETE /gateways/{id}/topology/{deviceId}`` detaches one. Gateways are notified.
- ``GET /devices/{id}/presence``: online, offline or offline-gateway, with the serving gateway.
- ``POST /devices/{id}/secret/reset`` ``{"secret"?}``: a new secret (shown once), deliverable again
  by dynamic registration; the device's IoTDA tokens end.
- ``POST /products/{id}/whitelist`` (a CSV body, see ``domain.provisioning``): pre-register
  device names for the product. A JSON body (``[]``, ``{...}``) is refused, not read as a name,
  and so is a file none of whose lines can be imported (400, with each line's reason).
- ``GET /products/{id}/thing-model`` exports the thing model JSON; ``PUT`` imports one (checked
  first: a malformed model is refused naming the entry, and nothing changes).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gatehub.domain.model import Device, DeviceKind
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.domain.provisioning import parse_whitelist
from gatehub.errors import InvalidInput
from gatehub.store.topology import SubRef, TopologyResult
from gatehub.transports.http.api.deps import Caller, Hub, device_for
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404))


class TopologyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=1000)
    remove: list[str] = Field(default_factory=list, max_length=1000)


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(None, min_length=8, max_length=128)


def _node(d: Device) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "productId": d.product_id,
        "kind": d.kind.value,
        "presence": d.presence.value,
        "lastSeen": d.last_seen,
    }


async def _gateway(hub: HubContext, p: Principal, gateway_id: str, action: Action) -> Device:
    dev = await device_for(hub, p, gateway_id, Resource.GATEWAY, action)
    if dev.kind is not DeviceKind.GATEWAY:
        raise InvalidInput(f"device {gateway_id} is not a gateway")
    return dev


async def _tree(hub: HubContext, p: Principal, gw: Device) -> dict[str, Any]:
    view = await hub.store.topology.get(gw.tenant_id, gw.id)
    children = [c for c in view.children if p.customer_id is None or c.customer_id == p.customer_id]
    return {**_node(view.gateway), "topologyVersion": view.version, "children": [_node(c) for c in children]}


def _result(res: TopologyResult) -> dict[str, Any]:
    return {
        "gatewayId": res.gateway_id,
        "topologyVersion": res.version,
        "added": [d.id for d in res.added],
        "removed": [d.id for d in res.removed],
        "refused": [{"deviceId": r.ref.label(), "reason": r.reason.value, "message": r.message} for r in res.refused],
    }


@router.get("/gateways/{gateway_id}/topology", tags=["gateways"])
async def get_topology(gateway_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    """The gateway and its sub-devices (a tree), the topology version and presence of each."""
    gw = await _gateway(hub, p, gateway_id, Action.READ)
    return await _tree(hub, p, gw)


@router.post("/gateways/{gateway_id}/topology", tags=["gateways"])
async def change_topology(gateway_id: str, body: TopologyChange, hub: Hub, p: Caller) -> dict[str, Any]:
    """Attach (``add``) and detach (``remove``) sub-devices by id, as an operator."""
    gw = await _gateway(hub, p, gateway_id, Action.UPDATE)
    if not body.add and not body.remove:
        raise InvalidInput("name sub-devices to add or remove")
    for dev_id in [*body.add, *body.remove]:
        await device_for(hub, p, dev_id, Resource.DEVICE, Action.UPDATE)  # a customer key: its own devices
    out: dict[str, Any] = {"gatewayId": gw.id, "added": [], "removed": [], "refused": []}
    for ids, op in ((body.remove, "remove"), (body.add, "add")):
        if not ids:
            continue
        refs = [SubRef(device_id=i) for i in ids]
        if op == "add":
            res = await hub.store.topology.add(gw.tenant_id, gw.id, refs, trusted=True, source="api")
        else:
            res = await hub.store.topology.remove(gw.tenant_id, gw.id, refs, source="api")
        part = _result(res)
        for k in ("added", "removed", "refused"):
            out[k] += part[k]
        out["topologyVersion"] = res.version
    return out


@router.delete("/gateways/{gateway_id}/topology/{device_id}", tags=["gateways"])
async def detach(gateway_id: str, device_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    gw = await _gateway(hub, p, gateway_id, Action.UPDATE)
    await device_for(hub, p, device_id, Resource.DEVICE, Action.UPDATE)
    res = await hub.store.topology.remove(gw.tenant_id, gw.id, [SubRef(device_id=device_id)], source="api")
    if res.refused:
        raise InvalidInput(res.refused[0].message)
    return _result(res)


@router.get("/devices/{device_id}/presence", tags=["devices"])
async def presence(device_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.DEVICE, Action.READ)
    out: dict[str, Any] = {
        "deviceId": dev.id,
        "presence": dev.presence.value,
        "lastSeen": dev.last_seen,
        "lastAddress": dev.last_address,
        "gatewayId": dev.parent_id,
    }
    if dev.parent_id:
        gw = await hub.store.devices.get(dev.tenant_id, dev.parent_id)
        out["gatewayPresence"] = gw.presence.value
    return out


@router.post("/devices/{device_id}/secret/reset", tags=["devices"])
async def reset_secret(device_id: str, hub: Hub, p: Caller, body: SecretIn | None = None) -> dict[str, Any]:
    """A new device secret (shown once); dynamic registration may deliver it again."""
    dev = await device_for(hub, p, device_id, Resource.DEVICE, Action.UPDATE)
    dev, revoked = await hub.store.provisioning.reset_secret(dev.tenant_id, dev.id, body.secret if body else None)
    return {"deviceId": dev.id, "secret": dev.secret, "secretDelivered": False, "tokensRevoked": revoked}


_CSV_BODY = {"schema": {"type": "string", "minLength": 1, "description": "CSV text (UTF-8)"}}


def _refuse_json(text: str) -> None:
    """A JSON array or object is not a whitelist (``[]`` would otherwise become a device named ``[]``)."""
    if text.lstrip()[:1] not in ("[", "{"):
        return
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if isinstance(doc, list | dict):
        raise InvalidInput(
            "the whitelist is CSV text (deviceName[,deviceId][,deviceSecret] with a header row, or one "
            "device name per line), not JSON"
        )


@router.post(
    "/products/{product_id}/whitelist",
    tags=["products"],
    openapi_extra={"requestBody": {"content": {"text/csv": _CSV_BODY, "text/plain": _CSV_BODY}, "required": True}},
)
async def import_whitelist(product_id: str, request: Request, hub: Hub, p: Caller) -> dict[str, Any]:
    """Pre-register device names (CSV: ``deviceName[,deviceId][,deviceSecret]`` with a header
    row, or one name per line). Names already registered are listed, not changed."""
    p.require(Resource.DEVICE, Action.CREATE)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the whitelist must be UTF-8 text") from None
    _refuse_json(text)
    rows, errors = parse_whitelist(text)
    res = await hub.store.provisioning.import_whitelist(prod.tenant_id, prod.id, rows)
    refused = sorted([*errors, *res.errors], key=lambda e: e.line)
    if refused and not res.created and not res.existing:
        # nothing was imported and nothing changed: the file as a whole is refused
        first = refused[0]
        raise InvalidInput(
            f"no line of the whitelist can be imported ({len(refused)} refused); line {first.line}: {first.message}"
        )
    return {
        "productId": prod.id,
        "created": [{"id": d.id, "name": d.name} for d in res.created],
        "existing": res.existing,
        "errors": [{"line": e.line, "message": e.message} for e in refused],
    }


@router.get("/products/{product_id}/thing-model", tags=["products"])
async def export_model(product_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.READ)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    return prod.thing_model


@router.put("/products/{product_id}/thing-model", tags=["products"])
async def import_model(product_id: str, hub: Hub, p: Caller, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.UPDATE)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    prod = await hub.store.catalog.update_product(prod.tenant_id, prod.id, thing_model=body)
    return prod.thing_model


@router.delete("/products/{product_id}/thing-model", status_code=204, tags=["products"])
async def clear_model(product_id: str, hub: Hub, p: Caller) -> Response:
    p.require(Resource.PRODUCT, Action.UPDATE)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    await hub.store.catalog.update_product(prod.tenant_id, prod.id, thing_model={})
    return Response(status_code=204)
