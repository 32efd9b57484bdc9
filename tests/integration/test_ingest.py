"""The ingest writer against real databases: group commit, backpressure, isolation of failures,
replay de-duplication, and draining on close."""

from __future__ import annotations

import asyncio

import pytest

from gatehub.domain.model import AttributeScope, NodeType
from gatehub.domain.telemetry import row
from gatehub.errors import StorageError
from gatehub.store import Database, IngestWriter, Store, WriteBatch


@pytest.fixture
async def store(db_url: str):  # type: ignore[no-untyped-def]
    db = Database.open(db_url)
    await db.migrate()
    st = Store(db)
    await st.accounts.create_tenant("acme")
    await st.catalog.create_product("acme", "meter", node_type=NodeType.DIRECT)
    await st.devices.create("acme", "m1", "meter", device_id="m1")
    yield st
    await db.close()


async def test_group_commit_resolves_every_caller_after_commit(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url, queue_size=1000, batch_rows=10_000)
    await w.start()
    try:
        futs = [w.write(WriteBatch("acme", telemetry=[row("m1", "v", 1000 + i, i)])) for i in range(500)]
        results = await asyncio.gather(*futs)
        assert all(not r.duplicate for r in results)
        assert w.transactions < 500  # grouped
        pts = await store.data.telemetry("m1", ["v"], 0, 10**13, limit=1000)
        assert [p["value"] for p in pts["v"]] == list(range(500))
        assert (await store.data.latest("m1"))["v"] == {"ts": 1499, "value": 499}
    finally:
        await w.close()


async def test_full_queue_makes_callers_wait_and_loses_nothing(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url, queue_size=2, batch_rows=1)
    await w.start()
    try:
        accepted = []
        with pytest.raises(asyncio.QueueFull):  # no await in between: the writer cannot drain
            for i in range(10):
                accepted.append(w.submit_nowait(WriteBatch("acme", telemetry=[row("m1", "q", 6000 + i, i)])))
        assert len(accepted) == 2
        await asyncio.gather(*accepted)
        # write() waits for room instead of failing
        await asyncio.gather(*(w.write(WriteBatch("acme", telemetry=[row("m1", "w", 7000 + i, i)])) for i in range(50)))
        pts = await store.data.telemetry("m1", ["w"], 0, 10**13, limit=1000)
        assert len(pts["w"]) == 50
    finally:
        await w.close()


async def test_a_bad_batch_fails_only_its_caller(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url, queue_size=100, batch_rows=100_000)
    await w.start()
    try:
        good1 = w.submit_nowait(WriteBatch("acme", telemetry=[row("m1", "g", 1, 1)]))
        # an attribute of a device that does not exist breaks the foreign key
        bad = w.submit_nowait(WriteBatch("acme", attributes=[("ghost", "shared", "k", "1", 1)]))
        good2 = w.submit_nowait(WriteBatch("acme", telemetry=[row("m1", "g", 2, 2)]))
        await asyncio.wait([good1, bad, good2], timeout=10)
        assert not good1.exception() and not good2.exception()
        assert isinstance(bad.exception(), StorageError)
        pts = await store.data.telemetry("m1", ["g"], 0, 10)
        assert [p["value"] for p in pts["g"]] == [1, 2]
    finally:
        await w.close()


async def test_replays_are_acknowledged_but_stored_once(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url)
    await w.start()
    try:
        r1 = await w.write(WriteBatch("acme", telemetry=[row("m1", "s", 10, 1)], sequence=("gw", "e1", 1)))
        r2 = await w.write(WriteBatch("acme", telemetry=[row("m1", "s", 11, 99)], sequence=("gw", "e1", 1)))
        r3 = await w.write(WriteBatch("acme", telemetry=[row("m1", "s", 12, 2)], sequence=("gw", "e1", 2)))
        r4 = await w.write(WriteBatch("acme", telemetry=[row("m1", "s", 13, 3)], sequence=("gw", "e2", 1)))
        assert (r1.duplicate, r2.duplicate, r3.duplicate, r4.duplicate) == (False, True, False, False)
    finally:
        await w.close()
    # the high-water mark survives a restart of the writer
    w2 = IngestWriter(db_url)
    await w2.start()
    try:
        again = await w2.write(WriteBatch("acme", telemetry=[row("m1", "s", 14, 4)], sequence=("gw", "e2", 1)))
        assert again.duplicate
    finally:
        await w2.close()
    pts = await store.data.telemetry("m1", ["s"], 0, 100)
    assert [p["value"] for p in pts["s"]] == [1, 2, 3]


