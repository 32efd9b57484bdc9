"""The topology service every dialect uses, on SQLite and PostgreSQL: proof of credentials or a
trusting product, at most one gateway per sub-device, version bumps, bus events and the event
log, presence of sub-devices that leave, and a race between two gateways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gatehub.bus import LocalBus
from gatehub.domain.model import NodeType, Presence
from gatehub.errors import InvalidInput
from gatehub.store import Database, Store
from gatehub.store.topology import Refused, SubRef

T = "acme"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    db = Database.open(db_url)
    await db.migrate()
    bus = LocalBus()
    await bus.start()
    st = Store(db, bus)
    await st.accounts.create_tenant(T)
    await st.accounts.create_tenant("other")
    await st.catalog.create_product(T, "gwp", node_type=NodeType.GATEWAY)
    await st.catalog.create_product(T, "subp", node_type=NodeType.SUBDEVICE)
    await st.catalog.create_product(T, "trusting", node_type=NodeType.SUBDEVICE, trusted_gateway_add=True)
    await st.catalog.create_product(T, "direct", node_type=NodeType.DIRECT)
    await st.catalog.create_product("other", "osub", node_type=NodeType.SUBDEVICE, trusted_gateway_add=True)
    for gw in ("g1", "g2"):
        await st.devices.create(T, gw, "gwp", device_id=gw)
    for i in range(4):
        await st.devices.create(T, f"s{i}", "subp", device_id=f"s{i}", secret=f"secret-{i}")
    await st.devices.create(T, "t0", "trusting", device_id="t0")
    await st.devices.create(T, "d0", "direct", device_id="d0")
    await st.devices.create("other", "foreign", "osub", device_id="foreign")
    yield st
    await bus.close()
    await db.close()


def signed(name: str, secret: str) -> SubRef:
    return SubRef(name=name, product_id="subp", proof=lambda s: s == secret)


async def test_adding_needs_proof_or_a_trusting_product(store: Store) -> None:
    events = store.devices.bus.subscribe(f"t.{T}.topology.*")  # type: ignore[union-attr]
    res = await store.topology.add(T, "g1", [signed("s0", "secret-0"), signed("s1", "wrong")], source="test")
    assert [d.id for d in res.added] == ["s0"] and res.version == 1
    assert [(r.ref.name, r.reason) for r in res.refused] == [("s1", Refused.BAD_PROOF)]
    res = await store.topology.add(T, "g1", [SubRef(name="s2"), SubRef(name="t0")])
    assert [d.id for d in res.added] == ["t0"] and res.refused[0].reason is Refused.NO_PROOF
    assert "trustedGatewayAdd" in res.refused[0].message and res.version == 2
    res = await store.topology.add(
        T,
        "g1",
        [
            SubRef(name="ghost"),
            SubRef(name="d0"),
            SubRef(device_id="g1"),
            SubRef(name="foreign"),
            SubRef(name="s3", product_id="trusting"),
        ],
    )
    assert [r.reason for r in res.refused] == [
        Refused.NOT_FOUND,
        Refused.NOT_SUBDEVICE,
        Refused.NOT_SUBDEVICE,
        Refused.NOT_FOUND,  # another tenant's device does not exist here
        Refused.NOT_FOUND,  # named with the wrong product
    ]
    assert res.version == 2 and not res.added
    # idempotent: adding again changes nothing and bumps nothing
    res = await store.topology.add(T, "g1", [signed("s0", "secret-0")])
    assert [d.id for d in res.added] == ["s0"] and res.version == 2
    # operators need no proof
    res = await store.topology.add(T, "g1", [SubRef(device_id="s2")], trusted=True, source="api")
    assert res.version == 3
    view = await store.topology.get(T, "g1")
    assert view.version == 3 and [c.id for c in view.children] == ["s0", "s2", "t0"]
    got = []
    while True:
        env = await events.get(timeout=0.5)
        if env is None:
            break
        got.append(env.data)
    assert [(e["version"], e["added"], e.get("source")) for e in got] == [
        (1, ["s0"], "test"),
        (2, ["t0"], None),
        (3, ["s2"], "api"),
    ]
    assert got[0]["devices"] == [{"id": "s0", "productId": "subp", "name": "s0"}]
    logged = await store.data.events(T, "g1", "topology")
    assert [e["body"]["version"] for e in logged] == [3, 2, 1]
    with pytest.raises(InvalidInput):
        await store.topology.add(T, "s0", [SubRef(name="s1")])  # not a gateway


async def test_one_gateway_per_sub_device_and_moves(store: Store) -> None:
    await store.topology.add(T, "g1", [signed("s0", "secret-0"), SubRef(name="t0")])
    await store.devices.set_presence(T, "s0", Presence.ONLINE, cascade=False)
    # naming is not enough to take a sub-device from another gateway, even for a trusting product
    res = await store.topology.add(T, "g2", [SubRef(name="t0")])
    assert res.refused[0].reason is Refused.OTHER_GATEWAY and not res.added
    # its credentials are: it moves, the old gateway loses it (its version bumps), it goes offline
    res = await store.topology.add(T, "g2", [signed("s0", "secret-0")])
    assert [d.id for d in res.added] == ["s0"] and res.version == 1
    s0 = await store.devices.get(T, "s0")
    assert s0.parent_id == "g2" and s0.presence is Presence.OFFLINE
    g1 = await store.devices.get(T, "g1")
    assert g1.topology_version == 2 and [c.id for c in await store.devices.children("g1")] == ["t0"]
    assert (await store.data.events(T, "g1", "topology"))[0]["body"]["removed"] == ["s0"]


async def test_remove_and_presence(store: Store) -> None:
    await store.topology.add(T, "g1", [signed("s0", "secret-0"), signed("s1", "secret-1")])
    await store.devices.set_presence(T, "s0", Presence.ONLINE, cascade=False)
    status = store.devices.bus.subscribe(f"t.{T}.status.*")  # type: ignore[union-attr]
    res = await store.topology.remove(
        T, "g1", [SubRef(name="s0", product_id="subp"), SubRef(name="s2"), SubRef(name="nope")]
    )
    assert [d.id for d in res.removed] == ["s0"] and res.version == 2
    assert [r.reason for r in res.refused] == [Refused.NOT_CHILD, Refused.NOT_FOUND]
    s0 = await store.devices.get(T, "s0")
    assert s0.parent_id is None and s0.presence is Presence.OFFLINE
    env = await status.get(timeout=2)
    assert env is not None and env.data["deviceId"] == "s0" and env.data["presence"] == "offline"
    res = await store.topology.remove(T, "g1", [SubRef(name="s0")])
    assert res.refused[0].reason is Refused.NOT_CHILD and res.version == 2


async def test_two_gateways_racing_for_one_sub_device(store: Store) -> None:
    for _ in range(5):
        r1, r2 = await asyncio.gather(
            store.topology.add(T, "g1", [signed("s3", "secret-3")]),
            store.topology.add(T, "g2", [signed("s3", "secret-3")]),
        )
        s3 = await store.devices.get(T, "s3")
        assert s3.parent_id in ("g1", "g2")
        kids = [c.id for g in ("g1", "g2") for c in await store.devices.children(g)]
        assert kids.count("s3") == 1  # never under two gateways
        assert r1.added or r2.added
        await store.topology.remove(T, s3.parent_id, [SubRef(name="s3")])


async def test_many_concurrent_creates_each_get_a_number(store: Store) -> None:
    """Gateways connecting many new sub-devices at once: every create succeeds with its own
    device number (the numbers are allocated under a lock, not by luck)."""
    devs = await asyncio.gather(
        *(store.devices.create(T, f"burst-{i}", "subp", parent_id=f"g{i % 2 + 1}") for i in range(120))
    )
    numbers = [d.number for d in devs]
    assert len(set(numbers)) == 120 and all(0 < n <= 0xFFFFFFFF for n in numbers)
    g1 = await store.devices.get(T, "g1")
    assert len([d for d in await store.devices.children("g1")]) == 60 and g1.topology_version >= 60
