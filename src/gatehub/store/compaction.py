"""Merging small telemetry chunks on PostgreSQL (docs/storage.md, "Compaction").

The ingest writer stores one chunk per series and transaction (migration 0005). A busy gateway
fills a chunk with tens of points, but a series that reports once a minute gets one point per
chunk, and a chunk of one point takes about twice the space of a row of one point. The
compactor merges, for each such series, the chunks written during one window of chunk sequence
numbers into one chunk per UTC day of their points.

Which writes win stays the same. Among equal timestamps the reads take the chunk with the
higher ``seq`` and, inside a chunk, the later position. A merge puts the points in (seq,
position) order and gives the new chunk the highest ``seq`` it replaces; since it merges every
chunk of the series whose ``seq`` lies in the window, every chunk it leaves alone is entirely
older (lower ``seq``) or entirely newer (higher) than all it merged. A window ends at the sequence
value seen one pass earlier, so no transaction that still holds a lower number is in flight.

Each batch of series is one statement (delete the old chunks, insert the merged ones) in its own
transaction: readers see the points before or after, never neither. A transaction-level advisory
lock keeps two nodes on one database from merging at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, text, update

from gatehub.loop import stop_task
from gatehub.store.db import Database
from gatehub.store.tables import telemetry_compaction as marks

log = logging.getLogger(__name__)

LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('gatehub.telemetry_compaction'))"

MERGE = text(
    """
WITH sel AS (
    SELECT device_id, key FROM telemetry_chunks
    WHERE seq > :lo AND seq <= :hi AND (device_id, key) > (:after_device, :after_key)
    GROUP BY device_id, key
    HAVING count(*) > 1 AND sum(cardinality(ts)) < :points * count(*)
    ORDER BY device_id, key
    LIMIT :series
), old AS (
    DELETE FROM telemetry_chunks AS c USING sel
    WHERE c.device_id = sel.device_id AND c.key = sel.key AND c.seq > :lo AND c.seq <= :hi
    RETURNING c.*
), pts AS (
    SELECT o.device_id, o.key, o.seq, p.ts, p.kind, p.v_int, p.v_float, p.v_str, p.n
    FROM old AS o
    CROSS JOIN LATERAL unnest(o.ts, string_to_array(o.kind, NULL), o.v_int, o.v_float, o.v_str)
         WITH ORDINALITY AS p(ts, kind, v_int, v_float, v_str, n)
), newest AS (
    SELECT device_id, key, max(seq) AS seq FROM old GROUP BY device_id, key
), ins AS (
    INSERT INTO telemetry_chunks (device_id, key, ts_max, seq, ts_min, ts, kind, v_int, v_float, v_str)
    SELECT pts.device_id, pts.key, max(pts.ts), newest.seq, min(pts.ts),
           array_agg(pts.ts ORDER BY pts.seq, pts.n),
           string_agg(pts.kind, '' ORDER BY pts.seq, pts.n),
           CASE WHEN count(pts.v_int) > 0 THEN array_agg(pts.v_int ORDER BY pts.seq, pts.n) END,
           CASE WHEN count(pts.v_float) > 0 THEN array_agg(pts.v_float ORDER BY pts.seq, pts.n) END,
           CASE WHEN count(pts.v_str) > 0 THEN array_agg(pts.v_str ORDER BY pts.seq, pts.n) END
    FROM pts JOIN newest ON newest.device_id = pts.device_id AND newest.key = pts.key
    GROUP BY pts.device_id, pts.key, newest.seq, floor(pts.ts / 86400000.0)
    RETURNING 1
)
SELECT (SELECT count(*) FROM old) AS merged,
       (SELECT count(*) FROM ins) AS written,
       (SELECT count(*) FROM sel) AS series,
       (SELECT device_id FROM sel ORDER BY device_id DESC, key DESC LIMIT 1) AS last_device,
       (SELECT key FROM sel ORDER BY device_id DESC, key DESC LIMIT 1) AS last_key
"""
)


@dataclass(slots=True)
class CompactionResult:
    window: tuple[int, int]  # (after, up to) chunk sequence numbers
    series: int = 0  # series merged
    merged: int = 0  # chunks replaced
    written: int = 0  # chunks they became
    skipped: bool = False  # another node held the lock


class ChunkCompactor:
    """One pass merges the small chunks of the window that the previous pass ended at."""

    def __init__(self, db: Database, *, points: int = 32, series_per_batch: int = 500) -> None:
        self.db = db
        self.points = points  # series whose chunks in a window average fewer points are merged
        self.series_per_batch = series_per_batch

    async def run_once(self) -> CompactionResult:
        async with self.db.begin() as c:
            row = (await c.execute(select(marks.c.done_upto, marks.c.next_upto))).one()
            lo, hi = int(row.done_upto), int(row.next_upto)
            # the highest number handed out so far (0 before the first: last_value is 1 then too)
            seen = text("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM telemetry_chunk_seq")
            now = (await c.execute(seen)).scalar_one()
        result = CompactionResult((lo, hi))
        after = ("", "")
        while hi > lo:
            async with self.db.begin() as c:
                if not (await c.execute(text(LOCK))).scalar_one():
                    result.skipped = True
                    return result
                r = (
                    await c.execute(
                        MERGE,
                        {
                            "lo": lo,
                            "hi": hi,
                            "after_device": after[0],
                            "after_key": after[1],
                            "points": self.points,
                            "series": self.series_per_batch,
                        },
                    )
                ).one()
            result.series += int(r.series)
            result.merged += int(r.merged)
            result.written += int(r.written)
            if r.series < self.series_per_batch:
                break
            after = (r.last_device, r.last_key)
        async with self.db.begin() as c:
            await c.execute(
                update(marks).where(marks.c.done_upto == lo).values(done_upto=hi, next_upto=max(int(now), hi))
            )
        return result


class CompactionService:
    """Runs a pass every ``interval`` seconds (PostgreSQL only)."""

    name = "telemetry compaction"

    def __init__(self, compactor: ChunkCompactor, interval: float) -> None:
        self.compactor = compactor
        self.interval = interval
        self.passes = 0
        self.chunks_merged = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="telemetry-compaction")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                started = time.monotonic()
                res = await self.compactor.run_once()
                self.passes += 1
                self.chunks_merged += res.merged
                if res.merged:
                    log.info(
                        "telemetry compaction: %d chunks of %d series merged into %d (sequence %d-%d) in %.1f s",
                        res.merged,
                        res.series,
                        res.written,
                        res.window[0],
                        res.window[1],
                        time.monotonic() - started,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("telemetry compaction failed; trying again in %.0f s", self.interval)
            await asyncio.sleep(self.interval)
