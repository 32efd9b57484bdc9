"""Device links over REST (seed 002): create, list, close.

- ``POST /devicelink/{deviceIdentifier}`` (``deviceLink:create``): body ``protocol``,
  ``devicePort``, ``timeout``, ``source {host, port}``, ``encrypt {key, initializationVector, mode}``
  (hex; mode ``literal``, the default, or ``per-connection``); answers 201 with the request
  echoed plus ``port`` and ``token``.
- ``DELETE /devicelink/{deviceLinkToken}`` (``deviceLink:delete``): 204.
- ``GET /devicelink`` (``deviceLink:read``): the tenant's open links (tokens only for callers
  who may delete them; keys never).

The identifier is case-insensitive and answered in upper case; it names the device whose id
matches it ignoring case, and two such devices make it ambiguous (409). See docs/devicelink.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatehub.domain.model import ID_RE, Device
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.errors import Conflict, InvalidInput, NotFound, Unavailable
from gatehub.protocols.linkcrypto import IV_BYTES, KEY_BYTES, LITERAL, parse_hex
from gatehub.services.links.model import LinkRequest, normalise_ip
from gatehub.transports.http.api.deps import Caller, Hub
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import error_responses

if TYPE_CHECKING:
    from gatehub.services.links import DeviceLinks

router = APIRouter(responses=error_responses(404, 409))


# strict: JSON types are not coerced ("devicePort": true, "9" or 9.0 are refused, not taken as 1 or 9)
class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    host: str = Field(min_length=1, max_length=255, description="The only client host allowed")
    port: int | None = Field(None, ge=1, le=65535, description="The only client port allowed (any when absent)")


class EncryptIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    key: str = Field(description="AES-256 key, 64 hex digits")
    initialization_vector: str = Field(alias="initializationVector", description="CTR IV, 32 hex digits")
    mode: Literal["literal", "per-connection"] = Field(
        "literal",
        description="literal: AES-256-CTR from key and IV as seed 002 states it (the same keystream for every "
        "connection, datagram and direction); per-connection: numbered connections and datagrams, each "
        "direction its own keystream (docs/devicelink.md)",
    )


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    protocol: Literal["tcp", "udp"]
    device_port: int | None = Field(None, alias="devicePort", ge=1, le=65535)
    timeout: int | None = Field(None, ge=0, le=2_147_483_647, description="ms without traffic; 0 = never")
    source: SourceIn | None = None
    encrypt: EncryptIn | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


def _service(hub: HubContext) -> DeviceLinks:
    svc = hub.links
    if svc is None:
        raise Unavailable("device links are off on this node (devicelink_port_min = -1)")
    return svc


async def device_by_identifier(hub: HubContext, p: Principal, identifier: str) -> Device:
    """The one device whose id matches ``identifier`` ignoring case, that the caller may see."""
    if not ID_RE.fullmatch(identifier):
        raise InvalidInput("deviceIdentifier must be 1-128 characters of letters, digits, '_' and '-'")
    found = await hub.store.devices.match_identifier(None if p.is_system else p.tenant_id, identifier)
    if p.customer_id is not None:
        found = [d for d in found if d.customer_id == p.customer_id]
    if not found:
        raise NotFound(f"device {identifier.upper()} not found")
    if len(found) > 1:
        ids = ", ".join(d.id for d in found)
        raise Conflict(
            f"device identifier {identifier.upper()} is ambiguous: device ids {ids} differ only in case; "
            "rename one of them (device ids are case-sensitive, this API is not)",
            code="ambiguous_device",
        )
    return found[0]


async def _resolve(host: str) -> frozenset[str]:
    try:
        return frozenset({normalise_ip(str(ipaddress.ip_address(host)))})
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"source.host {host!r} cannot be resolved: {exc.strerror or exc}") from None
    return frozenset(normalise_ip(str(info[4][0])) for info in infos)


async def link_request(hub: HubContext, body: LinkIn) -> LinkRequest:
    s = hub.settings
    port = body.device_port if body.device_port is not None else s.devicelink_default_device_port
    if port is None:
        raise InvalidInput("devicePort is required: this hub has no devicelink_default_device_port")
    timeout = body.timeout
    if timeout is None and body.protocol == "udp":
        timeout = s.devicelink_udp_timeout
    key = iv = None
    if body.encrypt is not None:
        key = parse_hex(body.encrypt.key, KEY_BYTES, "encrypt.key")
        iv = parse_hex(body.encrypt.initialization_vector, IV_BYTES, "encrypt.initializationVector")
    src = body.source
    return LinkRequest(
        protocol=body.protocol,
        device_port=port,
        timeout_ms=timeout,
        source_host=src.host if src else None,
        source_port=src.port if src else None,
        source_ips=await _resolve(src.host) if src else frozenset(),
        key_hex=body.encrypt.key.strip().lower() if body.encrypt else None,
        iv_hex=body.encrypt.initialization_vector.strip().lower() if body.encrypt else None,
        cipher_key=key,
        cipher_iv=iv,
        cipher_mode=body.encrypt.mode if body.encrypt else LITERAL,
    )


@router.post("/devicelink/{device_identifier}", status_code=201, tags=["devicelink"])
async def create_link(device_identifier: str, body: LinkIn, hub: Hub, p: Caller) -> JSONResponse:
    """Open a TCP or UDP link to a device; the answer's ``port`` is where clients connect."""
    p.require(Resource.DEVICE_LINK, Action.CREATE)
    svc = _service(hub)
    dev = await device_by_identifier(hub, p, device_identifier)
    req = await link_request(hub, body)
    link = await svc.create(dev, device_identifier.upper(), req)
    link.customer_id = dev.customer_id
    return JSONResponse(link.public(with_token=True, with_key=True), status_code=201)


@router.get("/devicelink", tags=["devicelink"])
async def list_links(
    hub: Hub,
    p: Caller,
    tenant_id: str | None = Query(None, alias="tenantId"),
    device_identifier: str | None = Query(None, alias="deviceIdentifier"),
) -> dict[str, Any]:
    """The open links of a tenant (a system administrator without tenantId: of every tenant)."""
    p.require(Resource.DEVICE_LINK, Action.READ)
    svc = _service(hub)
    tid = tenant_id if p.is_system else p.scope_tenant(tenant_id)
    device_id = None
    if device_identifier is not None:
        device_id = (await device_by_identifier(hub, p, device_identifier)).id
    links = svc.list(tid, device_id)
    if p.customer_id is not None:
        links = [lk for lk in links if lk.customer_id == p.customer_id]
    with_token = p.can(Resource.DEVICE_LINK, Action.DELETE)
    return {"items": [lk.public(with_token=with_token) for lk in sorted(links, key=lambda lk: lk.created_at)]}


@router.delete("/devicelink/{device_link_token}", status_code=204, tags=["devicelink"])
async def delete_link(device_link_token: str, hub: Hub, p: Caller) -> Response:
    """Close a link: its port stops listening and its connections end."""
    p.require(Resource.DEVICE_LINK, Action.DELETE)
    link = _service(hub).get(device_link_token, None if p.is_system else p.tenant_id)
    if p.customer_id is not None and link.customer_id != p.customer_id:
        raise NotFound("no open device link has this token")
    link.close("closed by DELETE")
    return Response(status_code=204)
