"""Fan-out of gateway status changes to SubscribeStatus streams.

One bus subscription per tenant with subscribers (``t.{tenant}.status.*``, what the store
publishes after a presence change is committed), whatever number of streams: a pump task keeps
the changes of gateways (``kind == "gateway"``), serialises each ``StatusChange`` once, and
appends it to every stream's own bounded queue. Order per gateway is the bus order, the same for
every stream.

A stream whose queue is full when a change arrives has fallen behind: it takes no more changes
and its handler ends the call with RESOURCE_EXHAUSTED the next time it runs; the pump and the
other streams never wait for it. If the tenant's bus subscription itself overflows (the event
loop was starved), every stream of the tenant is ended the same way, since each missed changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from typing import Any

from gatehub.bus import Bus, Subscription
from gatehub.transports.grpc._generated import gateway_pb2

__all__ = ["StatusHub", "StatusStream", "StreamEnd"]

log = logging.getLogger(__name__)

_FEED_QUEUE = 100_000


class StreamEnd(enum.Enum):
    OVERFLOW = "overflow"
    REVOKED = "revoked"
    CLOSED = "closed"


class StatusStream:
    """One subscriber's bounded queue of serialised ``StatusChange`` messages."""

    __slots__ = ("_feed", "_items", "_waiter", "end", "limit", "reason")

    def __init__(self, feed: _TenantFeed, limit: int) -> None:
        self._feed = feed
        self._items: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.limit = limit
        self.end: StreamEnd | None = None
        self.reason = ""

    def offer(self, item: bytes) -> None:
        if self.end is not None:
            return
        if len(self._items) >= self.limit:
            self.finish(StreamEnd.OVERFLOW, f"the subscriber fell more than {self.limit} status changes behind")
            return
        self._items.append(item)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def finish(self, end: StreamEnd, reason: str) -> None:
        if self.end is not None:
            return
        self.end = end
        self.reason = reason
        self._items.clear()
        self._feed.streams.discard(self)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def next(self) -> bytes | None:
        """The next change, or None once the stream has ended (see ``end`` and ``reason``)."""
        while True:
            if self.end is not None:
                return None
            if self._items:
                return self._items.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        self.finish(StreamEnd.CLOSED, "closed")
        self._feed.maybe_stop()


class _TenantFeed:
    __slots__ = ("_hub", "streams", "sub", "task", "tenant_id")

    def __init__(self, hub: StatusHub, tenant_id: str) -> None:
        self._hub = hub
        self.tenant_id = tenant_id
        self.streams: set[StatusStream] = set()
        self.sub: Subscription = hub.bus.subscribe(f"t.{tenant_id}.status.*", maxsize=_FEED_QUEUE)
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._pump(), name=f"grpc-status-{tenant_id}"
        )

    async def _pump(self) -> None:
        sub = self.sub
        status_change = gateway_pb2.StatusChange
        connected, disconnected = gateway_pb2.CONNECTED, gateway_pb2.DISCONNECTED
        while True:
            env = await sub.get()
            if env is None:
                break
            data: dict[str, Any] = env.data
            if data.get("kind") != "gateway":
                continue
            item = status_change(
                gatewayID=str(data.get("deviceId", "")),
                status=connected if data.get("presence") == "online" else disconnected,
                timestamp=int(data.get("ts", 0)) // 1000,
            ).SerializeToString()
            for stream in tuple(self.streams):
                stream.offer(item)
        if sub.overflowed:
            log.warning("grpc: status feed of tenant %s overflowed; ending its SubscribeStatus streams", self.tenant_id)
            for stream in tuple(self.streams):
                stream.finish(StreamEnd.OVERFLOW, "the hub fell behind delivering status changes; subscribe again")
        if self._hub.feeds.get(self.tenant_id) is self:
            del self._hub.feeds[self.tenant_id]

    def maybe_stop(self) -> None:
        if not self.streams and self._hub.feeds.get(self.tenant_id) is self:
            self._hub.feeds.pop(self.tenant_id, None)
            self.sub.close()


class StatusHub:
    """Opens SubscribeStatus streams; see the module docstring."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.feeds: dict[str, _TenantFeed] = {}

    def open(self, tenant_id: str, queue_size: int) -> StatusStream:
        feed = self.feeds.get(tenant_id)
        if feed is None:
            feed = self.feeds[tenant_id] = _TenantFeed(self, tenant_id)
        stream = StatusStream(feed, queue_size)
        feed.streams.add(stream)
        return stream

    @property
    def stream_count(self) -> int:
        return sum(len(f.streams) for f in self.feeds.values())

    async def close(self) -> None:
        feeds = list(self.feeds.values())
        self.feeds.clear()
        for feed in feeds:
            for stream in tuple(feed.streams):
                stream.finish(StreamEnd.CLOSED, "the master gateway is shutting down")
            feed.sub.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(feed.task, 1.0)
