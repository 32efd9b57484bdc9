"""Server-side RPC to devices: one service for every dialect, with its states and persistence.

Every call is a row in ``rpc_calls`` (``store.rpc``) with the states of ``domain.rpc``. The
service does not know any wire format: each dialect that can carry a call to a device registers
a :class:`Downlink` (``add_downlink``), which answers "can one of my sessions reach this device
now, and how do I send it". A call is sent at QoS 1 through the first downlink that reaches the
device: SENT when written, DELIVERED on the acknowledgement, SUCCESSFUL on the reply (or on the
acknowledgement, one-way). A delivered persistent call without a reply within its timeout is
sent again (at most ``rpc_persistent_retries`` times, same request id, while unexpired) before it
ends TIMEOUT. A call that cannot go out now stays QUEUED and leaves when a dialect reports the
device reachable again (``deliver_pending``), until it expires; a sweep moves expired calls to
EXPIRED. A reply counts only from the session the call was last sent through (``Route.via``: the
device itself or its gateway); a reply through another gateway is ignored, counted
(``replies_refused``) and logged.

Requests are by id and every state change is an event on the bus (``t.{tenant}.rpc.{device}``),
so a bus that crosses nodes can carry a call to the node whose session serves the device.
With no downlink at all (no MQTT listener), ``call`` answers :class:`~gatehub.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.domain.model import Device
from gatehub.domain.rpc import RpcCall, RpcRequest, RpcStatus, RpcTimeout
from gatehub.domain.telemetry import now_ms
from gatehub.errors import NotFound, Unavailable
from gatehub.store import Store
from gatehub.store.rpc import RpcCalls

__all__ = ["AckCallback", "Downlink", "Route", "RpcService", "Send", "rpc_subject"]

log = logging.getLogger(__name__)

AckCallback = Callable[[int], None]
"""Called with the reason code of the device's acknowledgement (>= 0x80: refused)."""

Send = Callable[[AckCallback], bool]
"""Sends the call now; False when the session refused it outright."""


@dataclass(frozen=True, slots=True)
class Route:
    """How a call goes out now: ``send``, through the session of device ``via`` (the device
    itself, or the gateway that serves it). Only ``via`` may answer the call."""

    send: Send
    via: str


class Downlink(Protocol):
    """What a dialect offers the RPC service: a way to a device one of its sessions serves."""

    def rpc_route(self, device: Device, call: RpcCall) -> Route | None:
        """How to send ``call`` to ``device`` now, or None when no session of this dialect can."""
        ...


def rpc_subject(tenant_id: str, device_id: str) -> str:
    return f"t.{tenant_id}.rpc.{device_id}"


