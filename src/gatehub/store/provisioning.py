"""Provisioning: the whitelist of pre-registered devices, dynamic registration (a device's secret
is delivered once), and secret resets by an operator.

- ``import_whitelist`` creates the devices named in a whitelist for a product (names that exist
  already are reported, not changed).
- ``deliver_secret`` hands out a pre-registered device's secret for dynamic registration: the
  product must allow it (``dynamic_register``), the name must be on its whitelist, and the secret
  must not have been delivered before. The "delivered" mark is a conditional update, so of two
  racing requests (on any node) only one gets the secret.
- ``reset_secret`` gives a device a new secret and clears the mark (it may be registered again);
  its IoTDA access tokens end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import update

from gatehub.domain.model import Device, new_secret
from gatehub.domain.provisioning import RowError, WhitelistRow
from gatehub.errors import AlreadyExists, DomainError, InvalidInput, NotFound
from gatehub.store.catalog import Catalog
from gatehub.store.db import Database
from gatehub.store.devices import Devices
from gatehub.store.tables import devices
from gatehub.store.tokens import DeviceTokens


class RegisterRefused(StrEnum):
    PRODUCT_NOT_FOUND = "product-not-found"
    DISABLED = "disabled"  # the product does not allow dynamic registration
    NOT_FOUND = "not-found"  # the name is not on the product's whitelist
    DELIVERED = "delivered"  # the secret was delivered already


class RegistrationError(DomainError):
    code = "registration_refused"
    http_status = 409

    def __init__(self, reason: RegisterRefused, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class ImportResult:
    created: list[Device] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # names already registered (left as they are)
    errors: list[RowError] = field(default_factory=list)


class Provisioning:
    def __init__(self, db: Database, catalog: Catalog, devices_repo: Devices) -> None:
        self.db = db
        self.catalog = catalog
        self.devices = devices_repo

    async def import_whitelist(self, tenant_id: str, product_id: str, rows: list[WhitelistRow]) -> ImportResult:
        await self.catalog.get_product(tenant_id, product_id)
        out = ImportResult()
        for r in rows:
            existing = await self.devices.find_by_name(tenant_id, r.name)
            if existing is not None:
                if existing.product_id == product_id:
                    out.existing.append(r.name)
                else:
                    out.errors.append(RowError(r.line, f"{r.name!r} is a device of product {existing.product_id}"))
                continue
            try:
                dev = await self.devices.create(tenant_id, r.name, product_id, device_id=r.device_id, secret=r.secret)
            except (AlreadyExists, InvalidInput) as exc:
                out.errors.append(RowError(r.line, exc.message))
                continue
            out.created.append(dev)
        return out

    async def deliver_secret(self, tenant_id: str | None, product_id: str, name: str) -> Device:
        """The secret of pre-registered device ``name`` of ``product_id``, at most once."""
        try:
            prod = await self.catalog.get_product(tenant_id, product_id)
        except NotFound:
            raise RegistrationError(RegisterRefused.PRODUCT_NOT_FOUND, f"product {product_id} not found") from None
        if not prod.dynamic_register:
            raise RegistrationError(
                RegisterRefused.DISABLED, f"product {product_id} does not allow dynamic registration"
            )
        dev = await self.devices.find_by_name(prod.tenant_id, name)
        if dev is None or dev.product_id != product_id or not dev.secret:
            raise RegistrationError(
                RegisterRefused.NOT_FOUND, f"device {name} is not pre-registered for product {product_id}"
            )
        async with self.db.begin() as c:
            r = await c.execute(
                update(devices)
                .where(devices.c.id == dev.id, devices.c.secret_delivered.is_(False))
                .values(secret_delivered=True)
            )
        if not r.rowcount:
            raise RegistrationError(
                RegisterRefused.DELIVERED,
                f"the secret of {product_id}/{name} was delivered already; an operator can reset it",
            )
        dev.secret_delivered = True
        return dev

    async def reset_secret(self, tenant_id: str, device_id: str, secret: str | None = None) -> tuple[Device, int]:
        """A new secret (random unless given), deliverable again; returns the device and how
        many IoTDA tokens ended."""
        new = secret or new_secret()
        if not 8 <= len(new) <= 128:
            raise InvalidInput("a secret must be 8-128 characters")
        await self.devices.get(tenant_id, device_id)
        dev = await self.devices.update(tenant_id, device_id, secret=new, secret_delivered=False)
        revoked = await DeviceTokens(self.db).revoke_device(device_id)
        return dev, revoked
