"""Reading what devices sent: time series (raw and aggregated), latest values, attributes, events.

Writes of telemetry, attributes and events go through the ingest writer (``store.ingest``);
this module only reads, plus the few deletes an operator asks for.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Float, String, Text, and_, bindparam, delete, func, literal, select, text
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.elements import BindParameter

from gatehub.domain.model import AttributeScope
from gatehub.domain.telemetry import value_of
from gatehub.errors import InvalidInput
from gatehub.store.db import Database
from gatehub.store.tables import attributes, events, latest, telemetry

AGGREGATES = {"min", "max", "avg", "sum", "count"}
MAX_BUCKETS = 100_000

# PostgreSQL keeps a series' points as chunks of arrays (migration 0005). The points of one device
# and time range: only chunks that overlap the range are read (the key leads with device, key,
# ts_max), unnested, and among equal timestamps of a series the last write wins (chunk ``seq``,
# then position in the chunk), as ``INSERT OR REPLACE`` does on SQLite.
_PG_POINTS = """
SELECT DISTINCT ON (c.key, p.ts) p.ts AS ts, c.key AS key, p.kind AS kind,
       p.v_int AS v_int, p.v_float AS v_float, p.v_str AS v_str
FROM telemetry_chunks AS c
CROSS JOIN LATERAL unnest(c.ts, string_to_array(c.kind, NULL), c.v_int, c.v_float, c.v_str)
     WITH ORDINALITY AS p(ts, kind, v_int, v_float, v_str, n)
WHERE c.device_id = :device_id AND c.ts_max >= :start AND c.ts_min < :end{keys}
  AND p.ts >= :start AND p.ts < :end
