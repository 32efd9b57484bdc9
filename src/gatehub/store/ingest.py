"""The ingest writer: one task that group-commits everything transports hand it.

A transport builds a ``WriteBatch`` (telemetry rows, attribute upserts, log events) and awaits
``IngestWriter.write(batch)``. The writer takes as many queued batches as fit in one
transaction, writes them with the driver's bulk path (``executemany`` on SQLite, ``COPY`` on
PostgreSQL) on a connection of its own, commits, and only then resolves each caller's future.
That future is what a PUBACK or an HTTP 200 waits on: acknowledged means durable.

The queue is bounded: when it is full ``write`` waits (backpressure); nothing is dropped.
If a group fails, its batches are retried one by one so a bad batch fails only its own caller.

Pipelining: on PostgreSQL the writer holds several connections (``connections``) and starts the
next group while earlier ones are still in their transactions, so that the hub encoding one
group and the database storing another overlap instead of taking turns. Callers' futures are
still resolved, and commit listeners called, in the order the groups were formed, so
acknowledgements never overtake each other. Rows that two concurrent groups upsert (latest
values, attributes, sequence marks) are written in key order, so two transactions never wait on
each other in opposite orders. Two concurrent groups may commit in either order, so an upsert
of a latest value or an attribute never replaces a newer one (``WHERE excluded.ts >= ...``): a
device's later update wins whichever group commits last. SQLite has one writer: one connection
there.

Replays: a batch may carry ``(gateway_id, epoch, seq)``. Within an epoch, a batch whose
sequence number is not above the last committed one for that gateway is a replay: it is
acknowledged without storing anything (``WriteResult.duplicate``). The check and the update of
the high-water mark happen in the same transaction as the rows.

A sequence never skips a batch that was not stored: when a sequenced batch fails (its write
failed, or a transport refused it with ``hold_sequence``), later batches of that gateway and
epoch are refused (``SequenceHeld``) until that very batch comes again (or a new epoch starts),
so that a resend is never mistaken for a replay. Senders keep their batches in sequence order
(``submit`` waits for queue space without reordering). A group never holds a sequenced batch of a
gateway that has a batch in a group still being written: that one waits for the earlier group,
so the mark of a gateway is only ever advanced by one transaction at a time.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from gatehub.domain.telemetry import Row
from gatehub.errors import StorageError
from gatehub.store.db import normalise_url

log = logging.getLogger(__name__)

AttrRow = tuple[str, str, str, str, int]  # device_id, scope, key, value (JSON text), updated_at
EventRow = tuple[str, str | None, int, str, str]  # tenant_id, device_id, ts, type, body (JSON text)

# the column order of a domain Row: rows go to the driver as they are, never re-packed
TELEMETRY_COLS = ("device_id", "key", "ts", "kind", "v_int", "v_float", "v_str")


@dataclass(slots=True)
class WriteBatch:
    tenant_id: str
    telemetry: list[Row] = field(default_factory=list)
    attributes: list[AttrRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    sequence: tuple[str, str, int] | None = None  # (gateway_id, epoch, seq) for replay de-duplication

    def __len__(self) -> int:
        return len(self.telemetry) + len(self.attributes) + len(self.events) or 1


@dataclass(slots=True)
class WriteResult:
    duplicate: bool = False


class SequenceHeld(StorageError):
    """A sequenced batch came after a batch of the same gateway that was not stored: refused,
    so that the sender resends from the missing one."""


class CommitListener(Protocol):
    def __call__(self, batches: Sequence[WriteBatch]) -> None: ...


@dataclass(slots=True)
class _Item:
    batch: WriteBatch
    future: asyncio.Future[WriteResult]


class _Driver(Protocol):
    async def write(self, batches: Sequence[WriteBatch], skip: set[int], seqs: dict[str, tuple[str, int]]) -> None: ...
    async def load_sequences(self) -> dict[str, tuple[str, int]]: ...
    async def close(self) -> None: ...


class IngestWriter:
    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 1024,
        batch_rows: int = 50000,
        connections: int = 2,
        on_commit: Callable[[Sequence[WriteBatch]], None] | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("the ingest writer needs at least one connection")
        self._url = normalise_url(url)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=queue_size)
        self._batch_rows = batch_rows
        self._connections = connections
        self._on_commit = on_commit
        self._drivers: list[_Driver] = []
        self._free: asyncio.Queue[_Driver] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._groups: set[asyncio.Task[None]] = set()
        self._last_group: asyncio.Future[None] | None = None  # done once its callers are answered
        self._writing: dict[str, asyncio.Event] = {}  # gateway -> set when its in-flight group is written
        self._seqs: dict[str, tuple[str, int]] = {}
        self._held: dict[str, tuple[str, int]] = {}  # gateway -> (epoch, seq) of a batch not stored
        self._closing = False
        # counters for /metrics and benchmarks
        self.rows_committed = 0
        self.batches_committed = 0
        self.transactions = 0
        self.commit_seconds = 0.0
        self.groups_retried = 0  # group transactions that failed and were retried batch by batch

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def connections(self) -> int:
        """Connections the writer commits on (1 on SQLite)."""
        return len(self._drivers)

    async def start(self) -> None:
        first = await _open_driver(self._url)
        self._drivers = [first]
        try:
            if not isinstance(first, _SqliteDriver):
                for _ in range(self._connections - 1):
                    self._drivers.append(await _open_driver(self._url))
            self._seqs = await first.load_sequences()
        except BaseException:
            for d in self._drivers:
                await d.close()
            self._drivers = []
            raise
        for d in self._drivers:
            self._free.put_nowait(d)
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Queue ``batch`` and wait until it is committed (or refused as a replay)."""
        if self._closing or self._task is None:
            raise StorageError("the ingest writer is not running")
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(batch, fut))
        return await fut

    def submit_nowait(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Like write() without waiting for queue space; raises asyncio.QueueFull when full."""
        if self._closing or self._task is None:
            raise StorageError("the ingest writer is not running")
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(batch, fut))
        return fut

    async def submit(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Queue ``batch`` (waiting for queue space, in call order) and return the future of its
        commit without waiting for it."""
        if self._closing or self._task is None:
            raise StorageError("the ingest writer is not running")
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(batch, fut))
        return fut

    def hold_sequence(self, gateway_id: str, epoch: str, seq: int) -> None:
        """A transport refused sequenced batch ``seq`` before it reached the writer (a rate
        limit): later batches of this gateway and epoch are refused until it comes again."""
        held = self._held.get(gateway_id)
        if held is None or held[0] != epoch or seq < held[1]:
            self._held[gateway_id] = (epoch, seq)

    async def close(self) -> None:
        """Stop taking batches, commit everything queued, then close the connections."""
        if self._task is None:
            return
        self._closing = True
        await self._queue.put(None)
        await self._task
        self._task = None
        if self._groups:
            await asyncio.gather(*self._groups, return_exceptions=True)
        drivers, self._drivers = self._drivers, []
        for d in drivers:
            await d.close()

    async def _run(self) -> None:
        pending: _Item | None = None
        while True:
            first = pending if pending is not None else await self._queue.get()
            pending = None
            if first is None:
                break
            gw = _gateway(first)
            if gw is not None and gw in self._writing:
                await self._writing[gw].wait()  # its gateway's mark is being advanced by another group
            driver = await self._free.get()
            items = [first]
            rows = len(first.batch)
            gws = {gw} if gw is not None else set()
            stop = False
            while rows < self._batch_rows and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                g = _gateway(nxt)
                if g is not None and g in self._writing:
                    pending = nxt  # waits for that group; later batches keep their order behind it
                    break
                if g is not None:
                    gws.add(g)
                items.append(nxt)
                rows += len(nxt.batch)
            written = asyncio.Event()
            for g in gws:
                self._writing[g] = written
            prev = self._last_group
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._last_group = done
            task = asyncio.create_task(self._group(items, driver, gws, written, prev, done), name="ingest-group")
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)
            if stop:
                break

    async def _group(
        self,
        items: list[_Item],
        driver: _Driver,
        gws: set[str],
        written: asyncio.Event,
        prev: asyncio.Future[None] | None,
        done: asyncio.Future[None],
    ) -> None:
        outcomes: list[tuple[_Item, WriteResult | BaseException]] = []
        committed: list[WriteBatch] = []
        try:
            try:
                await self._commit_items(driver, items, outcomes, committed)
            finally:
                for g in gws:
                    if self._writing.get(g) is written:
                        del self._writing[g]
                written.set()
                self._free.put_nowait(driver)
            if prev is not None:
                await asyncio.shield(prev)  # acknowledgements go out in the order groups were formed
            for item, outcome in outcomes:
                if item.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
            if self._on_commit is not None and committed:
                try:
                    self._on_commit(committed)
                except Exception:
                    log.exception("commit listener failed")
        except BaseException as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(StorageError(f"write failed: {exc!r}"))
            raise
        finally:
            if not done.done():
                done.set_result(None)

    async def _commit_items(
        self,
        driver: _Driver,
        items: list[_Item],
        outcomes: list[tuple[_Item, WriteResult | BaseException]],
        committed: list[WriteBatch],
    ) -> None:
        started = time.perf_counter()
        seqs = dict(self._seqs)
        skip, refused = self._replays(items, seqs)
        if refused:
            outcomes.extend((items[n], refused[n]) for n in sorted(refused))
            items = [i for n, i in enumerate(items) if n not in refused]
            if not items:
                return
            seqs = dict(self._seqs)
            skip, _none = self._replays(items, seqs)
        try:
            await driver.write([i.batch for i in items], skip, seqs)
        except Exception as exc:
            if len(items) > 1:
                self.groups_retried += 1
                log.warning("group commit of %d batches failed (%s); retrying one by one", len(items), exc)
                for item in items:
                    await self._commit_items(driver, [item], outcomes, committed)
                return
            err = exc if isinstance(exc, StorageError) else StorageError(f"write failed: {exc}")
            if items[0].batch.sequence is not None:
                self.hold_sequence(*items[0].batch.sequence)
            outcomes.append((items[0], err))
            return
        for n, item in enumerate(items):  # only this group's gateways: others may be in flight
            seq = item.batch.sequence
            if seq is not None and n not in skip:
                self._seqs[seq[0]] = seqs[seq[0]]
        self.transactions += 1
        self.commit_seconds += time.perf_counter() - started
        for n, item in enumerate(items):
            if n not in skip:
                self.rows_committed += len(item.batch.telemetry)
                self.batches_committed += 1
                committed.append(item.batch)
            outcomes.append((item, WriteResult(duplicate=n in skip)))

    def _replays(
        self, items: list[_Item], seqs: dict[str, tuple[str, int]]
    ) -> tuple[set[int], dict[int, SequenceHeld]]:
        """Indexes of batches that are replays, and of those refused because an earlier batch of
        their sequence was not stored; advances ``seqs`` for the others."""
        skip: set[int] = set()
        refused: dict[int, SequenceHeld] = {}
        held_map = self._held
        for n, item in enumerate(items):
            if item.batch.sequence is None:
                continue
            gw, epoch, seq = item.batch.sequence
            last = seqs.get(gw)
            held = held_map.get(gw)
            if held is not None:
                if held[0] != epoch or seq == held[1] or (last is not None and last[0] == epoch and last[1] >= held[1]):
                    del held_map[gw]  # the missing batch came again (or a new epoch began)
                elif seq > held[1]:
                    refused[n] = SequenceHeld(f"batch {seq} of gateway {gw} waits for batch {held[1]}, not stored")
                    continue
            if last is not None and last[0] == epoch and seq <= last[1]:
                skip.add(n)
            else:
                seqs[gw] = (epoch, seq)
        return skip, refused


