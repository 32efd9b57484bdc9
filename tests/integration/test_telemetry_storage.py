"""How points are kept: on PostgreSQL as chunks of one series per transaction (migration 0005),
on SQLite as one row per point. Both must read back the same: every point, the later write
winning among equal timestamps, mixed value kinds within one series, time ranges cutting through
a chunk, deletion with the device; and existing PostgreSQL rows survive the migration both ways."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from gatehub.domain.model import NodeType
from gatehub.domain.telemetry import row
from gatehub.store import Database, IngestWriter, Store, WriteBatch
from gatehub.store.db import alembic_config
from gatehub.store.tables import telemetry


async def _meters(url: str) -> Store:
    """A migrated database with tenant acme and two direct devices, m1 and m2."""
    db = Database.open(url)
    await db.migrate()
    st = Store(db)
    await st.accounts.create_tenant("acme")
    await st.catalog.create_product("acme", "meter", node_type=NodeType.DIRECT)
    for d in ("m1", "m2"):
        await st.devices.create("acme", d, "meter", device_id=d)
    return st


@pytest.fixture
async def store(db_url: str):  # type: ignore[no-untyped-def]
    st = await _meters(db_url)
    yield st
    await st.db.close()


async def test_points_read_back_across_transactions_and_kinds(store: Store, db_url: str) -> None:
    w = IngestWriter(db_url, batch_rows=1)  # one transaction per batch: a chunk per series each
    await w.start()
    try:
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", ts, ts // 10) for ts in range(10, 60, 10)]))
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", ts, ts // 10) for ts in range(60, 110, 10)]))
        # one series changes kind between points; strings, bools and JSON in one chunk
        await w.write(
            WriteBatch(
                "acme",
                telemetry=[
                    row("m1", "x", 1, 1),
                    row("m1", "x", 2, 2.5),
                    row("m1", "x", 3, "three"),
                    row("m1", "x", 4, True),
                    row("m1", "x", 5, {"a": [1]}),
                    row("m2", "v", 7, 70),
                ],
            )
        )
        # one point per series in a transaction, of every kind (the writer's short path)
        await w.write(
            WriteBatch(
                "acme",
                telemetry=[row("m2", k, 8, v) for k, v in (("b", True), ("i", 5), ("f", 0.5), ("s", "a"), ("j", [1]))],
            )
        )
        # equal timestamps: within one batch the later one wins, and a later transaction wins
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 30, -1), row("m1", "v", 30, -2)]))
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 100, -10)]))
    finally:
        await w.close()
    data = store.data
    v = (await data.telemetry("m1", ["v"], 0, 1000))["v"]
    assert [(p["ts"], p["value"]) for p in v] == [
        (10, 1), (20, 2), (30, -2), (40, 4), (50, 5), (60, 6), (70, 7), (80, 8), (90, 9), (100, -10),
    ]  # fmt: skip
    # a range that cuts through both chunks, newest first, limited
    cut = (await data.telemetry("m1", ["v"], 45, 75, order="desc", limit=2))["v"]
    assert [p["ts"] for p in cut] == [70, 60]
    x = (await data.telemetry("m1", ["x"], 0, 10))["x"]
    assert [p["value"] for p in x] == [1, 2.5, "three", True, {"a": [1]}]
    both = await data.telemetry("m1", None, 0, 6)
    assert sorted(both) == ["x"] and len(both["x"]) == 5
    m2 = await data.telemetry("m2", None, 0, 100)
    assert {k: [p["value"] for p in pts] for k, pts in m2.items()} == {
        "v": [70], "b": [True], "i": [5], "f": [0.5], "s": ["a"], "j": [[1]]
    }  # fmt: skip
    assert (await data.latest("m2", ["j"]))["j"] == {"ts": 8, "value": [1]}
    assert (await data.latest("m1", ["v"]))["v"] == {"ts": 100, "value": -10}
    agg = await data.aggregate("m1", ["v"], 0, 100, 50, "sum")
    assert agg == {
        "v": [{"ts": 0, "value": 1 + 2 - 2 + 4, "count": 4}, {"ts": 50, "value": 5 + 6 + 7 + 8 + 9, "count": 5}]
    }
    count = await data.aggregate("m1", ["x"], 0, 10, 10, "count")
    assert count == {"x": [{"ts": 0, "value": 5, "count": 5}]}
    # the point table (a view of the chunks on PostgreSQL) holds each point once
    async with store.db.connect() as c:
        n = (await c.execute(select(func.count()).select_from(telemetry).where(telemetry.c.device_id == "m1"))).scalar()
    assert n == 15
    await store.devices.delete("acme", "m1")
    assert await data.telemetry("m1", None, 0, 1000) == {}
    assert await data.telemetry("m2", None, 0, 100) == m2


def _alembic(conn: Connection, rev: str, up: bool) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    (command.upgrade if up else command.downgrade)(cfg, rev)


async def _points(db: Database) -> list[tuple[Any, ...]]:
    async with db.connect() as c:
        q = text("SELECT device_id, key, ts, kind, v_int, v_float, v_str FROM telemetry ORDER BY device_id, key, ts")
        return [tuple(r) for r in (await c.execute(q)).all()]


@pytest.mark.postgres
async def test_migration_0005_keeps_every_point_both_ways(pg_base_url: str) -> None:
    from tests.conftest import _create_pg_database

    db = Database.open(await _create_pg_database(pg_base_url))
    try:
        async with db.engine.begin() as c:
            await c.run_sync(_alembic, "0004", True)
        rows = [("m1", "v", ts, "i", ts, None, None) for ts in range(0, 3 * 86_400_000, 3_600_000)]  # 3 days
        rows += [("m1", "s", 5, "s", None, None, "five"), ("m2", "f", -7, "f", None, 0.5, None)]
        async with db.engine.begin() as c:
            raw = await c.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                "telemetry", records=rows, columns=("device_id", "key", "ts", "kind", "v_int", "v_float", "v_str")
            )
        before = await _points(db)
        assert len(before) == 74
        await db.migrate()
        await db.engine.dispose()  # statements prepared against the old table
        async with db.connect() as c:
            chunks = (await c.execute(text("SELECT count(*) FROM telemetry_chunks"))).scalar()
        assert chunks == 5  # one per series and day: 3 + 1 + 1
        assert await _points(db) == before
        pts = await Store(db).data.telemetry("m1", ["v"], 86_400_000, 86_400_000 + 3 * 3_600_000)
        assert [p["value"] for p in pts["v"]] == [86_400_000 + h * 3_600_000 for h in range(3)]
        async with db.engine.begin() as c:
            await c.run_sync(_alembic, "0004", False)
        await db.engine.dispose()
        assert await _points(db) == before
        async with db.connect() as c:
            assert (await c.execute(text("SELECT to_regclass('telemetry_chunks')"))).scalar() is None
    finally:
        await db.close()


async def _chunks(db: Database, device: str, key: str) -> list[tuple[int, int]]:
    """(seq, points) of every chunk of one series."""
    async with db.connect() as c:
        q = text("SELECT seq, cardinality(ts) FROM telemetry_chunks WHERE device_id = :d AND key = :k ORDER BY seq")
        return [(int(r[0]), int(r[1])) for r in (await c.execute(q, {"d": device, "k": key})).all()]


@pytest.mark.postgres
async def test_compaction_merges_small_chunks_and_keeps_every_read(pg_base_url: str) -> None:
    from gatehub.store.compaction import ChunkCompactor
    from tests.conftest import _create_pg_database

    url = await _create_pg_database(pg_base_url)
    st = await _meters(url)
    db = st.db
    day = 86_400_000
    w = IngestWriter(url, batch_rows=1)  # a chunk per series and batch, like a slow reporter's
    await w.start()
    compactor = ChunkCompactor(db, points=32)
    try:
        first = await compactor.run_once()  # nothing to merge yet: marks where the next window ends
        assert first.window == (0, 0) and first.merged == 0
        for i in range(40):
            await w.write(
                WriteBatch("acme", telemetry=[row("m1", "v", 1000 * i, i), row("m1", "s", 1000 * i, f"s{i}")])
            )
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 5000, -5)]))  # rewrites ts 5000 later
        for d in (0, 1):  # one series over two days
            await w.write(
                WriteBatch("acme", telemetry=[row("m1", "days", d * day + 1, d), row("m1", "days", d * day + 2, 9)])
            )
        # a busy series: chunks of 40 points are not merged
        for b in range(2):
            await w.write(WriteBatch("acme", telemetry=[row("m1", "big", 100_000 * b + i, i) for i in range(40)]))
        await compactor.run_once()  # ends the window here: the chunks above are inside it
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 7000, 777)]))  # after the window
        before = await st.data.telemetry("m1", None, 0, 3 * day, limit=10_000)
        agg_before = await st.data.aggregate("m1", ["v"], 0, 40_000, 10_000, "sum")
        assert len(await _chunks(db, "m1", "v")) == 42

        res = await compactor.run_once()
        assert res.series == 3 and res.merged == 40 + 40 + 1 + 2 and res.written == 1 + 1 + 2
        v = await _chunks(db, "m1", "v")
        assert [n for _seq, n in v] == [41, 1]  # the merged window, then the write after it
        assert v[0][0] < v[1][0]  # the merged chunk stays older than the write after the window
        assert [n for _seq, n in await _chunks(db, "m1", "days")] == [2, 2]  # a chunk per day
        assert [n for _seq, n in await _chunks(db, "m1", "big")] == [40, 40]
        assert await st.data.telemetry("m1", None, 0, 3 * day, limit=10_000) == before
        assert await st.data.aggregate("m1", ["v"], 0, 40_000, 10_000, "sum") == agg_before
        vals = {p["ts"]: p["value"] for p in before["v"]}
        assert vals[5000] == -5 and vals[7000] == 777 and vals[6000] == 6  # later writes still win
        assert len(before["v"]) == 40 and before["s"][3] == {"ts": 3000, "value": "s3"}

        again = await compactor.run_once()  # the next window holds one chunk per series: left alone
        assert again.merged == 0
        assert await st.data.telemetry("m1", None, 0, 3 * day, limit=10_000) == before

        # another node merging: this one skips its pass and the window stays where it was
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 8000, 8)]))
        await w.write(WriteBatch("acme", telemetry=[row("m1", "v", 9000, 9)]))
        await compactor.run_once()
        async with db.engine.connect() as other:
            await other.execute(text("SELECT pg_advisory_lock(hashtext('gatehub.telemetry_compaction'))"))
            held = await compactor.run_once()
            assert held.skipped and held.merged == 0
            await other.execute(text("SELECT pg_advisory_unlock(hashtext('gatehub.telemetry_compaction'))"))
        done = await compactor.run_once()
        assert done.window == held.window and done.merged == 2
    finally:
        await w.close()
        await db.close()


async def test_the_node_runs_compaction_on_postgresql_only(tmp_path: Path, db_url: str) -> None:
    from gatehub.app.node import Node
    from gatehub.store.compaction import CompactionService
    from tests.conftest import node_settings

    async with Node(node_settings(tmp_path, db_url, telemetry_compact_interval=0.05)) as node:
        svc = [c for c in node.components if isinstance(c, CompactionService)]
        if node.db is not None and node.db.dialect == "postgresql":
            assert len(svc) == 1
            for _ in range(200):
                if svc[0].passes >= 2:
                    break
                await asyncio.sleep(0.05)
            assert svc[0].passes >= 2
        else:
            assert svc == []