ORDER BY c.key, p.ts, c.seq DESC, p.n DESC
"""


class Data:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def telemetry(
        self,
        device_id: str,
        keys: list[str] | None,
        start: int,
        end: int,
        limit: int = 1000,
        order: str = "asc",
    ) -> dict[str, list[dict[str, Any]]]:
        """Raw points ``{key: [{"ts", "value"}, ...]}`` with ``start <= ts < end``."""
        if end <= start:
            raise InvalidInput("end must be after start")
        pts, cond = self._points(device_id, keys, start, end)
        col = pts.c.ts.desc() if order == "desc" else pts.c.ts.asc()
        q = (
            select(pts.c.ts, pts.c.key, pts.c.kind, pts.c.v_int, pts.c.v_float, pts.c.v_str)
            .where(*cond)
            .order_by(col)
            .limit(limit)
        )
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.db.connect() as c:
            for r in (await c.execute(q)).all():
                out.setdefault(r.key, []).append({"ts": r.ts, "value": value_of(r.kind, r.v_int, r.v_float, r.v_str)})
        return out

    async def aggregate(
        self, device_id: str, keys: list[str] | None, start: int, end: int, interval: int, agg: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Aggregates over fixed intervals: ``{key: [{"ts": bucket_start, "value", "count"}]}``.

        Only numeric points (bool, int, float) take part, except for ``count`` which counts all.
        """
        if agg not in AGGREGATES:
            raise InvalidInput(f"agg must be one of {', '.join(sorted(AGGREGATES))}")
        if end <= start:
            raise InvalidInput("end must be after start")
        if interval <= 0:
            raise InvalidInput("interval must be a positive number of milliseconds")
        pts, cond = self._points(device_id, keys, start, end)
        num = func.coalesce(pts.c.v_float, pts.c.v_int * literal(1.0))
        bucket = ((pts.c.ts - start) // interval).label("bucket")
        fn = {
            "min": func.min(num),
            "max": func.max(num),
            "avg": func.avg(num),
            "sum": func.sum(num),
            "count": func.count(),
        }[agg]
        if agg != "count":
            cond.append(pts.c.kind.in_(("b", "i", "f")))
        q = (
            select(bucket, pts.c.key, fn.label("value"), func.count().label("n"))
            .where(*cond)
            .group_by(bucket, pts.c.key)
            .order_by(bucket)
            .limit(MAX_BUCKETS + 1)
        )
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.db.connect() as c:
            rows = (await c.execute(q)).all()
        # only intervals that hold data are returned, so a wide range with sparse data is fine
        if len(rows) > MAX_BUCKETS:
            raise InvalidInput(
                f"more than {MAX_BUCKETS} intervals hold data; narrow the time range or use a larger interval"
            )
        for r in rows:
            value = int(r.value) if agg == "count" else (float(r.value) if r.value is not None else None)
            out.setdefault(r.key, []).append({"ts": start + int(r.bucket) * interval, "value": value, "count": r.n})
        return out

    def _points(
        self, device_id: str, keys: list[str] | None, start: int, end: int
    ) -> tuple[FromClause, list[ColumnElement[bool]]]:
        """Where the points of ``device_id`` (``keys``, ``start <= ts < end``) are read from, and
        the conditions that select them there."""
        if self.db.dialect == "postgresql":
            sql = text(_PG_POINTS.format(keys=" AND c.key IN :keys" if keys else ""))
            params: list[BindParameter[Any]] = [
                bindparam("device_id", device_id),
                bindparam("start", start),
                bindparam("end", end),
            ]
            if keys:
                params.append(bindparam("keys", keys, expanding=True))
            sub = (
                sql.bindparams(*params)
                .columns(ts=BigInteger, key=String, kind=String, v_int=BigInteger, v_float=Float, v_str=Text)
                .subquery("points")
            )
            return sub, []
        cond: list[ColumnElement[bool]] = [
            telemetry.c.ts >= start,
            telemetry.c.ts < end,
            telemetry.c.device_id == device_id,
        ]
        if keys:
            cond.append(telemetry.c.key.in_(keys))
        return telemetry, cond

    async def latest(self, device_id: str, keys: list[str] | None = None) -> dict[str, dict[str, Any]]:
        q = select(latest).where(latest.c.device_id == device_id)
        if keys:
            q = q.where(latest.c.key.in_(keys))
        async with self.db.connect() as c:
            rows = (await c.execute(q.order_by(latest.c.key))).all()
        return {r.key: {"ts": r.ts, "value": value_of(r.kind, r.v_int, r.v_float, r.v_str)} for r in rows}

    async def attributes(
        self, device_id: str, scope: AttributeScope | None = None, keys: list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{scope: {key: value}}``."""
        q = select(attributes).where(attributes.c.device_id == device_id)
        if scope is not None:
            q = q.where(attributes.c.scope == scope.value)
        if keys:
            q = q.where(attributes.c.key.in_(keys))
        out: dict[str, dict[str, Any]] = {}
        async with self.db.connect() as c:
            for r in (await c.execute(q.order_by(attributes.c.key))).all():
                out.setdefault(r.scope, {})[r.key] = orjson.loads(r.value)
        return out

    async def attributes_detailed(self, device_id: str, scope: AttributeScope) -> list[dict[str, Any]]:
        q = (
            select(attributes)
            .where(attributes.c.device_id == device_id, attributes.c.scope == scope.value)
            .order_by(attributes.c.key)
        )
        async with self.db.connect() as c:
            rows = (await c.execute(q)).all()
        return [{"key": r.key, "value": orjson.loads(r.value), "lastUpdateTs": r.updated_at} for r in rows]

    async def delete_attributes(self, device_id: str, scope: AttributeScope, keys: list[str]) -> list[str]:
        async with self.db.begin() as c:
            present = [
                r.key
                for r in (
                    await c.execute(
                        select(attributes.c.key).where(
                            attributes.c.device_id == device_id,
                            attributes.c.scope == scope.value,
                            attributes.c.key.in_(keys),
                        )
                    )
                ).all()
            ]
            await c.execute(
                delete(attributes).where(
                    attributes.c.device_id == device_id,
                    attributes.c.scope == scope.value,
                    attributes.c.key.in_(keys),
                )
            )
        return present

    async def events(
        self,
        tenant_id: str,
        device_id: str | None = None,
        type_: str | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        cond: list[ColumnElement[bool]] = [events.c.tenant_id == tenant_id]
        if device_id:
            cond.append(events.c.device_id == device_id)
        if type_:
            cond.append(events.c.type == type_)
        if start is not None:
            cond.append(events.c.ts >= start)
        if end is not None:
            cond.append(events.c.ts < end)
        q = select(events).where(and_(*cond)).order_by(events.c.id.desc()).limit(limit)
        async with self.db.connect() as c:
            rows = (await c.execute(q)).all()
        return [
            {"id": r.id, "deviceId": r.device_id, "ts": r.ts, "type": r.type, "body": orjson.loads(r.body)}
            for r in rows
        ]
