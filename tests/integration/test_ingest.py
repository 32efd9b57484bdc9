"""The ingest writer against real databases: group commit, backpressure, isolation of failures,
replay de-duplication, and draining on close."""

from __future__ import annotations

import asyncio

import pytest

from gatehub.domain.model import NodeType
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
