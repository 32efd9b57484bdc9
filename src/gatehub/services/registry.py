"""The master-gateway registry: tenants, their device gateways, certificates and the blacklist.

One implementation of the G-SDK master-gateway operations, used by every front end (the gRPC
``gsdk.*`` services, the REST API and the ``gatehub cert`` commands), so the rules live in one
place:

- A G-SDK gateway is a device of kind ``gateway`` whose device id is the G-SDK ``gatewayID``
  (1-128 of ``A-Za-z0-9_-``). ``Add`` creates it with the tenant's default gateway product,
  :func:`default_gateway_product` (``gsdk-gw-{tenant}``), created on demand.
- An id that exists in another tenant is :class:`PermissionDenied`; an unknown one
  :class:`NotFound`; one taken in the caller's own tenant :class:`AlreadyExists`. A batch is
  checked whole before anything changes.
- Every certificate issued is recorded in the issuance history (``store.certificates``).
  Certificates may be issued for a gateway id before the gateway is added (the G-SDK order:
  issue, then ``Add``); a gateway certificate carries the tenant id and gateway id in its
  identity URI, so it only ever works for that gateway of that tenant.
- Blacklist changes are written to the store and then ``on_blacklist_change`` runs (on a node:
  :meth:`gatehub.services.pki.Blacklist.reload`, which swaps the CRL of every TLS listener and
  tells the listeners to close sessions of revoked certificates).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from gatehub.domain.model import ID_RE, DeviceKind, NodeType, Presence
from gatehub.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from gatehub.pki import (
    ADMIN_TENANT_ID,
    CertificateAuthority,
    CertKind,
    IssuedCertificate,
    PKIName,
    issue_admin_certificate,
    issue_gateway_certificate,
    issue_server_certificate,
    issue_tenant_certificate,
)
from gatehub.store import DeviceFilter, Store
from gatehub.store.certificates import CertRecord

__all__ = ["GatewayInfo", "GatewayRegistry", "TenantInfo", "default_gateway_product"]

log = logging.getLogger(__name__)

_ALL = 1_000_000
_ISSUE_ATTEMPTS = 3


def default_gateway_product(tenant_id: str) -> str:
    """The product id that ``Add`` gives new gateways of ``tenant_id`` (product ids are global)."""
    pid = f"gsdk-gw-{tenant_id}"
    if len(pid) > 128:
        pid = "gsdk-gw-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]
    return pid


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    gateway_id: str
    device_numbers: list[int]
    """The uint32 numbers of the gateway's sub-devices (G-SDK ``deviceIDs``)."""
    connected: bool


@dataclass(frozen=True, slots=True)
class TenantInfo:
    tenant_id: str
    gateway_ids: list[str]


def _check_gateway_id(gateway_id: object) -> str:
    if not isinstance(gateway_id, str) or not ID_RE.fullmatch(gateway_id):
        raise InvalidInput(f"gatewayID must be 1-128 characters of letters, digits, '_' and '-': {gateway_id!r}")
    return gateway_id


def _unique(ids: Sequence[str], what: str) -> list[str]:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise InvalidInput(f"{what} {i!r} is listed twice")
        seen.add(i)
    return list(ids)


