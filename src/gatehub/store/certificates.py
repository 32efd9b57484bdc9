"""Issuance history and blacklist of the hub CA's certificates."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.sql import ColumnElement

from gatehub.domain.telemetry import now_ms
from gatehub.errors import NotFound
from gatehub.store.db import Database
from gatehub.store.tables import certificates

if TYPE_CHECKING:  # the PKI (cryptography) loads when a certificate is handled, not with the store
    from gatehub.pki import IssuedCertificate, PKIName


@dataclasses.dataclass(slots=True)
class CertRecord:
    serial: int
    kind: str
    tenant_id: str | None
    gateway_id: str | None
    subject: PKIName
    not_before: int
    not_after: int
    fingerprint: str
    blacklisted: bool
    blacklisted_at: int | None

    def public(self) -> dict[str, Any]:
        return {
            "serialNO": self.serial,
            "kind": self.kind,
            "tenantId": self.tenant_id,
            "gatewayId": self.gateway_id,
            "subject": dataclasses.asdict(self.subject),
            "issueDate": self.not_before,
            "expiryDate": self.not_after,
            "fingerprint": self.fingerprint,
            "blacklisted": self.blacklisted,
        }


def _rec(r: Any) -> CertRecord:
    from gatehub.pki.names import PKIName

    return CertRecord(
        serial=r.serial,
        kind=r.kind,
        tenant_id=r.tenant_id,
        gateway_id=r.gateway_id,
        subject=PKIName(**(r.subject or {})),
        not_before=r.not_before,
        not_after=r.not_after,
        fingerprint=r.fingerprint,
        blacklisted=r.blacklisted,
        blacklisted_at=r.blacklisted_at,
    )


class Certificates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, cert: IssuedCertificate) -> None:
        from cryptography.hazmat.primitives import hashes

        from gatehub.pki.identity import load_certificate

        fp = load_certificate(cert.cert_pem).fingerprint(hashes.SHA256()).hex()
        async with self.db.begin() as c:
            await c.execute(
                insert(certificates).values(
                    serial=cert.serial,
                    kind=str(cert.kind),
                    tenant_id=cert.tenant_id,
                    gateway_id=cert.gateway_id,
                    subject=dataclasses.asdict(cert.subject),
                    not_before=int(cert.not_before),
                    not_after=int(cert.not_after),
                    fingerprint=fp,
                    blacklisted=False,
                    blacklisted_at=None,
                    created_at=now_ms(),
                )
            )

    async def serials(self) -> set[int]:
        async with self.db.connect() as c:
            return {r.serial for r in (await c.execute(select(certificates.c.serial))).all()}

    async def history(
        self,
        tenant_id: str | None = None,
        gateway_ids: list[str] | None = None,
        kind: str | None = None,
        blacklisted_only: bool = False,
    ) -> list[CertRecord]:
        cond: list[ColumnElement[bool]] = []
        if tenant_id is not None:
            cond.append(certificates.c.tenant_id == tenant_id)
        if gateway_ids:
            cond.append(certificates.c.gateway_id.in_(gateway_ids))
        if kind is not None:
            cond.append(certificates.c.kind == kind)
        if blacklisted_only:
            cond.append(certificates.c.blacklisted.is_(True))
        q = select(certificates).order_by(certificates.c.created_at)
        if cond:
            q = q.where(and_(*cond))
        async with self.db.connect() as c:
            return [_rec(r) for r in (await c.execute(q)).all()]

    async def get(self, serial: int) -> CertRecord:
        async with self.db.connect() as c:
            r = (await c.execute(select(certificates).where(certificates.c.serial == serial))).first()
        if r is None:
            raise NotFound(f"certificate {serial} not found")
        return _rec(r)

    async def set_blacklisted(self, serials: list[int], blacklisted: bool) -> None:
        async with self.db.begin() as c:
            await c.execute(
                update(certificates)
                .where(certificates.c.serial.in_(serials))
                .values(blacklisted=blacklisted, blacklisted_at=now_ms() // 1000 if blacklisted else None)
            )

    async def blacklist(self) -> dict[int, int]:
        """Blacklisted serial -> revocation time (Unix seconds), for the CRL."""
        async with self.db.connect() as c:
            rows = (
                await c.execute(
                    select(certificates.c.serial, certificates.c.blacklisted_at).where(
                        certificates.c.blacklisted.is_(True)
                    )
                )
            ).all()
        return {r.serial: int(r.blacklisted_at or 0) for r in rows}
