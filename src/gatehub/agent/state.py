"""The agent's persistent state: one SQLite file (WAL, synchronous=FULL) that survives restarts
and power loss.

- ``topo``: LocalTopoList, the sub-devices the hub has confirmed as proxied by this gateway,
  with their credentials (``credentials``: product key, device secret, access token; kept apart
  so that a registered secret outlives the device's place in the topology and is never asked
  for twice);
- ``removed``: RemovedDevList, sub-devices deleted locally that the hub has not been told of;
- ``outbox``: readings waiting for the hub's acknowledgement, one row per batch, numbered by an
  AUTOINCREMENT sequence that is never reused (also after rows are deleted);
- ``meta``: the outbox epoch (random, made with the file: a new file is a new epoch).

LocalDevList (the sub-devices connected now) is memory only, as seed 001 says.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    name TEXT PRIMARY KEY, product_key TEXT, device_secret TEXT, access_token TEXT,
    source TEXT NOT NULL, obtained_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topo (
    name TEXT PRIMARY KEY, uid TEXT NOT NULL, model TEXT NOT NULL, product_key TEXT,
    hub_id TEXT, added_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS removed (name TEXT PRIMARY KEY, uid TEXT NOT NULL, removed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL, names BLOB NOT NULL,
    readings INTEGER NOT NULL, created_at INTEGER NOT NULL);
"""


def _ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Credentials:
    name: str
    product_key: str | None
    device_secret: str | None
    access_token: str | None
    source: str  # "config" or "registered"


@dataclass(slots=True)
class TopoEntry:
    """An entry of LocalTopoList."""

    name: str
    uid: str
    model: str
    product_key: str | None
    hub_id: str | None
    added_at: int
    credentials: Credentials | None = None

    def public(self) -> dict[str, Any]:
        c = self.credentials
        return {
            "name": self.name,
            "uid": self.uid,
            "model": self.model,
            "productKey": self.product_key,
            "hubId": self.hub_id,
            "addedAt": self.added_at,
            "hasSecret": bool(c and c.device_secret),
        }


@dataclass(slots=True)
class RemovedEntry:
    """An entry of RemovedDevList."""

    name: str
    uid: str
    removed_at: int


@dataclass(slots=True)
class OutboxRow:
    seq: int
    body: bytes  # JSON object {"telemetry": {name: [...]}, "attributes": {name: {...}}}
    names: dict[str, int]  # device name -> readings of it in this batch
    readings: int


def strip(row: OutboxRow, names: set[str]) -> int:
    """Remove the data of ``names`` from ``row`` (in place); returns the readings removed."""
    body = orjson.loads(row.body)
    for part in ("telemetry", "attributes"):
        if part in body:
            for n in names:
                body[part].pop(n, None)
            if not body[part]:
                del body[part]
    gone = sum(row.names.pop(n, 0) for n in list(names))
    row.body = orjson.dumps(body)
    row.readings -= gone
    return gone