class GatewayRegistry:
    """See the module docstring. ``tenant_id`` arguments are the caller's tenant (already checked)."""

    def __init__(
        self,
        store: Store,
        ca: CertificateAuthority,
        *,
        on_blacklist_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.ca = ca
        self.on_blacklist_change = on_blacklist_change

    # -- tenants ----------------------------------------------------------------------------

    async def tenant_ids(self) -> list[str]:
        items, _total = await self.store.accounts.list_tenants(0, _ALL)
        return [t.id for t in items]

    async def require_tenant(self, tenant_id: str) -> None:
        if tenant_id == ADMIN_TENANT_ID:
            raise InvalidInput(f"tenant id {ADMIN_TENANT_ID!r} is reserved for the administrator")
        await self.store.accounts.get_tenant(tenant_id)

    async def tenants(self, tenant_ids: Sequence[str]) -> list[TenantInfo]:
        out = []
        for tid in _unique(tenant_ids, "tenantID"):
            await self.require_tenant(tid)
            out.append(TenantInfo(tid, await self.gateway_ids(tid)))
        return out

    async def add_tenants(self, infos: Sequence[TenantInfo]) -> None:
        """Create tenants with their gateways; every tenant and gateway is checked first."""
        _unique([i.tenant_id for i in infos], "tenantID")
        all_gateways = _unique([g for i in infos for g in i.gateway_ids], "gatewayID")
        existing = set(await self.tenant_ids())
        for info in infos:
            if info.tenant_id == ADMIN_TENANT_ID:
                raise InvalidInput(f"tenant id {ADMIN_TENANT_ID!r} is reserved for the administrator")
            if not isinstance(info.tenant_id, str) or not ID_RE.fullmatch(info.tenant_id):
                raise InvalidInput(
                    f"tenantID must be 1-128 characters of letters, digits, '_' and '-': {info.tenant_id!r}"
                )
            if info.tenant_id in existing:
                raise AlreadyExists(f"tenant {info.tenant_id} already exists")
        for gid in all_gateways:
            _check_gateway_id(gid)
            if await self._owner(gid) is not None:
                raise AlreadyExists(f"gateway {gid} already exists")
        for info in infos:
            await self.store.accounts.create_tenant(info.tenant_id)
            await self._create_gateways(info.tenant_id, info.gateway_ids)

    async def delete_tenants(self, tenant_ids: Sequence[str]) -> None:
        ids = _unique(tenant_ids, "tenantID")
        for tid in ids:
            await self.require_tenant(tid)
        for tid in ids:
            await self.store.accounts.delete_tenant(tid)

    # -- gateways ---------------------------------------------------------------------------

    async def gateway_ids(self, tenant_id: str) -> list[str]:
        items, _total = await self.store.devices.list_devices(tenant_id, DeviceFilter(kind=DeviceKind.GATEWAY), 0, _ALL)
        return [d.id for d in items]

    async def _owner(self, device_id: str) -> tuple[str, DeviceKind] | None:
        try:
            dev = await self.store.devices.get(None, device_id)
        except NotFound:
            return None
        return dev.tenant_id, dev.kind

    async def check_not_foreign(self, tenant_id: str, gateway_id: str) -> None:
        """PermissionDenied if ``gateway_id`` is a device of another tenant."""
        _check_gateway_id(gateway_id)
        owner = await self._owner(gateway_id)
        if owner is not None and owner[0] != tenant_id:
            raise PermissionDenied(f"gateway {gateway_id} belongs to another tenant")

    async def _require_gateway(self, tenant_id: str, gateway_id: str) -> None:
        _check_gateway_id(gateway_id)
        owner = await self._owner(gateway_id)
        if owner is None:
            raise NotFound(f"gateway {gateway_id} not found")
        if owner[0] != tenant_id:
            raise PermissionDenied(f"gateway {gateway_id} belongs to another tenant")
        if owner[1] is not DeviceKind.GATEWAY:
            raise NotFound(f"gateway {gateway_id} not found (device {gateway_id} is not a gateway)")

    async def gateways(self, tenant_id: str, gateway_ids: Sequence[str]) -> list[GatewayInfo]:
        ids = _unique(gateway_ids, "gatewayID")
        for gid in ids:
            await self._require_gateway(tenant_id, gid)
        out = []
        for gid in ids:
            dev = await self.store.devices.get(tenant_id, gid)
            children = await self.store.devices.children(gid)
            out.append(GatewayInfo(gid, [c.number for c in children], dev.presence is Presence.ONLINE))
        return out

    async def add_gateways(self, tenant_id: str, gateway_ids: Sequence[str]) -> None:
        ids = _unique(gateway_ids, "gatewayID")
        await self.require_tenant(tenant_id)
        for gid in ids:
            _check_gateway_id(gid)
            owner = await self._owner(gid)
            if owner is not None:
                if owner[0] != tenant_id:
                    raise PermissionDenied(f"gateway {gid} belongs to another tenant")
                raise AlreadyExists(f"gateway {gid} already exists")
        await self._create_gateways(tenant_id, ids)

    async def _create_gateways(self, tenant_id: str, gateway_ids: Iterable[str]) -> None:
        ids = list(gateway_ids)
        if not ids:
            return
        product_id = await self._gateway_product(tenant_id)
        for gid in ids:
            await self.store.devices.create(tenant_id, gid, product_id, device_id=gid)

    async def _gateway_product(self, tenant_id: str) -> str:
        pid = default_gateway_product(tenant_id)
        try:
            await self.store.catalog.get_product(tenant_id, pid)
        except NotFound:
            try:
                await self.store.catalog.create_product(tenant_id, pid, pid, NodeType.GATEWAY)
            except AlreadyExists:  # created concurrently
                await self.store.catalog.get_product(tenant_id, pid)
        return pid

    async def delete_gateways(self, tenant_id: str, gateway_ids: Sequence[str]) -> None:
        ids = _unique(gateway_ids, "gatewayID")
        for gid in ids:
            await self._require_gateway(tenant_id, gid)
        for gid in ids:
            await self.store.devices.delete(tenant_id, gid)

    # -- certificates -----------------------------------------------------------------------

    async def _record(self, issue: Callable[[], IssuedCertificate]) -> IssuedCertificate:
        for attempt in range(_ISSUE_ATTEMPTS):
            issued = issue()
            try:
                await self.store.certificates.record(issued)
                return issued
            except Exception as exc:
                # a 63-bit serial clash is astronomically rare; anything else is re-raised
                try:
                    await self.store.certificates.get(issued.serial)
                except NotFound:
                    raise exc from None
                if attempt == _ISSUE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def create_gateway_certificate(
        self, tenant_id: str, gateway_id: str, subject: PKIName, expire_after_years: int
    ) -> IssuedCertificate:
        await self.require_tenant(tenant_id)
        await self.check_not_foreign(tenant_id, gateway_id)
        subject.validate()
        return await self._record(
            lambda: issue_gateway_certificate(self.ca, tenant_id, gateway_id, subject, expire_after_years)
        )

    async def create_tenant_certificate(
        self, tenant_id: str, subject: PKIName, expire_after_years: int
    ) -> IssuedCertificate:
        await self.require_tenant(tenant_id)
        subject.validate()
        return await self._record(lambda: issue_tenant_certificate(self.ca, tenant_id, subject, expire_after_years))

    async def create_admin_certificate(self, subject: PKIName | None, expire_after_years: int) -> IssuedCertificate:
        return await self._record(lambda: issue_admin_certificate(self.ca, subject, expire_after_years))

    async def create_server_certificate(self, hosts: Sequence[str], expire_after_years: int) -> IssuedCertificate:
        return await self._record(
            lambda: issue_server_certificate(self.ca, hosts, expire_after_years=expire_after_years)
        )

    async def gateway_certificates(
        self, tenant_id: str, gateway_ids: Sequence[str], *, blacklisted_only: bool = False
    ) -> list[CertRecord]:
        """Issuance history of the tenant's gateways (all of them when ``gateway_ids`` is empty)."""
        ids = _unique(gateway_ids, "gatewayID")
        for gid in ids:
            await self.check_not_foreign(tenant_id, gid)
        return await self.store.certificates.history(
            tenant_id, ids or None, kind=CertKind.GATEWAY.value, blacklisted_only=blacklisted_only
        )

    async def tenant_certificates(
        self, tenant_ids: Sequence[str], *, blacklisted_only: bool = False
    ) -> list[CertRecord]:
        """Tenant certificates of the tenants named (of every tenant when empty)."""
        ids = _unique(tenant_ids, "tenantID")
        if not ids:
            return await self.store.certificates.history(
                None, None, kind=CertKind.TENANT.value, blacklisted_only=blacklisted_only
            )
        out: list[CertRecord] = []
        for tid in ids:
            out += await self.store.certificates.history(
                tid, None, kind=CertKind.TENANT.value, blacklisted_only=blacklisted_only
            )
        return out

    async def set_gateway_blacklisted(
        self, tenant_id: str, gateway_id: str, serials: Sequence[int], blacklisted: bool
    ) -> None:
        """Add certificates of one gateway to the blacklist (or remove them)."""
        await self.check_not_foreign(tenant_id, gateway_id)
        await self._set(serials, blacklisted, lambda r: r.tenant_id == tenant_id and r.gateway_id == gateway_id)

    async def set_tenant_blacklisted(self, tenant_id: str, serials: Sequence[int], blacklisted: bool) -> None:
        await self._set(serials, blacklisted, lambda r: r.tenant_id == tenant_id and r.kind == CertKind.TENANT.value)

    async def set_blacklisted(
        self, serials: Sequence[int], blacklisted: bool, *, tenant_id: str | None = None
    ) -> list[CertRecord]:
        """Any certificates by serial (of ``tenant_id`` if given; the hub's own server cert never)."""

        def ok(r: CertRecord) -> bool:
            return tenant_id is None or r.tenant_id == tenant_id

        return await self._set(serials, blacklisted, ok)

    async def _set(
        self, serials: Sequence[int], blacklisted: bool, belongs: Callable[[CertRecord], bool]
    ) -> list[CertRecord]:
        if not serials:
            raise InvalidInput("serialNOs must list at least one certificate serial number")
        wanted: list[int] = []
        for s in serials:
            if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
                raise InvalidInput(f"serialNO must be a positive integer, got {s!r}")
            if s not in wanted:
                wanted.append(s)
        records = []
        for s in wanted:
            try:
                rec = await self.store.certificates.get(s)
            except NotFound:
                raise NotFound(f"certificate {s} not found") from None
            if not belongs(rec):
                raise NotFound(f"certificate {s} not found for this gateway or tenant")
            if rec.kind == CertKind.SERVER.value and blacklisted:
                raise InvalidInput(f"certificate {s} is the hub's server certificate; issue a new one instead")
            records.append(rec)
        changed = [r.serial for r in records if r.blacklisted != blacklisted]
        if changed:
            await self.store.certificates.set_blacklisted(changed, blacklisted)
            log.info("%s the blacklist: %s", "added to" if blacklisted else "removed from", changed)
            if self.on_blacklist_change is not None:
                await self.on_blacklist_change()
        return [await self.store.certificates.get(r.serial) for r in records]

    async def record_server_certificate(self, serial: int, cert_pem: str, key_pem: str = "") -> bool:
        """Record the hub's server certificate in the history if it is not yet (True if added)."""
        try:
            await self.store.certificates.get(serial)
            return False
        except NotFound:
            pass
        from gatehub.pki import parse_certificate

        ident = parse_certificate(self.ca, cert_pem)
        await self.store.certificates.record(
            IssuedCertificate(
                serial=serial,
                kind=CertKind.SERVER,
                tenant_id=None,
                gateway_id=None,
                subject=ident.subject,
                not_before=ident.not_before,
                not_after=ident.not_after,
                cert_pem=cert_pem,
                key_pem=key_pem,
            )
        )
        return True