class RpcService:
    def __init__(self, settings: Settings, store: Store, calls: RpcCalls, bus: Bus) -> None:
        self.settings = settings
        self.store = store
        self.calls = calls
        self.bus = bus
        self.downlinks: list[Downlink] = []
        self.waiters: dict[str, list[asyncio.Future[RpcCall]]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.retries: dict[str, int] = {}  # persistent calls sent again after a missing reply
        self.delivered_to: dict[str, str] = {}  # call id -> the device whose session it was sent to last
        self.replies_refused = 0  # replies from a session the call was not sent to
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_downlink(self, downlink: Downlink) -> None:
        self.downlinks.append(downlink)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="rpc-expiry")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for t in self.timers.values():
            t.cancel()
        self.timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for waiting in self.waiters.values():
            for fut in waiting:
                if not fut.done():
                    fut.cancel()

    # requests ---------------------------------------------------------------------------------
    def request(self, body: dict[str, Any]) -> RpcRequest:
        """A checked request from a ThingsBoard-shaped body (method, params, timeout, oneway,
        persistent, expiration), with the hub's defaults."""
        s = self.settings
        return RpcRequest.build(
            body.get("method"),
            body.get("params"),
            body.get("timeout"),
            bool(body.get("oneway")),
            bool(body.get("persistent")),
            body.get("expiration"),
            now=now_ms(),
            default_timeout_ms=s.rpc_default_timeout_ms,
            default_expiration_ms=s.rpc_default_expiration_ms,
        )

    async def call(self, device: Device, req: RpcRequest) -> RpcCall:
        """Record the call and send it if the device is reachable. A persistent call returns at
        once; any other waits for its end (reply, or delivery when one-way) up to its timeout."""
        if not self.downlinks:
            raise Unavailable("RPC needs the MQTT listener: mqtt_port, mqtts_port and mqtt_ws_port are all -1")
        call = await self.calls.create(device.tenant_id, device.id, req)
        self.publish(call)
        fut: asyncio.Future[RpcCall] | None = None
        if not req.persistent:
            fut = asyncio.get_running_loop().create_future()
            self.waiters.setdefault(call.id, []).append(fut)
        try:
            await self.deliver(call, device)
            if fut is None:
                return call
            try:
                return await asyncio.wait_for(asyncio.shield(fut), req.timeout_ms / 1000)
            except TimeoutError:
                if await self.calls.move(call.id, RpcStatus.TIMEOUT):
                    call.status = RpcStatus.TIMEOUT
                    self._finish(call)
                raise RpcTimeout(f"no reply from device {device.id} within {req.timeout_ms} ms") from None
        finally:
            if fut is not None:
                waiting = self.waiters.get(call.id, [])
                if fut in waiting:
                    waiting.remove(fut)
                if not waiting:
                    self.waiters.pop(call.id, None)

    # delivery ---------------------------------------------------------------------------------
    def _route(self, device: Device, call: RpcCall) -> Route | None:
        for d in self.downlinks:
            route = d.rpc_route(device, call)
            if route is not None:
                return route
        return None

    async def deliver(self, call: RpcCall, dev: Device | None = None) -> None:
        if call.status.final:
            return
        if dev is None:
            try:
                dev = await self.store.devices.get(call.tenant_id, call.device_id)
            except NotFound:
                return
        route = self._route(dev, call)
        if route is None:
            return
        if not await self.calls.move(call.id, RpcStatus.SENT):
            return  # finished meanwhile
        call.status = RpcStatus.SENT
        self.delivered_to[call.id] = route.via  # before it goes out: a reply may overtake the PUBACK
        self.publish(call)
        if not route.send(lambda code: self.spawn(self._acked(call, code))):
            log.warning("RPC %s to %s not sent: the session refused it", call.id, call.device_id)

    async def deliver_pending(self, device_ids: list[str]) -> None:
        """The devices became reachable: send their queued calls."""
        devices: dict[str, Device] = {}
        for call in await self.calls.pending_for(device_ids, now_ms()):
            dev = devices.get(call.device_id)
            if dev is None:
                try:
                    dev = devices[call.device_id] = await self.store.devices.get(call.tenant_id, call.device_id)
                except NotFound:
                    continue
            await self.deliver(call, dev)

    async def _acked(self, call: RpcCall, code: int) -> None:
        if code >= 0x80:
            if await self.calls.move(call.id, RpcStatus.FAILED, {"reasonCode": code}, with_response=True):
                call.status = RpcStatus.FAILED
                self._finish(call)
            return
        if not await self.calls.move(call.id, RpcStatus.DELIVERED):
            return  # the reply came first, or the call ended
        call.status = RpcStatus.DELIVERED
        self.publish(call)
        if call.oneway:
            if await self.calls.move(call.id, RpcStatus.SUCCESSFUL):
                call.status = RpcStatus.SUCCESSFUL
                self._finish(call)
        elif call.persistent:
            loop = asyncio.get_running_loop()
            self.timers[call.id] = loop.call_later(call.timeout_ms / 1000, lambda: self.spawn(self._timed_out(call)))

    async def _timed_out(self, call: RpcCall) -> None:
        """No reply within the timeout of a delivered persistent call: send it again (a gateway
        may take a call before its connector is ready and lose it) until the retries are used
        up or the call expires; then TIMEOUT."""
        self.timers.pop(call.id, None)
        tries = self.retries.get(call.id, 0)
        if tries < self.settings.rpc_persistent_retries and call.expiration > now_ms() and not call.status.final:
            self.retries[call.id] = tries + 1
            await self.deliver(call)
            if call.status is RpcStatus.SENT:
                return
        self.retries.pop(call.id, None)
        if await self.calls.move(call.id, RpcStatus.TIMEOUT):
            call.status = RpcStatus.TIMEOUT
            self._finish(call)

    async def reply(self, device_id: str, request_id: int, data: Any, *, via: str) -> bool:
        """Device ``device_id`` answered request ``request_id`` through the session of ``via``
        (the device itself, or a gateway). It counts only from where the call was sent (a call
        this process did not send: from the device or its gateway now); True when it counted."""
        call = await self.calls.find_pending(device_id, request_id)
        if call is None:
            log.info("reply from %s to unknown or finished RPC %d", device_id, request_id)
            return False
        expected = self.delivered_to.get(call.id)
        if expected is None:
            try:
                dev = await self.store.devices.get(call.tenant_id, device_id)
            except NotFound:
                return False
            allowed = {device_id, dev.parent_id}
        else:
            allowed = {expected}
        if via not in allowed:
            self.replies_refused += 1
            log.warning(
                "RPC %s (request %d) to %s of tenant %s: reply from %s ignored; the call was sent to %s",
                call.id,
                request_id,
                device_id,
                call.tenant_id,
                via,
                expected or "another session",
            )
            return False
        if await self.calls.move(call.id, RpcStatus.SUCCESSFUL, data, with_response=True):
            call.status = RpcStatus.SUCCESSFUL
            call.response = data
            self._finish(call)
        return True

    def _finish(self, call: RpcCall) -> None:
        self.retries.pop(call.id, None)
        self.delivered_to.pop(call.id, None)
        t = self.timers.pop(call.id, None)
        if t is not None:
            t.cancel()
        self.publish(call)
        for fut in self.waiters.pop(call.id, []):
            if not fut.done():
                fut.set_result(call)

    def publish(self, call: RpcCall) -> None:
        """The call's state as an event (SSE, the console, another node)."""
        self.bus.publish(rpc_subject(call.tenant_id, call.device_id), {"type": "rpc", **call.public()})

    def client_call(self, tenant_id: str, device_id: str, request_id: str, method: Any, params: Any) -> None:
        """A device asked the hub for something it has no handler for: the applications hear it."""
        self.bus.publish(
            rpc_subject(tenant_id, device_id),
            {"type": "client-rpc", "deviceId": device_id, "requestId": request_id, "method": method, "params": params},
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("RPC bookkeeping failed: %s", t.exception())

        task.add_done_callback(done)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rpc_sweep_interval)
            try:
                for call in await self.calls.expire(now_ms()):
                    self._finish(call)
            except Exception:
                log.exception("RPC expiry sweep failed")
