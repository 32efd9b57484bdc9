"""Request dependencies: the hub context, the authenticated principal, paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gatehub.domain.model import Device
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.errors import NotFound, Unauthenticated
from gatehub.services.guard import key_id
from gatehub.transports.http.context import HubContext


def hub(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.hub
    return ctx


#: how API keys are passed (the OpenAPI security scheme); the key is checked in principal()
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="gatehub API key",
    description="An API key (`gatehub apikey create`, `POST /api/v1/apikeys`) as `Authorization: Bearer <key>`",
)


async def principal(
    request: Request, _scheme: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None
) -> Principal:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    ctx, key = hub(request), token.strip()
    # the credential guard: back-off of a source that keeps sending wrong keys, rate-limited logs
    host = request.client.host if request.client is not None else None
    return await ctx.guard.check(host, "rest", f"key {key_id(key)}", lambda: ctx.store.accounts.authenticate(key))


Hub = Annotated[HubContext, Depends(hub)]
Caller = Annotated[Principal, Depends(principal)]


@dataclass(slots=True)
class Page:
    offset: int
    limit: int


OFFSET_MAX = 1_000_000_000
LIMIT_MAX = 2**31 - 1


def page(
    request: Request,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Items to skip")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=LIMIT_MAX, description="Items to return (at most the server's page limit)")
    ] = 100,
) -> Page:
    return Page(offset, min(limit, hub(request).settings.http_page_limit))


Paging = Annotated[Page, Depends(page)]


async def device_for(ctx: HubContext, p: Principal, device_id: str, resource: Resource, action: Action) -> Device:
    """Load a device the caller may act on; another tenant's device is simply not found."""
    p.require(resource, action)
    dev = await ctx.store.devices.get(None if p.is_system else p.tenant_id, device_id)
    if p.customer_id is not None and dev.customer_id != p.customer_id:
        raise NotFound(f"device {device_id} not found")
    return dev
