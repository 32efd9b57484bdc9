"""Tenants, customers and API keys.

Deleting a tenant publishes ``t.{tenant}.tenant.{tenant}`` ``{"type": "deleted", "tenantId"}`` on
the bus after the commit (here, so that every front end that deletes a tenant, the REST API and
the G-SDK registry alike, tells the rest of the node: device links and sessions close on it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from gatehub.bus import Bus
from gatehub.domain.model import Customer, Tenant, check_id, check_name
from gatehub.domain.permissions import Principal, Role, parse_permissions
from gatehub.domain.telemetry import now_ms
from gatehub.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated
from gatehub.store.db import Database
from gatehub.store.tables import api_keys, customers, tenants

KEY_PREFIX = "ghk"
RESERVED_TENANTS = {"administrator"}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self.db = db
        self.bus = bus

    # tenants -------------------------------------------------------------------------------
    async def create_tenant(self, tenant_id: str, name: str | None = None) -> Tenant:
        check_id(tenant_id, "tenant id")
        if tenant_id in RESERVED_TENANTS:
            raise InvalidInput(f"tenant id {tenant_id!r} is reserved")
        t = Tenant(tenant_id, check_name(name or tenant_id), now_ms())
        try:
            async with self.db.begin() as c:
                await c.execute(insert(tenants).values(id=t.id, name=t.name, created_at=t.created_at))
        except Exception as exc:
            if _is_integrity(exc):
                raise AlreadyExists(f"tenant {tenant_id} already exists") from None
            raise
        return t

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self.db.connect() as c:
            r = (await c.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
        if r is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return Tenant(r.id, r.name, r.created_at)

    async def list_tenants(self, offset: int = 0, limit: int = 100) -> tuple[list[Tenant], int]:
        async with self.db.connect() as c:
            total = (await c.execute(select(func.count()).select_from(tenants))).scalar_one()
            rows = (await c.execute(select(tenants).order_by(tenants.c.id).offset(offset).limit(limit))).all()
        return [Tenant(r.id, r.name, r.created_at) for r in rows], total

    async def delete_tenant(self, tenant_id: str) -> None:
        async with self.db.begin() as c:
            res = await c.execute(delete(tenants).where(tenants.c.id == tenant_id))
        if res.rowcount == 0:
            raise NotFound(f"tenant {tenant_id} not found")
        if self.bus is not None:
            self.bus.publish(f"t.{tenant_id}.tenant.{tenant_id}", {"type": "deleted", "tenantId": tenant_id})

    # customers -----------------------------------------------------------------------------
    async def create_customer(self, tenant_id: str, customer_id: str, name: str | None = None) -> Customer:
        check_id(customer_id, "customer id")
        await self.get_tenant(tenant_id)
        cu = Customer(customer_id, tenant_id, check_name(name or customer_id), now_ms())
        try:
            async with self.db.begin() as c:
                await c.execute(
                    insert(customers).values(id=cu.id, tenant_id=tenant_id, name=cu.name, created_at=cu.created_at)
                )
        except Exception as exc:
            if _is_integrity(exc):
                raise AlreadyExists(f"customer {customer_id} already exists") from None
            raise
        return cu

    async def get_customer(self, tenant_id: str, customer_id: str) -> Customer:
        async with self.db.connect() as c:
            r = (
                await c.execute(
                    select(customers).where(customers.c.id == customer_id, customers.c.tenant_id == tenant_id)
                )
            ).first()
        if r is None:
            raise NotFound(f"customer {customer_id} not found")
        return Customer(r.id, r.tenant_id, r.name, r.created_at)

    async def list_customers(self, tenant_id: str) -> list[Customer]:
        async with self.db.connect() as c:
            rows = (
                await c.execute(select(customers).where(customers.c.tenant_id == tenant_id).order_by(customers.c.id))
            ).all()
        return [Customer(r.id, r.tenant_id, r.name, r.created_at) for r in rows]

    # API keys ------------------------------------------------------------------------------
    async def create_api_key(
        self,
        name: str,
        role: Role,
        tenant_id: str | None,
        customer_id: str | None = None,
        permissions: dict[str, list[str]] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Create a key; returns (its public description, the full secret token shown once)."""
        check_name(name)
        rights = parse_permissions(permissions)
        if role is Role.SYSTEM_ADMIN and tenant_id is not None:
            raise InvalidInput("a system-admin key belongs to no tenant")
        if role is not Role.SYSTEM_ADMIN and tenant_id is None:
            raise InvalidInput("a tenant key needs a tenant")
        if tenant_id is not None:
            await self.get_tenant(tenant_id)
        if customer_id is not None:
            if tenant_id is None:
                raise InvalidInput("a system-admin key belongs to no customer")
            await self.get_customer(tenant_id, customer_id)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(24)
        row = {
            "id": key_id,
            "tenant_id": tenant_id,
            "customer_id": customer_id,
            "name": name,
            "role": role.value,
            "permissions": {
                r.value: sorted({a.value for rr, a in rights if rr == r}) for r in {rr for rr, _ in rights}
            },
            "secret_hash": _hash(secret),
            "created_at": now_ms(),
        }
        async with self.db.begin() as c:
            await c.execute(insert(api_keys).values(**row))
        return _public_key(row), f"{KEY_PREFIX}_{key_id}_{secret}"

    async def list_api_keys(self, tenant_id: str | None) -> list[dict[str, Any]]:
        q = select(api_keys).order_by(api_keys.c.created_at)
        if tenant_id is not None:
            q = q.where(api_keys.c.tenant_id == tenant_id)
        async with self.db.connect() as c:
            rows = (await c.execute(q)).mappings().all()
        return [_public_key(dict(r)) for r in rows]

    async def get_api_key(self, key_id: str) -> dict[str, Any]:
        async with self.db.connect() as c:
            r = (await c.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
        if r is None:
            raise NotFound(f"API key {key_id} not found")
        return _public_key(dict(r))

    async def delete_api_key(self, key_id: str) -> None:
        async with self.db.begin() as c:
            res = await c.execute(delete(api_keys).where(api_keys.c.id == key_id))
        if res.rowcount == 0:
            raise NotFound(f"API key {key_id} not found")

    async def authenticate(self, token: str) -> Principal:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
            raise Unauthenticated(_not_a_key(token))
        async with self.db.connect() as c:
            r = (await c.execute(select(api_keys).where(api_keys.c.id == parts[1]))).mappings().first()
        if r is None:
            raise Unauthenticated(f"API key {parts[1]} was revoked or never issued by this hub")
        if not hmac.compare_digest(r["secret_hash"], _hash(parts[2])):
            raise Unauthenticated(f"API key {parts[1]} exists but its secret part is wrong (a mistyped or cut key?)")
        return Principal(
            key_id=r["id"],
            role=Role(r["role"]),
            tenant_id=r["tenant_id"],
            customer_id=r["customer_id"],
            rights=parse_permissions(r["permissions"]),
        )


def _not_a_key(token: str) -> str:
    """Why ``token`` is not an API key, in words a user can act on (API keys do not expire)."""
    shape = f"a gatehub API key looks like {KEY_PREFIX}_<id>_<secret> (from `gatehub apikey create` or POST /apikeys)"
    if token.count(".") == 2 and token.startswith("ey"):
        return f"this is a JWT (a G-SDK login token?), not an API key: {shape}"
    return f"not a gatehub API key: {shape}"


def _public_key(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "role": r["role"],
        "tenantId": r["tenant_id"],
        "customerId": r["customer_id"],
        "permissions": r["permissions"],
        "createdAt": r["created_at"],
    }


def _is_integrity(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, IntegrityError):
            return True
        name = type(exc).__name__
        if name in {"UniqueViolationError", "IntegrityError", "ForeignKeyViolationError"}:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False