def _gateway(item: _Item) -> str | None:
    seq = item.batch.sequence
    return seq[0] if seq is not None else None


def _changed_seqs(
    batches: Sequence[WriteBatch], skip: set[int], seqs: dict[str, tuple[str, int]]
) -> list[tuple[str, str, int]]:
    gws = {b.sequence[0] for n, b in enumerate(batches) if b.sequence is not None and n not in skip}
    return [(gw, seqs[gw][0], seqs[gw][1]) for gw in sorted(gws)]


def _gather(batches: Sequence[WriteBatch], skip: set[int]) -> tuple[list[Row], list[AttrRow], list[EventRow]]:
    """The telemetry rows, attribute upserts and events of the batches that are not replays."""
    rows: list[Row] = []
    attrs: list[AttrRow] = []
    evs: list[EventRow] = []
    for n, b in enumerate(batches):
        if n in skip:
            continue
        rows.extend(b.telemetry)
        attrs.extend(b.attributes)
        evs.extend(b.events)
    return rows, attrs, evs


def _latest_rows(batches: Sequence[WriteBatch], skip: set[int]) -> list[Row]:
    """The newest row of each (device, key): the highest ts, the later one among equal ts.

    Sorting by ts (stable, and nearly sorted already, so close to linear) and letting the last
    row of each key win keeps the per-row work in C: this runs over every row of every commit."""
    rows: list[Row] = []
    for n, b in enumerate(batches):
        if n not in skip:
            rows.extend(b.telemetry)
    rows.sort(key=_TS)
    return list(dict(zip(map(_DEVICE_KEY, rows), rows, strict=True)).values())


