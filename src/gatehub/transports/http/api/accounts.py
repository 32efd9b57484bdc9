"""Tenants, customers and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from gatehub.domain.permissions import ROLE_RIGHTS, Action, Resource, Role, parse_permissions
from gatehub.errors import InvalidInput, NotFound, PermissionDenied
from gatehub.transports.http.api.deps import Caller, Hub, Paging
from gatehub.transports.http.errors import error_responses

router = APIRouter()
NF = error_responses(404)
TAKEN = error_responses(404, 409)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TenantIn(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=255)


class CustomerIn(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=255)


class ApiKeyIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    role: Role = Role.VIEWER
    tenant_id: str | None = Field(None, alias="tenantId", min_length=1, max_length=128)
    customer_id: str | None = Field(None, alias="customerId", min_length=1, max_length=128)
    permissions: dict[str, list[str]] | None = None


def _tenant(t: Any) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "createdAt": t.created_at}


@router.post("/tenants", status_code=201, tags=["tenants"], responses=error_responses(409))
async def create_tenant(body: TenantIn, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.TENANT, Action.CREATE)
    return _tenant(await hub.store.accounts.create_tenant(body.id, body.name))


@router.get("/tenants", tags=["tenants"], responses=NF)
async def list_tenants(hub: Hub, p: Caller, pg: Paging) -> dict[str, Any]:
    p.require(Resource.TENANT, Action.READ)
    if not p.is_system:
        assert p.tenant_id is not None
        t = await hub.store.accounts.get_tenant(p.tenant_id)
        return {"items": [_tenant(t)], "total": 1}
    items, total = await hub.store.accounts.list_tenants(pg.offset, pg.limit)
    return {"items": [_tenant(t) for t in items], "total": total}


@router.get("/tenants/{tenant_id}", tags=["tenants"], responses=NF)
async def get_tenant(tenant_id: str, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.TENANT, Action.READ)
    if not p.is_system and p.tenant_id != tenant_id:
        raise NotFound(f"tenant {tenant_id} not found")
    return _tenant(await hub.store.accounts.get_tenant(tenant_id))


@router.delete("/tenants/{tenant_id}", status_code=204, tags=["tenants"], responses=NF)
async def delete_tenant(tenant_id: str, hub: Hub, p: Caller) -> Response:
    p.require(Resource.TENANT, Action.DELETE)
    await hub.store.accounts.delete_tenant(tenant_id)  # publishes the tenant-deleted event
    return Response(status_code=204)


@router.post("/customers", status_code=201, tags=["customers"], responses=TAKEN)
async def create_customer(
    body: CustomerIn, hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")
) -> dict[str, Any]:
    p.require(Resource.CUSTOMER, Action.CREATE)
    tid = p.scope_tenant(tenant_id)
    c = await hub.store.accounts.create_customer(tid, body.id, body.name)
    return {"id": c.id, "tenantId": c.tenant_id, "name": c.name, "createdAt": c.created_at}


@router.get("/customers", tags=["customers"], responses=NF)
async def list_customers(hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")) -> dict[str, Any]:
    p.require(Resource.CUSTOMER, Action.READ)
    tid = p.scope_tenant(tenant_id)
    items = await hub.store.accounts.list_customers(tid)
    return {
        "items": [{"id": c.id, "tenantId": c.tenant_id, "name": c.name, "createdAt": c.created_at} for c in items],
        "total": len(items),
    }


@router.post("/apikeys", status_code=201, tags=["apikeys"], responses=NF)
async def create_api_key(body: ApiKeyIn, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.APIKEY, Action.CREATE)
    if body.role is Role.SYSTEM_ADMIN:
        if not p.is_system:
            raise PermissionDenied("only a system administrator can create system-admin keys")
        if body.customer_id is not None or body.tenant_id is not None:
            raise InvalidInput(
                "a system-admin key belongs to no tenant and no customer: leave out tenantId and customerId"
            )
        tenant_id = None
    else:
        tenant_id = p.scope_tenant(body.tenant_id)
    if p.customer_id is not None and body.customer_id != p.customer_id:
        raise PermissionDenied("a customer key can only create keys of its own customer")
    if not p.is_system:
        wanted = ROLE_RIGHTS[body.role] | parse_permissions(body.permissions)
        mine = ROLE_RIGHTS[p.role] | p.rights
        extra = wanted - mine
        if extra:
            names = ", ".join(sorted(f"{a.value} {r.value}" for r, a in extra))
            raise PermissionDenied(f"a key cannot grant rights it does not have: {names}")
    info, token = await hub.store.accounts.create_api_key(
        body.name, body.role, tenant_id, body.customer_id, body.permissions
    )
    return {**info, "key": token}


@router.get("/apikeys", tags=["apikeys"])
async def list_api_keys(hub: Hub, p: Caller, tenant_id: str | None = Query(None, alias="tenantId")) -> dict[str, Any]:
    p.require(Resource.APIKEY, Action.READ)
    tid = tenant_id if p.is_system else p.tenant_id
    items = await hub.store.accounts.list_api_keys(tid)
    return {"items": items, "total": len(items)}


@router.delete("/apikeys/{key_id}", status_code=204, tags=["apikeys"], responses=NF)
async def delete_api_key(key_id: str, hub: Hub, p: Caller) -> Response:
    p.require(Resource.APIKEY, Action.DELETE)
    info = await hub.store.accounts.get_api_key(key_id)
    if not p.is_system and info["tenantId"] != p.tenant_id:
        raise NotFound(f"API key {key_id} not found")
    await hub.store.accounts.delete_api_key(key_id)
    return Response(status_code=204)