async def test_close_drains_the_queue(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url, queue_size=1000, batch_rows=10)
    await w.start()
    futs = [w.submit_nowait(WriteBatch("acme", telemetry=[row("m1", "d", 100 + i, i)])) for i in range(200)]
    await w.close()
    assert all(f.done() and not f.exception() for f in futs)
    pts = await store.data.telemetry("m1", ["d"], 0, 10**6, limit=1000)
    assert len(pts["d"]) == 200
    with pytest.raises(StorageError):
        await w.write(WriteBatch("acme"))


async def test_a_failed_sequenced_batch_is_never_skipped(store: Store, db_url: str) -> None:
    """Batch 2 of a sequence fails in a group with 3 and 4: they are refused too (SequenceHeld),
    so that the resent 2 is stored, not taken for a replay; then 3 and 4 go in."""
    from gatehub.store.ingest import SequenceHeld

    def seq(n: int, *, bad: bool = False) -> WriteBatch:
        attrs = [("ghost", "client", "k", "1", 1)] if bad else []  # a missing device breaks the foreign key
        return WriteBatch("acme", telemetry=[row("m1", "q", 100 + n, n)], attributes=attrs, sequence=("gw", "e", n))

    w = IngestWriter(db_url, queue_size=100, batch_rows=100_000)
    await w.start()
    try:
        futs = [
            w.submit_nowait(seq(1)),
            w.submit_nowait(seq(2, bad=True)),
            w.submit_nowait(seq(3)),
            w.submit_nowait(seq(4)),
        ]
        await asyncio.wait(futs, timeout=10)
        assert futs[0].exception() is None
        assert isinstance(futs[1].exception(), StorageError)
        assert isinstance(futs[2].exception(), SequenceHeld) and isinstance(futs[3].exception(), SequenceHeld)
        with pytest.raises(SequenceHeld):
            await w.write(seq(5))
        assert not (await w.write(seq(2))).duplicate  # the resend clears the hold
        assert not (await w.write(seq(3))).duplicate
        assert not (await w.write(seq(4))).duplicate
        assert (await w.write(seq(4))).duplicate
        # a transport's refusal holds the sequence the same way; a new epoch starts over
        w.hold_sequence("gw", "e", 5)
        with pytest.raises(SequenceHeld):
            await w.write(seq(6))
        other = WriteBatch("acme", telemetry=[row("m1", "q", 200, 0)], sequence=("gw", "e2", 1))
        assert not (await w.write(other)).duplicate
    finally:
        await w.close()
    pts = await store.data.telemetry("m1", ["q"], 0, 1000)
    assert [p["value"] for p in pts["q"]] == [1, 2, 3, 4, 0]


async def test_pipelined_groups_answer_in_order(store: Store, db_url: str) -> None:
    """Several groups in flight at once (PostgreSQL: two connections): callers are still answered,
    and commit listeners called, in the order the batches came."""
    seen: list[int] = []
    w = IngestWriter(
        db_url,
        queue_size=1000,
        batch_rows=20,
        connections=2,
        on_commit=lambda batches: seen.extend(b.telemetry[0][2] for b in batches),
    )
    await w.start()
    try:
        answered: list[int] = []
        futs = []
        for i in range(400):
            f = w.submit_nowait(WriteBatch("acme", telemetry=[row("m1", "o", 10_000 + i, i)] * 1))
            f.add_done_callback(lambda _f, i=i: answered.append(i))
            futs.append(f)
            if i % 50 == 0:
                await asyncio.sleep(0)  # let groups form while others are in flight
        await asyncio.gather(*futs)
        assert answered == list(range(400))
        assert seen == [10_000 + i for i in range(400)]
        assert w.connections == (2 if db_url.startswith("postgresql") else 1)
    finally:
        await w.close()