class LocalState:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.epoch = ""
        self.topo: dict[str, TopoEntry] = {}
        self.removed: dict[str, RemovedEntry] = {}
        self.credentials: dict[str, Credentials] = {}

    @classmethod
    async def open(cls, path: Path) -> LocalState:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            await conn.execute(f"PRAGMA {pragma}")
        await conn.executescript(SCHEMA)
        st = cls(conn, path)
        await st._load()
        return st

    async def close(self) -> None:
        await self.conn.close()

    async def _load(self) -> None:
        c = self.conn
        async with c.execute("SELECT value FROM meta WHERE key = 'epoch'") as cur:
            row = await cur.fetchone()
        if row is None:
            self.epoch = secrets.token_hex(8)
            await c.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        else:
            self.epoch = str(row[0])
        async with c.execute("SELECT name, product_key, device_secret, access_token, source FROM credentials") as cur:
            for r in await cur.fetchall():
                self.credentials[r[0]] = Credentials(*r)
        async with c.execute("SELECT name, uid, model, product_key, hub_id, added_at FROM topo") as cur:
            for r in await cur.fetchall():
                self.topo[r[0]] = TopoEntry(r[0], r[1], r[2], r[3], r[4], r[5], self.credentials.get(r[0]))
        async with c.execute("SELECT name, uid, removed_at FROM removed") as cur:
            for r in await cur.fetchall():
                self.removed[r[0]] = RemovedEntry(*r)

    # credentials ------------------------------------------------------------------------------
    async def save_credentials(self, cred: Credentials) -> None:
        await self.conn.execute(
            "INSERT INTO credentials (name, product_key, device_secret, access_token, source, obtained_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET product_key=excluded.product_key, "
            "device_secret=excluded.device_secret, access_token=excluded.access_token, source=excluded.source",
            (cred.name, cred.product_key, cred.device_secret, cred.access_token, cred.source, _ms()),
        )
        self.credentials[cred.name] = cred
        if cred.name in self.topo:
            self.topo[cred.name].credentials = cred

    # LocalTopoList and RemovedDevList -----------------------------------------------------------
    async def add_topo(self, name: str, uid: str, model: str, product_key: str | None, hub_id: str | None) -> TopoEntry:
        """Proxied: in LocalTopoList (and no longer in RemovedDevList), in one transaction."""
        now = _ms()
        c = self.conn
        await c.execute("BEGIN IMMEDIATE")
        try:
            await c.execute(
                "INSERT INTO topo (name, uid, model, product_key, hub_id, added_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET uid=excluded.uid, model=excluded.model, "
                "product_key=excluded.product_key, hub_id=excluded.hub_id",
                (name, uid, model, product_key, hub_id, now),
            )
            await c.execute("DELETE FROM removed WHERE name = ?", (name,))
            await c.execute("COMMIT")
        except BaseException:
            await c.execute("ROLLBACK")
            raise
        self.removed.pop(name, None)
        entry = self.topo.get(name)
        if entry is None:
            entry = self.topo[name] = TopoEntry(name, uid, model, product_key, hub_id, now)
        entry.uid, entry.model, entry.product_key, entry.hub_id = uid, model, product_key, hub_id
        entry.credentials = self.credentials.get(name)
        return entry

    async def rename(self, old: str, new: str) -> None:
        """The hub renamed a proxied sub-device: its entry, credentials and unsent readings follow."""
        c = self.conn
        await c.execute("BEGIN IMMEDIATE")
        try:
            await c.execute("UPDATE topo SET name = ? WHERE name = ?", (new, old))
            await c.execute("DELETE FROM credentials WHERE name = ?", (new,))
            await c.execute("UPDATE credentials SET name = ? WHERE name = ?", (new, old))
            after = 0
            while rows := await self.next_batches(after, 200):
                for row in rows:
                    if old in row.names:
                        body = orjson.loads(row.body)
                        for part in body.values():
                            if old in part:
                                part[new] = part.pop(old)
                        row.names[new] = row.names.pop(old)
                        row.body = orjson.dumps(body)
                        await self.rewrite_batch(row)
                after = rows[-1].seq
            await c.execute("COMMIT")
        except BaseException:
            await c.execute("ROLLBACK")
            raise
        entry = self.topo.pop(old, None)
        cred = self.credentials.pop(old, None)
        if cred is not None:
            cred.name = new
            self.credentials[new] = cred
        if entry is not None:
            entry.name = new
            entry.credentials = cred
            self.topo[new] = entry

    def topo_by_uid(self, uid: str) -> TopoEntry | None:
        return next((e for e in self.topo.values() if e.uid == uid), None)

    async def drop_topo(self, name: str) -> None:
        await self.conn.execute("DELETE FROM topo WHERE name = ?", (name,))
        self.topo.pop(name, None)

    async def mark_removed(self, name: str, uid: str) -> None:
        """Deleted locally: out of LocalTopoList and into RemovedDevList, in one transaction."""
        c = self.conn
        await c.execute("BEGIN IMMEDIATE")
        try:
            await c.execute("DELETE FROM topo WHERE name = ?", (name,))
            await c.execute(
                "INSERT INTO removed (name, uid, removed_at) VALUES (?,?,?) ON CONFLICT(name) DO NOTHING",
                (name, uid, _ms()),
            )
            await c.execute("COMMIT")
        except BaseException:
            await c.execute("ROLLBACK")
            raise
        self.topo.pop(name, None)
        self.removed.setdefault(name, RemovedEntry(name, uid, _ms()))

    async def unmark_removed(self, name: str) -> None:
        await self.conn.execute("DELETE FROM removed WHERE name = ?", (name,))
        self.removed.pop(name, None)

    # the outbox -------------------------------------------------------------------------------
    async def append(self, body: bytes, names: dict[str, int], readings: int) -> int:
        """Store one batch durably; returns its sequence number."""
        cur = await self.conn.execute(
            "INSERT INTO outbox (body, names, readings, created_at) VALUES (?,?,?,?)",
            (body, orjson.dumps(names), readings, _ms()),
        )
        seq = cur.lastrowid
        await cur.close()
        assert seq is not None
        return int(seq)

    async def next_batches(self, after: int, limit: int) -> list[OutboxRow]:
        async with self.conn.execute(
            "SELECT seq, body, names, readings FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ) as cur:
            return [OutboxRow(r[0], bytes(r[1]), orjson.loads(r[2]), r[3]) for r in await cur.fetchall()]

    async def delete_batches(self, seqs: list[int]) -> None:
        if seqs:
            await self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    async def rewrite_batch(self, row: OutboxRow) -> None:
        """Keep the batch (its sequence number must reach the hub) with new contents."""
        await self.conn.execute(
            "UPDATE outbox SET body = ?, names = ?, readings = ? WHERE seq = ?",
            (row.body, orjson.dumps(row.names), row.readings, row.seq),
        )

    async def purge(self, names: set[str]) -> int:
        """Take the data of ``names`` out of every waiting batch (they were deleted on the hub);
        the batches stay, emptied if need be, so that their sequence numbers still go out.
        Returns how many readings were dropped."""
        dropped, after = 0, 0
        while True:
            rows = await self.next_batches(after, 200)
            if not rows:
                return dropped
            for row in rows:
                if names.intersection(row.names):
                    dropped += strip(row, names)
                    await self.rewrite_batch(row)
            after = rows[-1].seq

    async def backlog(self) -> tuple[int, int]:
        """(batches, readings) waiting in the outbox."""
        async with self.conn.execute("SELECT COUNT(*), COALESCE(SUM(readings), 0) FROM outbox") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
