"""Products, gateways and devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import Field

from gatehub.domain.model import DeviceKind, NodeType, Presence, Product
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.errors import InvalidInput, PermissionDenied
from gatehub.store import DeviceFilter
from gatehub.transports.http.api.accounts import Strict
from gatehub.transports.http.api.deps import Caller, Hub, Paging, device_for
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404))
TAKEN = error_responses(409)


class ProductIn(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=255)
    node_type: NodeType = Field(NodeType.DIRECT, alias="nodeType")
    thing_model: dict[str, Any] | None = Field(None, alias="thingModel")
    trusted_gateway_add: bool = Field(False, alias="trustedGatewayAdd")
    dynamic_register: bool = Field(False, alias="dynamicRegister")


class ProductPatch(Strict):
    name: str | None = Field(None, max_length=255)
    thing_model: dict[str, Any] | None = Field(None, alias="thingModel")
    trusted_gateway_add: bool | None = Field(None, alias="trustedGatewayAdd")
    dynamic_register: bool | None = Field(None, alias="dynamicRegister")


class DeviceIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    product_id: str = Field(alias="productId", min_length=1, max_length=128)
    id: str | None = Field(None, min_length=1, max_length=128)
    parent_id: str | None = Field(None, alias="parentId", min_length=1, max_length=128)
    access_token: str | None = Field(None, alias="accessToken", min_length=1, max_length=256)
    secret: str | None = Field(None, min_length=8, max_length=128)
    customer_id: str | None = Field(None, alias="customerId", min_length=1, max_length=128)


class DevicePatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=255)
    parent_id: str | None = Field(None, alias="parentId", min_length=1, max_length=128)
    customer_id: str | None = Field(None, alias="customerId", min_length=1, max_length=128)


def product_json(p: Product, with_secret: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "tenantId": p.tenant_id,
        "name": p.name,
        "nodeType": p.node_type.value,
        "thingModel": p.thing_model,
        "trustedGatewayAdd": p.trusted_gateway_add,
        "dynamicRegister": p.dynamic_register,
        "createdAt": p.created_at,
    }
    if with_secret:
        out["secret"] = p.secret
    return out


@router.post("/products", status_code=201, tags=["products"], responses=TAKEN)
async def create_product(
    body: ProductIn, hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")
) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.CREATE)
    tid = p.scope_tenant(tenant_id)
    prod = await hub.store.catalog.create_product(
        tid,
        body.id,
        body.name,
        body.node_type,
        body.thing_model,
        body.trusted_gateway_add,
        body.dynamic_register,
    )
    return product_json(prod, True)


@router.get("/products", tags=["products"])
async def list_products(
    hub: Hub, p: Caller, pg: Paging, tenant_id: str | None = Query(None, alias="tenantId")
) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.READ)
    tid = p.scope_tenant(tenant_id)
    items, total = await hub.store.catalog.list_products(tid, pg.offset, pg.limit)
    return {"items": [product_json(x, False) for x in items], "total": total}


@router.get("/products/{product_id}", tags=["products"])
async def get_product(product_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.READ)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    return product_json(prod, p.can(Resource.PRODUCT, Action.UPDATE))


@router.patch("/products/{product_id}", tags=["products"], responses=TAKEN)
async def update_product(product_id: str, body: ProductPatch, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.PRODUCT, Action.UPDATE)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    prod = await hub.store.catalog.update_product(prod.tenant_id, product_id, **body.model_dump())
    return product_json(prod, True)


@router.delete("/products/{product_id}", status_code=204, tags=["products"], responses=TAKEN)
async def delete_product(product_id: str, hub: Hub, p: Caller) -> Response:
    p.require(Resource.PRODUCT, Action.DELETE)
    prod = await hub.store.catalog.get_product(None if p.is_system else p.tenant_id, product_id)
    await hub.store.catalog.delete_product(prod.tenant_id, product_id)
    return Response(status_code=204)


# devices and gateways -----------------------------------------------------------------------


def _dev_json(dev: Any, p: Principal) -> dict[str, Any]:
    out: dict[str, Any] = dev.public()
    if p.can(Resource.DEVICE, Action.UPDATE):
        out["accessToken"] = dev.access_token
    return out


async def _create(
    hub: HubContext,
    p: Principal,
    body: DeviceIn,
    tenant_id: str | None,
    want: DeviceKind | None,
    res: Resource,
) -> dict[str, Any]:
    p.require(res, Action.CREATE)
    tid = p.scope_tenant(tenant_id)
    if want is not None:
        prod = await hub.store.catalog.get_product(tid, body.product_id)
        if prod.node_type is not NodeType.GATEWAY:
            raise InvalidInput(f"product {prod.id} is not a gateway product (nodeType {prod.node_type.value})")
    customer = body.customer_id if p.customer_id is None else p.customer_id
    if customer is not None:  # the customer must exist in this tenant (not another tenant's)
        await hub.store.accounts.get_customer(tid, customer)
    dev = await hub.store.devices.create(
        tid,
        body.name,
        body.product_id,
        device_id=body.id,
        parent_id=body.parent_id,
        access_token=body.access_token,
        secret=body.secret,
        customer_id=customer,
    )
    out = _dev_json(dev, p)
    out["accessToken"] = dev.access_token
    out["secret"] = dev.secret  # shown once, at creation
    return out


async def _list(
    hub: HubContext, p: Principal, pg: Any, tenant_id: str | None, flt: DeviceFilter, res: Resource
) -> dict[str, Any]:
    p.require(res, Action.READ)
    tid = p.scope_tenant(tenant_id)
    if p.customer_id is not None:
        flt.customer_id = p.customer_id
    items, total = await hub.store.devices.list_devices(tid, flt, pg.offset, pg.limit)
    return {"items": [_dev_json(d, p) for d in items], "total": total, "offset": pg.offset, "limit": pg.limit}


@router.post("/devices", status_code=201, tags=["devices"], responses=TAKEN)
async def create_device(
    body: DeviceIn, hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")
) -> dict[str, Any]:
    return await _create(hub, p, body, tenant_id, None, Resource.DEVICE)


@router.get("/devices", tags=["devices"])
async def list_devices(
    hub: Hub,
    p: Caller,
    pg: Paging,
    tenant_id: str | None = Query(None, alias="tenantId"),
    kind: DeviceKind | None = None,
    product_id: str | None = Query(None, alias="productId"),
    parent_id: str | None = Query(None, alias="parentId"),
    presence: Presence | None = None,
    name_prefix: str | None = Query(None, alias="namePrefix", max_length=255),
) -> dict[str, Any]:
    flt = DeviceFilter(
        kind=kind, product_id=product_id, parent_id=parent_id, presence=presence, name_prefix=name_prefix
    )
    return await _list(hub, p, pg, tenant_id, flt, Resource.DEVICE)


@router.get("/devices/{device_id}", tags=["devices"])
async def get_device(device_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    return _dev_json(await device_for(hub, p, device_id, Resource.DEVICE, Action.READ), p)


@router.patch("/devices/{device_id}", tags=["devices"], responses=TAKEN)
async def update_device(device_id: str, body: DevicePatch, hub: Hub, p: Caller) -> dict[str, Any]:
    dev = await device_for(hub, p, device_id, Resource.DEVICE, Action.UPDATE)
    fields = body.model_fields_set
    if "name" in fields and body.name is not None:
        dev = await hub.store.devices.rename(dev.tenant_id, dev.id, body.name)
    if "parent_id" in fields or "parentId" in fields:
        dev = await hub.store.devices.set_parent(dev.tenant_id, dev.id, body.parent_id)
    if "customer_id" in fields and p.customer_id is not None:
        raise PermissionDenied("a customer API key cannot change which customer owns a device")
    if "customer_id" in fields:
        if body.customer_id is not None:
            await hub.store.accounts.get_customer(dev.tenant_id, body.customer_id)
        dev = await hub.store.devices.update(dev.tenant_id, dev.id, customer_id=body.customer_id)
    return _dev_json(dev, p)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
async def delete_device(device_id: str, hub: Hub, p: Caller) -> Response:
    dev = await device_for(hub, p, device_id, Resource.DEVICE, Action.DELETE)
    await hub.store.devices.delete(dev.tenant_id, dev.id)
    return Response(status_code=204)


@router.post("/gateways", status_code=201, tags=["gateways"], responses=TAKEN)
async def create_gateway(
    body: DeviceIn, hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")
) -> dict[str, Any]:
    return await _create(hub, p, body, tenant_id, DeviceKind.GATEWAY, Resource.GATEWAY)


@router.get("/gateways", tags=["gateways"])
async def list_gateways(
    hub: Hub,
    p: Caller,
    pg: Paging,
    tenant_id: str | None = Query(None, alias="tenantId"),
    presence: Presence | None = None,
) -> dict[str, Any]:
    flt = DeviceFilter(kind=DeviceKind.GATEWAY, presence=presence)
    return await _list(hub, p, pg, tenant_id, flt, Resource.GATEWAY)


def _visible(devs: list[Any], p: Principal) -> list[Any]:
    """A customer key sees only its customer's devices, also behind a shared gateway."""
    return devs if p.customer_id is None else [d for d in devs if d.customer_id == p.customer_id]


