"""Products: what a device is (node type, credentials, thing model).

A product's thing model is checked (compiled) before it is stored. Updates and deletions are
published on the bus as ``catalog.product`` ``{"tenantId", "productId"}`` so that caches of
compiled models (the dialects') drop the old one at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update

from gatehub.bus import Bus
from gatehub.domain.model import NodeType, Product, check_id, check_name, new_secret
from gatehub.domain.telemetry import now_ms
from gatehub.domain.thingmodel import compile_thing_model
from gatehub.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from gatehub.store.accounts import _is_integrity
from gatehub.store.db import Database
from gatehub.store.tables import devices, products


def _product(r: Any) -> Product:
    return Product(
        id=r.id,
        tenant_id=r.tenant_id,
        name=r.name,
        node_type=NodeType(r.node_type),
        secret=r.secret,
        thing_model=r.thing_model or {},
        trusted_gateway_add=r.trusted_gateway_add,
        dynamic_register=r.dynamic_register,
        created_at=r.created_at,
    )


class Catalog:
    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self.db = db
        self.bus = bus

    def _changed(self, tenant_id: str, product_id: str) -> None:
        if self.bus is not None:
            self.bus.publish("catalog.product", {"tenantId": tenant_id, "productId": product_id})

    async def create_product(
        self,
        tenant_id: str,
        product_id: str,
        name: str | None = None,
        node_type: NodeType = NodeType.DIRECT,
        thing_model: dict[str, Any] | None = None,
        trusted_gateway_add: bool = False,
        dynamic_register: bool = False,
        secret: str | None = None,
    ) -> Product:
        check_id(product_id, "product id")
        if thing_model is not None and not isinstance(thing_model, dict):
            raise InvalidInput("thingModel must be an object")
        compile_thing_model(thing_model)  # a malformed model is refused here, naming the entry
        p = Product(
            id=product_id,
            tenant_id=tenant_id,
            name=check_name(name or product_id),
            node_type=node_type,
            secret=secret or new_secret(),
            thing_model=thing_model or {},
            trusted_gateway_add=trusted_gateway_add,
            dynamic_register=dynamic_register,
            created_at=now_ms(),
        )
        try:
            async with self.db.begin() as c:
                await c.execute(
                    insert(products).values(
                        id=p.id,
                        tenant_id=p.tenant_id,
                        name=p.name,
                        node_type=p.node_type.value,
                        secret=p.secret,
                        thing_model=p.thing_model,
                        trusted_gateway_add=p.trusted_gateway_add,
                        dynamic_register=p.dynamic_register,
                        created_at=p.created_at,
                    )
                )
        except Exception as exc:
            if _is_integrity(exc):
                raise AlreadyExists(f"a product {product_id!r} or named {p.name!r} already exists") from None
            raise
        return p

    async def get_product(self, tenant_id: str | None, product_id: str) -> Product:
        q = select(products).where(products.c.id == product_id)
        if tenant_id is not None:
            q = q.where(products.c.tenant_id == tenant_id)
        async with self.db.connect() as c:
            r = (await c.execute(q)).first()
        if r is None:
            raise NotFound(f"product {product_id} not found")
        return _product(r)

    async def find_product_by_name(self, tenant_id: str, name: str) -> Product | None:
        async with self.db.connect() as c:
            r = (
                await c.execute(select(products).where(products.c.tenant_id == tenant_id, products.c.name == name))
            ).first()
        return None if r is None else _product(r)

    async def list_products(self, tenant_id: str, offset: int = 0, limit: int = 100) -> tuple[list[Product], int]:
        async with self.db.connect() as c:
            total = (
                await c.execute(select(func.count()).select_from(products).where(products.c.tenant_id == tenant_id))
            ).scalar_one()
            rows = (
                await c.execute(
                    select(products)
                    .where(products.c.tenant_id == tenant_id)
                    .order_by(products.c.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return [_product(r) for r in rows], total

    async def update_product(self, tenant_id: str, product_id: str, **changes: Any) -> Product:
        allowed = {"name", "thing_model", "trusted_gateway_add", "dynamic_register"}
        values = {k: v for k, v in changes.items() if k in allowed and v is not None}
        if "name" in values:
            check_name(values["name"])
        if "thing_model" in values:
            if not isinstance(values["thing_model"], dict):
                raise InvalidInput("thingModel must be an object")
            compile_thing_model(values["thing_model"])
        await self.get_product(tenant_id, product_id)
        if values:
            try:
                async with self.db.begin() as c:
                    await c.execute(update(products).where(products.c.id == product_id).values(**values))
            except Exception as exc:
                if _is_integrity(exc):
                    raise AlreadyExists(f"a product named {values.get('name')!r} already exists") from None
                raise
            self._changed(tenant_id, product_id)
        return await self.get_product(tenant_id, product_id)

    async def delete_product(self, tenant_id: str, product_id: str) -> None:
        await self.get_product(tenant_id, product_id)
        async with self.db.begin() as c:
            used = (
                await c.execute(select(func.count()).select_from(devices).where(devices.c.product_id == product_id))
            ).scalar_one()
            if used:
                raise Conflict(f"product {product_id} still has {used} device(s); delete them first")
            await c.execute(delete(products).where(products.c.id == product_id))
        self._changed(tenant_id, product_id)