async def test_concurrent_groups_upserting_the_same_rows_do_not_deadlock(store: Store, db_url: str) -> None:
    """Groups on different connections upsert the same latest values and attributes, listed in
    opposite orders: written in key order, they wait for each other and never deadlock (a deadlock
    would fail a group and retry it batch by batch)."""
    for n in range(40):
        await store.devices.create("acme", f"d{n}", "meter", device_id=f"d{n}")
    devs = [f"d{n}" for n in range(40)]
    series = [f"x{n:04d}" for n in range(2000)]  # latest values of 6,000 series: long upserts that overlap
    w = IngestWriter(db_url, queue_size=1000, batch_rows=1, connections=2)  # a batch per group
    await w.start()
    try:
        futs = []
        for i in range(16):
            fwd = i % 2 == 1
            order = series if fwd else series[::-1]
            b = WriteBatch(
                "acme",
                telemetry=[row(d, k, 50_000 + i, i) for d in order for k in ("a", "b", "c")],
                attributes=[(d, "client", "fw", f'"{i}"', 50_000 + i) for d in (devs if fwd else devs[::-1])],
            )
            futs.append(w.submit_nowait(b))
        await asyncio.gather(*futs)
        assert w.groups_retried == 0  # (one batch per group: a deadlock would fail its caller above)
        for d in ("x0000", "x1999"):
            assert (await store.data.latest(d))["c"] == {"ts": 50_015, "value": 15}
        assert (await store.data.attributes("d0", AttributeScope.CLIENT, ["fw"]))["client"]["fw"] == "15"
    finally:
        await w.close()


async def test_an_attribute_update_never_replaces_a_newer_one(store: Store, db_url: str) -> None:
    """Two groups on two connections may commit in either order: the stored attribute is the one
    with the newest updated_at, as for latest values, not the one whose group committed last."""
    await store.devices.create("acme", "late", "meter", device_id="late")
    w = IngestWriter(db_url, queue_size=10, batch_rows=1)
    await w.start()
    try:
        await w.write(WriteBatch("acme", attributes=[("late", "client", "fw", '"2.0"', 60_000)]))
        await w.write(WriteBatch("acme", attributes=[("late", "client", "fw", '"1.0"', 59_000)]))  # committed later
        got = await store.data.attributes("late", AttributeScope.CLIENT, ["fw"])
        assert got["client"]["fw"] == "2.0", got
        await w.write(WriteBatch("acme", attributes=[("late", "client", "fw", '"2.1"', 60_000)]))  # same ts: later wins
        got = await store.data.attributes("late", AttributeScope.CLIENT, ["fw"])
        assert got["client"]["fw"] == "2.1", got
    finally:
        await w.close()


async def test_a_gateway_sequence_is_advanced_by_one_group_at_a_time(store: Store, db_url: str) -> None:
    """With groups in flight on two connections, a gateway's sequenced batches still behave as on
    one: a failed batch holds the later ones back however the groups were cut."""
    from gatehub.store.ingest import SequenceHeld

    def seq(n: int, *, bad: bool = False) -> WriteBatch:
        attrs = [("ghost", "client", "k", "1", 1)] if bad else []
        return WriteBatch("acme", telemetry=[row("m1", "s", 300 + n, n)], attributes=attrs, sequence=("gw2", "e", n))

    w = IngestWriter(db_url, queue_size=100, batch_rows=1, connections=2)  # one batch per group
    await w.start()
    try:
        futs = [w.submit_nowait(seq(n, bad=n == 3)) for n in range(1, 7)]
        await asyncio.wait(futs, timeout=10)
        assert [f.exception() is None for f in futs[:2]] == [True, True]
        assert isinstance(futs[2].exception(), StorageError)
        assert all(isinstance(f.exception(), SequenceHeld) for f in futs[3:])
        for n in (3, 4, 5, 6):
            assert not (await w.write(seq(n))).duplicate
    finally:
        await w.close()
    pts = await store.data.telemetry("m1", ["s"], 0, 1000)
    assert [p["value"] for p in pts["s"]] == [1, 2, 3, 4, 5, 6]