_TS = itemgetter(2)
_DEVICE_KEY = itemgetter(0, 1)


async def _open_driver(url: str) -> _Driver:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return await _SqliteDriver.open(parsed.database or ":memory:")
    if parsed.get_backend_name() == "postgresql":
        return await _PostgresDriver.open(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    raise StorageError(f"no ingest driver for {parsed.get_backend_name()}")


class _SqliteDriver:
    INSERT_TS = (
        "INSERT OR REPLACE INTO telemetry (device_id, key, ts, kind, v_int, v_float, v_str) VALUES (?,?,?,?,?,?,?)"
    )
    UPSERT_LATEST = (
        "INSERT INTO latest (device_id, key, ts, kind, v_int, v_float, v_str) VALUES (?,?,?,?,?,?,?) "
        "ON CONFLICT(device_id, key) DO UPDATE SET ts=excluded.ts, kind=excluded.kind, v_int=excluded.v_int, "
        "v_float=excluded.v_float, v_str=excluded.v_str WHERE excluded.ts >= latest.ts"
    )
    UPSERT_ATTR = (
        "INSERT INTO attributes (device_id, scope, key, value, updated_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(device_id, scope, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at "
        "WHERE excluded.updated_at >= attributes.updated_at"
    )
    INSERT_EVENT = "INSERT INTO events (tenant_id, device_id, ts, type, body) VALUES (?,?,?,?,?)"
    UPSERT_SEQ = (
        "INSERT INTO ingest_sequences (gateway_id, epoch, last_seq) VALUES (?,?,?) "
        "ON CONFLICT(gateway_id) DO UPDATE SET epoch=excluded.epoch, last_seq=excluded.last_seq"
    )

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor

    @classmethod
    async def open(cls, path: str) -> _SqliteDriver:
        # the connection lives in one thread of its own, and a whole transaction (BEGIN, the bulk
        # inserts, COMMIT) is one call into it: one hop between the event loop and the thread per
        # group commit, not one per statement
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sqlite")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=FULL",
                "foreign_keys=ON",
                "busy_timeout=30000",
                "cache_size=-65536",
            ):
                conn.execute(f"PRAGMA {pragma}")
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load_sequences(self) -> dict[str, tuple[str, int]]:
        rows = await self._call(
            lambda: self._conn.execute("SELECT gateway_id, epoch, last_seq FROM ingest_sequences").fetchall()
        )
        return {gw: (ep, seq) for gw, ep, seq in rows}

    async def write(self, batches: Sequence[WriteBatch], skip: set[int], seqs: dict[str, tuple[str, int]]) -> None:
        rows, attrs, evs = _gather(batches, skip)
        latest = _latest_rows(batches, skip) if rows else []
        changed = _changed_seqs(batches, skip, seqs)
        await self._call(self._write_sync, rows, latest, attrs, evs, changed)

    def _write_sync(
        self,
        rows: list[Row],
        latest: list[Row],
        attrs: list[AttrRow],
        evs: list[EventRow],
        changed: list[tuple[str, str, int]],
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(self.INSERT_TS, rows)
                conn.executemany(self.UPSERT_LATEST, latest)
            if attrs:
                conn.executemany(self.UPSERT_ATTR, attrs)
            if evs:
                conn.executemany(self.INSERT_EVENT, evs)
            if changed:
                conn.executemany(self.UPSERT_SEQ, changed)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        try:
            await self._call(self._conn.close)
        finally:
            self._executor.shutdown(wait=True)


class _PostgresDriver:
    """Telemetry goes in as chunks: one row of arrays per (device, key) and transaction
    (``telemetry_chunks``, migration 0005), by ``COPY``. Equal timestamps need no conflict
    handling on the way in: the reads let the later write win (by ``seq``, then position)."""

    # one statement for all latest values of a transaction: executemany of upserts is slow on PostgreSQL
    UPSERT_LATEST = (
        "INSERT INTO latest (device_id, key, ts, kind, v_int, v_float, v_str) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], "
        "$6::double precision[], $7::text[]) "
        "ON CONFLICT (device_id, key) DO UPDATE SET ts=excluded.ts, kind=excluded.kind, v_int=excluded.v_int, "
        "v_float=excluded.v_float, v_str=excluded.v_str WHERE excluded.ts >= latest.ts"
    )
    UPSERT_ATTR = (
        "INSERT INTO attributes (device_id, scope, key, value, updated_at) VALUES ($1,$2,$3,$4,$5) "
        "ON CONFLICT (device_id, scope, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at "
        "WHERE excluded.updated_at >= attributes.updated_at"
    )
    INSERT_EVENT = "INSERT INTO events (tenant_id, device_id, ts, type, body) VALUES ($1,$2,$3,$4,$5)"
    UPSERT_SEQ = (
        "INSERT INTO ingest_sequences (gateway_id, epoch, last_seq) VALUES ($1,$2,$3) "
        "ON CONFLICT (gateway_id) DO UPDATE SET epoch=excluded.epoch, last_seq=excluded.last_seq"
    )

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, dsn: str) -> _PostgresDriver:
        import asyncpg

        return cls(await asyncpg.connect(dsn))

    async def load_sequences(self) -> dict[str, tuple[str, int]]:
        rows = await self._conn.fetch("SELECT gateway_id, epoch, last_seq FROM ingest_sequences")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def write(self, batches: Sequence[WriteBatch], skip: set[int], seqs: dict[str, tuple[str, int]]) -> None:
        rows, attrs, evs = _gather(batches, skip)
        chunks, latest = chunk_rows(rows)
        changed = _changed_seqs(batches, skip, seqs)
        conn = self._conn
        async with conn.transaction():
            if chunks:
                await conn.copy_records_to_table("telemetry_chunks", records=chunks, columns=CHUNK_COLS)
                # in key order: a concurrent group upserting the same rows waits, never deadlocks
                await conn.execute(self.UPSERT_LATEST, *_columns(latest))
            if attrs:
                await conn.executemany(self.UPSERT_ATTR, sorted(attrs, key=_attr_key))  # stable: last wins
            if evs:
                await conn.executemany(self.INSERT_EVENT, evs)
            if changed:
                await conn.executemany(self.UPSERT_SEQ, changed)

    async def close(self) -> None:
        await self._conn.close()


