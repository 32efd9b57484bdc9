"""Store-and-forward: every reading goes to the persistent outbox before it is sent, and leaves
it only when the hub acknowledged it (QoS 1 PUBACK, which the hub sends after commit).

Readings are gathered for at most ``flush_interval`` seconds or ``batch_readings`` readings and
written as one batch row (one SQLite commit). The row's AUTOINCREMENT number is the batch's
sequence number; with the file's random epoch it goes on the wire in ``v1/gateway/batch``
``{"v":1,"epoch":E,"seq":N,"telemetry":{..},"attributes":{..}}``. The hub stores a sequence
number once per gateway and epoch, so a batch resent after a lost PUBACK is acknowledged and not
stored twice; it refuses batches after one it could not store until that one comes again.

The sender keeps up to ``window`` batches in flight, in order, paced to ``replay_rate``
readings/s and below the hub's per-device limit (from ``getSessionLimits``). A refused batch
(PUBACK >= 0x80) stops the window: what was acknowledged is deleted, then sending starts again
from the oldest batch left, after a back-off. Progress of a large backlog is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gatehub.agent.config import OutboxConfig
from gatehub.agent.link import HubLink, HubUnavailable
from gatehub.agent.state import LocalState, OutboxRow, strip
from gatehub.protocols.tbext import BATCH

log = logging.getLogger(__name__)

Sendable = Callable[[dict[str, int]], Awaitable[set[str]]]  # names of a batch -> names to drop


def _ms() -> int:
    return time.time_ns() // 1_000_000


class Bucket:
    """A token bucket that waits instead of refusing."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.capacity = max(burst, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def delay(self, n: float) -> float:
        """Seconds to wait before ``n`` tokens may go (they are taken now)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def device_rate(limits: dict[str, Any]) -> tuple[float, float] | None:
    """(rate, burst) of data points per device from a ``getSessionLimits`` answer, or None."""
    spec = (limits.get("gatewayRateLimits") or limits.get("rateLimits") or {}).get("telemetryDataPoints")
    best: tuple[float, float] | None = None
    for part in str(spec or "").split(","):
        cap, _, secs = part.partition(":")
        try:
            c, s = float(cap), float(secs)
        except ValueError:
            continue
        if c > 0 and s > 0 and (best is None or c / s < best[0]):
            best = (c / s, c)
    return best


class Outbox:
    def __init__(self, state: LocalState, cfg: OutboxConfig) -> None:
        self.state = state
        self.cfg = cfg
        self._tele: dict[str, list[dict[str, Any]]] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._pending = 0
        self._first = 0.0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.new_batch = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.readings_in = 0  # readings accepted (counters for tests and metrics)
        self.readings_acked = 0
        self.readings_dropped = 0

    # gathering --------------------------------------------------------------------------------
    def add(self, name: str, values: dict[str, Any], ts: int | None = None) -> None:
        if not values:
            return
        self._tele.setdefault(name, []).append({"ts": ts or _ms(), "values": values})
        self._count(name, len(values))

    def add_attributes(self, name: str, attrs: dict[str, Any]) -> None:
        if attrs:
            self._attrs.setdefault(name, {}).update(attrs)
            self._count(name, len(attrs))

    def _count(self, name: str, n: int) -> None:
        if not self._pending:
            self._first = time.monotonic()
            self._wake.set()
        self._pending += n
        self.readings_in += n
        self._counts[name] = self._counts.get(name, 0) + n
        if self._pending >= self.cfg.batch_readings:
            self._wake.set()
            if self._pending >= 4 * self.cfg.batch_readings:
                self._room.clear()

    async def room(self) -> None:
        """Wait while the readings in memory are far over one batch (the disk is behind)."""
        await self._room.wait()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agent-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            left = self.cfg.flush_interval - (time.monotonic() - self._first)
            if self._pending < self.cfg.batch_readings and left > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    pass
            await self.flush()

    async def flush(self) -> None:
        """Write what was gathered as one batch (durable when this returns)."""
        if not self._pending:
            return
        body: dict[str, Any] = {}
        if self._tele:
            body["telemetry"] = self._tele
        if self._attrs:
            body["attributes"] = self._attrs
        counts, n = self._counts, self._pending
        self._tele, self._attrs, self._counts, self._pending = {}, {}, {}, 0
        await self.state.append(orjson.dumps(body), counts, n)
        self._room.set()
        self.new_batch.set()

    # sending ----------------------------------------------------------------------------------
    def payload(self, row: OutboxRow) -> bytes:
        head = b'{"v":1,"epoch":"%s","seq":%d' % (self.state.epoch.encode(), row.seq)
        return head + (b"}" if row.body == b"{}" else b"," + row.body[1:])

    async def send(self, link: HubLink, sendable: Sendable) -> None:
        """Send until the connection ends (raises HubUnavailable then)."""
        sender = _Sender(self, link, sendable)
        await sender.run()


class _Sender:
    def __init__(self, outbox: Outbox, link: HubLink, sendable: Sendable) -> None:
        self.o = outbox
        self.link = link
        self.sendable = sendable
        cfg = outbox.cfg
        self.window = asyncio.Semaphore(cfg.window)
        self.total = Bucket(cfg.replay_rate, cfg.replay_rate) if cfg.replay_rate else None
        dev = device_rate(link.limits)
        self.dev_rate = (dev[0] * 0.9, dev[1] * 0.9) if dev else None
        self.per_device: dict[str, Bucket] = {}
        self.acked: list[int] = []
        self.acked_readings = 0
        self.refused: int | None = None
        self.lost: BaseException | None = None
        self.inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        batches, readings = await self.o.state.backlog()
        big = readings >= 10 * self.o.cfg.batch_readings
        if big:
            log.info("replaying a backlog of %d readings in %d batches", readings, batches)
        started = last_log = time.monotonic()
        sent_readings = 0
        backoff = 0.5
        cursor = 0
        state = self.o.state
        try:
            while True:
                if self.lost is not None:
                    raise HubUnavailable(str(self.lost))
                if self.refused is not None:
                    await self._settle()
                    log.warning(
                        "the hub refused a batch (reason code 0x%02x); sending again from the oldest "
                        "unacknowledged batch in %.1f s",
                        self.refused,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    self.refused, cursor = None, 0
                    continue
                rows = await state.next_batches(cursor, self.o.cfg.window)
                if not rows:
                    await self._settle()
                    if self.refused is not None or self.lost is not None:
                        continue
                    if big:
                        took = max(time.monotonic() - started, 1e-9)
                        log.info(
                            "backlog replayed: %d readings in %.1f s (%.0f readings/s)",
                            sent_readings,
                            took,
                            sent_readings / took,
                        )
                        big = False
                    if cursor and await state.next_batches(0, 1):
                        cursor = 0  # left over below the cursor: send them again
                        continue
                    self.o.new_batch.clear()
                    if not await state.next_batches(cursor, 1):
                        try:
                            await asyncio.wait_for(self.o.new_batch.wait(), 1.0)
                        except TimeoutError:
                            pass
                    continue
                for row in rows:
                    await self._prepare(row)
                    await self._pace(row)
                    await self.window.acquire()
                    if self.refused is not None or self.lost is not None:
                        self.window.release()
                        break
                    task = asyncio.create_task(self._publish(row))
                    self.inflight.add(task)
                    task.add_done_callback(self.inflight.discard)
                    cursor = row.seq
                    sent_readings += row.readings
                    backoff = 0.5 if self.refused is None else backoff
                    if big and time.monotonic() - last_log >= self.o.cfg.progress_interval:
                        last_log = time.monotonic()
                        log.info(
                            "replay: %d of %d readings sent (%.0f readings/s), %d batches in flight",
                            sent_readings,
                            readings,
                            sent_readings / (last_log - started),
                            len(self.inflight),
                        )
                if len(self.acked) >= 64:
                    await self._delete_acked()
        finally:
            for t in list(self.inflight):
                t.cancel()
            await self._delete_acked()

    async def _settle(self) -> None:
        """Wait for every batch in flight, then delete the acknowledged ones."""
        if self.inflight:
            await asyncio.gather(*list(self.inflight), return_exceptions=True)
        await self._delete_acked()

    async def _delete_acked(self) -> None:
        if self.acked:
            done, self.acked = self.acked, []
            await self.o.state.delete_batches(done)
            self.o.readings_acked += self.acked_readings
            self.acked_readings = 0

    async def _prepare(self, row: OutboxRow) -> None:
        drop = await self.sendable(row.names)
        if drop:
            gone = strip(row, drop)
            await self.o.state.rewrite_batch(row)
            self.o.readings_dropped += gone
            log.warning("dropped %d readings of %s: not proxied by the hub", gone, ", ".join(sorted(drop)))

    async def _pace(self, row: OutboxRow) -> None:
        wait = self.total.delay(row.readings) if self.total is not None else 0.0
        if self.dev_rate is not None:
            rate, burst = self.dev_rate
            for name, n in row.names.items():
                b = self.per_device.get(name)
                if b is None:
                    b = self.per_device[name] = Bucket(rate, burst)
                wait = max(wait, b.delay(n))
        if wait > 0:
            await asyncio.sleep(wait)

    async def _publish(self, row: OutboxRow) -> None:
        try:
            code = await self.link.publish(BATCH, self.o.payload(row))
        except HubUnavailable as exc:
            self.lost = exc
            return
        finally:
            self.window.release()
        if code >= 0x80:
            if self.refused is None:
                self.refused = code
            return
        self.acked.append(row.seq)
        self.acked_readings += row.readings