async def _gateway(hub: HubContext, p: Principal, gateway_id: str, action: Action) -> Any:
    dev = await device_for(hub, p, gateway_id, Resource.GATEWAY, action)
    if dev.kind is not DeviceKind.GATEWAY:
        raise InvalidInput(f"device {gateway_id} is not a gateway")
    return dev


@router.get("/gateways/{gateway_id}", tags=["gateways"])
async def get_gateway(gateway_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    gw = await _gateway(hub, p, gateway_id, Action.READ)
    children = _visible(await hub.store.devices.children(gw.id), p)
    out = _dev_json(gw, p)
    out["deviceIDs"] = [c.number for c in children]
    out["isConnected"] = gw.presence is Presence.ONLINE
    return out


@router.get("/gateways/{gateway_id}/devices", tags=["gateways"])
async def gateway_children(gateway_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    gw = await _gateway(hub, p, gateway_id, Action.READ)
    children = _visible(await hub.store.devices.children(gw.id), p)
    return {
        "gatewayId": gw.id,
        "topologyVersion": gw.topology_version,
        "items": [_dev_json(c, p) for c in children],
        "total": len(children),
    }


@router.delete("/gateways/{gateway_id}", status_code=204, tags=["gateways"])
async def delete_gateway(gateway_id: str, hub: Hub, p: Caller) -> Response:
    gw = await _gateway(hub, p, gateway_id, Action.DELETE)
    await hub.store.devices.delete(gw.tenant_id, gw.id)
    return Response(status_code=204)