CHUNK_COLS = ("device_id", "key", "ts_max", "ts_min", "ts", "kind", "v_int", "v_float", "v_str")
Chunk = tuple[str, str, int, int, Sequence[int], str, Sequence[Any] | None, Sequence[Any] | None, Sequence[Any] | None]


def chunk_rows(rows: list[Row]) -> tuple[list[Chunk], list[Row]]:
    """The rows of one transaction as chunks (one per series, points in arrival order), and the
    newest row of each series (highest ts, the later one among equal ts), both in key order.

    Two stable sorts on one string each (devices, then the keys of one device) and a
    ``zip`` per series keep the per-point work in C: this runs over every point stored. A series
    with one point in the transaction (many devices, few points each) skips the zip."""
    chunks: list[Chunk] = []
    latest: list[Row] = []
    add_chunk, add_latest = chunks.append, latest.append
    for _dev, per_device in groupby(sorted(rows, key=_DEVICE), _DEVICE):
        device_rows = list(per_device)
        if len(device_rows) > 1:
            device_rows.sort(key=_KEY)
        for _key, per_series in groupby(device_rows, _KEY):
            series = list(per_series)
            if len(series) == 1:
                r = series[0]
                add_latest(r)
                add_chunk(
                    (
                        r[0],
                        r[1],
                        r[2],
                        r[2],
                        (r[2],),
                        r[3],
                        None if r[4] is None else (r[4],),
                        None if r[5] is None else (r[5],),
                        None if r[6] is None else (r[6],),
                    )
                )
                continue
            dev, key, ts, kind, v_int, v_float, v_str = zip(*series, strict=True)
            n, newest = len(ts), max(ts)
            last = n - 1 if ts[-1] == newest else n - 1 - ts[::-1].index(newest)
            add_latest(series[last])
            add_chunk(
                (
                    dev[0],
                    key[0],
                    newest,
                    min(ts),
                    ts,
                    "".join(kind),
                    None if v_int.count(None) == n else v_int,
                    None if v_float.count(None) == n else v_float,
                    None if v_str.count(None) == n else v_str,
                )
            )
    return chunks, latest


_DEVICE = itemgetter(0)
_KEY = itemgetter(1)


def _attr_key(a: AttrRow) -> tuple[str, str, str]:
    return a[0], a[1], a[2]


def _columns(rows: list[Row]) -> list[list[Any]]:
    """Rows to per-column lists, for PostgreSQL ``unnest`` parameters."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in TELEMETRY_COLS]
