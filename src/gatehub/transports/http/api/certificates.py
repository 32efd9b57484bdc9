"""Certificates: the CA certificate and CRL, gateway and tenant certificates, the blacklist.

``GET /certificates/crl`` (PEM) and ``/certificates/crl.der`` serve the CRL the TLS listeners
check handshakes against now (rebuilt on every blacklist change); they and ``/certificates/ca``
need no API key. Everything else is scoped to the caller's tenant like the rest of the API:
another tenant's certificates and gateways are not found (404), and a certificate for a gateway
id that another tenant's device has is refused like any taken id (409 ``already_exists``,
"device id X is taken": device ids are unique across the hub).
Status changes of gateways stream at ``/events/stream?types=status``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import Field

from gatehub.domain.model import check_id
from gatehub.domain.permissions import Action, Principal, Resource
from gatehub.domain.telemetry import INT64_MAX
from gatehub.errors import AlreadyExists, NotFound, Unavailable
from gatehub.pki import CertKind, IssuedCertificate, PKIName
from gatehub.services.registry import GatewayRegistry
from gatehub.store.certificates import CertRecord
from gatehub.transports.http.api.accounts import Strict
from gatehub.transports.http.api.deps import Caller, Hub
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.errors import error_responses

router = APIRouter(responses=error_responses(404))

PEM = "application/x-pem-file"
#: a certificate serial number: positive, 63 bits (as the hub issues them and the database stores them)
Serial = Annotated[int, Path(ge=1, le=INT64_MAX, description="Certificate serial number (serialNO)")]
SerialNo = Annotated[int, Field(ge=1, le=INT64_MAX)]


def _body_of(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {"schema": {"type": "string"}}}, "description": "Successful Response"}}


class PKINameIn(Strict):
    country: str = ""
    province: str = ""
    city: str = ""
    organization: str = ""
    organizationUnit: str = ""  # the G-SDK field names
    commonName: str = ""

    def to_name(self) -> PKIName:
        return PKIName(**self.model_dump()).validate()


class CertificateIn(Strict):
    subject: PKINameIn = Field(default_factory=PKINameIn)
    expire_after_years: int = Field(1, alias="expireAfterYears", ge=1, le=25)


class TenantCertificateIn(CertificateIn):
    tenant_id: str | None = Field(None, alias="tenantId", min_length=1, max_length=128)


class SerialsIn(Strict):
    serial_nos: list[SerialNo] = Field(alias="serialNOs", min_length=1, max_length=1000)


def _registry(hub: HubContext) -> GatewayRegistry:
    return hub.registry


def _issued(c: IssuedCertificate, cert_field: str, key_field: str) -> dict[str, Any]:
    return {
        cert_field: c.cert_pem,
        key_field: c.key_pem,
        "serialNO": c.serial,
        "kind": c.kind.value,
        "tenantId": c.tenant_id,
        "gatewayId": c.gateway_id,
        "issueDate": c.not_before,
        "expiryDate": c.not_after,
    }


def _visible(p: Principal, r: CertRecord) -> bool:
    return p.is_system or (r.tenant_id == p.tenant_id and r.kind in {"gateway", "tenant"})


# -- public: CA and CRL ------------------------------------------------------------------------


@router.get("/certificates/crl", tags=["certificates"], response_class=Response, responses=_body_of(PEM))
async def crl_pem(hub: Hub) -> Response:
    """The current CRL of the hub CA (PEM), as every TLS listener checks handshakes against it."""
    if hub.pki is None:
        raise Unavailable("the hub CA is not loaded")
    return Response(hub.pki.crl.pem, media_type=PEM, headers={"Cache-Control": "no-cache"})


@router.get(
    "/certificates/crl.der",
    tags=["certificates"],
    response_class=Response,
    responses=_body_of("application/pkix-crl"),
)
async def crl_der(hub: Hub) -> Response:
    """The current CRL in DER (``application/pkix-crl``)."""
    if hub.pki is None:
        raise Unavailable("the hub CA is not loaded")
    return Response(hub.pki.crl.der, media_type="application/pkix-crl", headers={"Cache-Control": "no-cache"})


@router.get("/certificates/ca", tags=["certificates"], response_class=Response, responses=_body_of(PEM))
async def ca_pem(hub: Hub) -> Response:
    """The hub CA certificate (PEM): what gateways and clients trust."""
    if hub.pki is None:
        raise Unavailable("the hub CA is not loaded")
    return Response(hub.pki.ca.cert_pem, media_type=PEM)


# -- issuance history and blacklist -------------------------------------------------------------


@router.get("/certificates", tags=["certificates"])
async def list_certificates(
    hub: Hub,
    p: Caller,
    tenant_id: str | None = Query(None, alias="tenantId"),
    gateway_id: str | None = Query(None, alias="gatewayId"),
    kind: str | None = Query(None, pattern="^(server|gateway|tenant|admin)$"),
    blacklisted: bool = Query(False, description="Only blacklisted certificates"),
) -> dict[str, Any]:
    """The issuance history (a system administrator sees every tenant unless tenantId is given)."""
    p.require(Resource.CERTIFICATE, Action.READ)
    tid = tenant_id if p.is_system else p.scope_tenant(tenant_id)
    records = await hub.store.certificates.history(
        tid, [gateway_id] if gateway_id else None, kind=kind, blacklisted_only=blacklisted
    )
    items = [r.public() for r in records if _visible(p, r)]
    return {"items": items, "total": len(items)}


async def _record(hub: HubContext, p: Principal, serial: int) -> CertRecord:
    rec = await hub.store.certificates.get(serial)
    if not _visible(p, rec):
        raise NotFound(f"certificate {serial} not found")
    return rec


# {serial:int}: only digits are a serial, so /certificates/blacklist and /certificates/tenant are
# never taken for one (a wrong method there answers 405, not a 400 about the serial)
@router.get("/certificates/{serial:int}", tags=["certificates"])
async def get_certificate(serial: Serial, hub: Hub, p: Caller) -> dict[str, Any]:
    p.require(Resource.CERTIFICATE, Action.READ)
    return (await _record(hub, p, serial)).public()


@router.put("/certificates/{serial:int}/blacklist", tags=["certificates"])
async def blacklist_certificate(serial: Serial, hub: Hub, p: Caller) -> dict[str, Any]:
    """Blacklist a certificate: new handshakes fail and live sessions using it close within a second."""
    p.require(Resource.CERTIFICATE, Action.UPDATE)
    await _record(hub, p, serial)
    (rec,) = await _registry(hub).set_blacklisted([serial], True, tenant_id=None if p.is_system else p.tenant_id)
    return rec.public()


@router.delete("/certificates/{serial:int}/blacklist", tags=["certificates"])
async def unblacklist_certificate(serial: Serial, hub: Hub, p: Caller) -> dict[str, Any]:
    """Take a certificate off the blacklist: it is accepted again from the next handshake."""
    p.require(Resource.CERTIFICATE, Action.UPDATE)
    await _record(hub, p, serial)
    (rec,) = await _registry(hub).set_blacklisted([serial], False, tenant_id=None if p.is_system else p.tenant_id)
    return rec.public()


@router.post("/certificates/blacklist", tags=["certificates"])
async def blacklist_many(
    body: SerialsIn,
    hub: Hub,
    p: Caller,
    remove: Annotated[bool, Query(description="Take them off the blacklist instead")] = False,
) -> dict[str, Any]:
    """Blacklist several certificates at once (all or nothing), or remove them with ``remove=true``."""
    p.require(Resource.CERTIFICATE, Action.UPDATE)
    for s in body.serial_nos:
        await _record(hub, p, s)
    recs = await _registry(hub).set_blacklisted(
        body.serial_nos, not remove, tenant_id=None if p.is_system else p.tenant_id
    )
    return {"items": [r.public() for r in recs]}


# -- issuing ------------------------------------------------------------------------------------


@router.post("/certificates/tenant", status_code=201, tags=["certificates"])
async def create_tenant_certificate(body: TenantCertificateIn, hub: Hub, p: Caller) -> dict[str, Any]:
    """A tenant certificate for an API client (G-SDK ``Login``); the key is returned once."""
    p.require(Resource.CERTIFICATE, Action.CREATE)
    tid = p.scope_tenant(body.tenant_id)
    issued = await _registry(hub).create_tenant_certificate(tid, body.subject.to_name(), body.expire_after_years)
    return _issued(issued, "tenantCert", "tenantKey")


@router.post(
    "/gateways/{gateway_id}/certificates",
    status_code=201,
    tags=["gateways", "certificates"],
    responses=error_responses(409),
)
async def create_gateway_certificate(
    gateway_id: str,
    hub: Hub,
    p: Caller,
    body: Annotated[CertificateIn, Body()],
    tenant_id: str | None = Query(None, alias="tenantId"),
) -> dict[str, Any]:
    """A gateway client certificate (PEM) bound to this tenant and gateway id; the key is returned once."""
    p.require(Resource.CERTIFICATE, Action.CREATE)
    tid = p.scope_tenant(tenant_id)
    await _not_foreign(hub, tid, gateway_id)
    issued = await _registry(hub).create_gateway_certificate(
        tid, gateway_id, body.subject.to_name(), body.expire_after_years
    )
    out = _issued(issued, "gatewayCert", "gatewayKey")
    if hub.pki is not None:
        out["caCert"] = hub.pki.ca.cert_pem
    return out


@router.get("/gateways/{gateway_id}/certificates", tags=["gateways", "certificates"])
async def gateway_certificates(
    gateway_id: str,
    hub: Hub,
    p: Caller,
    tenant_id: str | None = Query(None, alias="tenantId"),
    blacklisted: bool = Query(False, description="Only blacklisted certificates"),
) -> dict[str, Any]:
    """The gateway's issuance history (G-SDK ``GetIssuanceHistory`` / ``GetCertificateBlacklist``)."""
    p.require(Resource.CERTIFICATE, Action.READ)
    tid = p.scope_tenant(tenant_id)
    check_id(gateway_id, "gatewayID")
    # the tenant's certificates for this gateway id: none for an id of another tenant, as for an unknown one
    records = await hub.store.certificates.history(
        tid, [gateway_id], kind=CertKind.GATEWAY.value, blacklisted_only=blacklisted
    )
    return {"items": [r.public() for r in records], "total": len(records)}


async def _not_foreign(hub: HubContext, tenant_id: str, gateway_id: str) -> None:
    """A gateway id held by another tenant's device is taken, said as a create says it (409,
    the same text whoever holds it), not "another tenant" (403) that an unknown id does not get."""
    check_id(gateway_id, "gatewayID")
    try:
        dev = await hub.store.devices.get(None, gateway_id)
    except NotFound:
        return
    if dev.tenant_id != tenant_id:
        raise AlreadyExists(f"device id {gateway_id} is taken")
