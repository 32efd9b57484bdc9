"""The one thing-model cache (services.things.ThingModels) the Alink dialect and the IoTDA API
share: compiled once, dropped when the product changes, scoped to the product's tenant."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatehub.bus import LocalBus
from gatehub.domain.model import NodeType
from gatehub.domain.thingmodel import EMPTY
from gatehub.errors import NotFound
from gatehub.services.things import ThingModels
from gatehub.store import Database, Store


def _model(kind: str) -> dict[str, Any]:
    return {"properties": [{"identifier": "t", "accessMode": "r", "dataType": {"type": kind, "specs": {}}}]}


async def test_models_are_cached_per_product_and_follow_the_catalog(db_url: str) -> None:
    db = Database.open(db_url)
    await db.migrate()
    bus = LocalBus()
    await bus.start()
    st = Store(db, bus)
    models = ThingModels(st, bus)
    await models.start()
    try:
        for t in ("a", "b"):
            await st.accounts.create_tenant(t)
        await st.catalog.create_product("a", "meter", node_type=NodeType.DIRECT, thing_model=_model("int"))
        first = await models.get("a", "meter")
        assert first.strict and await models.get("a", "meter") is first  # compiled once
        assert await models.lenient("meter") is first
        with pytest.raises(NotFound):
            await models.get("b", "meter")  # another tenant's product, cached or not
        assert await models.lenient("no-such-product") is EMPTY

        await st.catalog.update_product("a", "meter", thing_model=_model("text"))
        for _ in range(100):  # the catalog event reaches the cache through the bus
            second = await models.get("a", "meter")
            if second is not first:
                break
            await asyncio.sleep(0.01)
        assert second is not first
        second.check("t", "now text")
    finally:
        await models.stop()
        await bus.close()
        await db.close()
