"""Ingest: the one commit path of device data (telemetry, attributes, events) for every transport.

Rule 1 of the design: acknowledged means stored. A transport hands a :class:`WriteBatch` to
``Ingest`` and acknowledges its client only when the returned future resolves (the batch is
committed, in one group-commit transaction with whatever else was queued) or refuses the
client when it fails. A sequenced batch (``WriteBatch.sequence``: a gateway's replay epoch and
number) that was already stored is acknowledged without being stored twice
(``WriteResult.duplicate``). After each commit, what was stored is published on the bus (``commit_publisher``): SSE,
shared-attribute pushes and, later, forwarding and other nodes read it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from operator import itemgetter
from typing import Any

import orjson

from gatehub.bus import Bus
from gatehub.domain.telemetry import Row, value_of
from gatehub.store import IngestWriter, WriteBatch, WriteResult
from gatehub.store.ingest import AttrRow

__all__ = ["Ingest", "commit_publisher"]


class Ingest:
    """The transports' way to store device data (a thin, allocation-free front of the writer)."""

    def __init__(self, writer: IngestWriter) -> None:
        self.writer = writer
        # bound once: the MQTT hot path calls these per message
        self.write: Callable[[WriteBatch], Coroutine[Any, Any, WriteResult]] = writer.write
        self.submit: Callable[[WriteBatch], Coroutine[Any, Any, asyncio.Future[WriteResult]]] = writer.submit
        self.submit_nowait: Callable[[WriteBatch], asyncio.Future[WriteResult]] = writer.submit_nowait
        self.hold_sequence: Callable[[str, str, int], None] = writer.hold_sequence

    def commit(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Queue ``batch`` without waiting when there is room (else wait for room in the background);
        the future ends at its commit."""
        try:
            return self.writer.submit_nowait(batch)
        except asyncio.QueueFull:
            return asyncio.ensure_future(self.writer.write(batch))

    async def telemetry(self, tenant_id: str, rows: list[Row]) -> WriteResult:
        return await self.writer.write(WriteBatch(tenant_id, telemetry=rows))

    async def attributes(self, tenant_id: str, rows: list[AttrRow]) -> WriteResult:
        return await self.writer.write(WriteBatch(tenant_id, attributes=rows))

    async def event(self, tenant_id: str, device_id: str | None, ts: int, type_: str, body: str) -> WriteResult:
        """One event row (``body`` is JSON text) of ``type_`` (message, linkOpened, ...)."""
        return await self.writer.write(WriteBatch(tenant_id, events=[(tenant_id, device_id, ts, type_, body)]))

    @property
    def queue_depth(self) -> int:
        return self.writer.queue_depth


_first = itemgetter(0)


def commit_publisher(bus: Bus) -> Callable[[Sequence[WriteBatch]], None]:
    """What the ingest writer calls after each commit: publish what was stored on the bus."""

    def publish(batches: Sequence[WriteBatch]) -> None:
        for b in batches:
            if b.telemetry:
                # only devices someone listens to are converted: no Python code per row otherwise
                wanted = {
                    dev
                    for dev in dict.fromkeys(map(_first, b.telemetry))
                    if bus.has_subscribers(f"t.{b.tenant_id}.telemetry.{dev}")
                }
                per_dev: dict[str, dict[str, list[list[Any]]]] = {}
                if wanted:
                    for dev, key, ts, kind, vi, vf, vs in b.telemetry:
                        if dev in wanted:
                            per_dev.setdefault(dev, {}).setdefault(key, []).append([ts, value_of(kind, vi, vf, vs)])
                for dev, data in per_dev.items():
                    bus.publish(
                        f"t.{b.tenant_id}.telemetry.{dev}", {"type": "telemetry", "deviceId": dev, "data": data}
                    )
            if b.attributes:
                per_scope: dict[tuple[str, str], dict[str, Any]] = {}
                for dev, scope, key, value, _ts in b.attributes:
                    per_scope.setdefault((dev, scope), {})[key] = orjson.loads(value)
                for (dev, scope), data in per_scope.items():
                    bus.publish(
                        f"t.{b.tenant_id}.attributes.{dev}",
                        {"type": "attributes", "deviceId": dev, "scope": scope, "data": data},
                    )
            for _tenant, ev_dev, ts, type_, body in b.events:
                subject = f"t.{b.tenant_id}.message.{ev_dev or '_'}"
                if bus.has_subscribers(subject):
                    bus.publish(subject, {"type": type_, "deviceId": ev_dev, "ts": ts, "body": orjson.loads(body)})

    return publish
