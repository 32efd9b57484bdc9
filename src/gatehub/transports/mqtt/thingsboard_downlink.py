"""What the hub sends to ThingsBoard clients: server-side RPC and shared attribute pushes.

RPC: every call is a row in ``rpc_calls`` (``store.rpc``) with the states of ``domain.rpc``.
A call goes to the session that serves the device now: the device's own session
(``v1/devices/me/rpc/request/{id}``) or its gateway's (``v1/gateway/rpc``, once the gateway has
connected that sub-device in this session and subscribed to the topic). It is sent at QoS 1:
SENT when written, DELIVERED on the PUBACK, SUCCESSFUL on the reply (or on the PUBACK, one-way).
A delivered persistent call without a reply within its timeout is sent again (at most
``rpc_persistent_retries`` times, same request id, while unexpired) before it ends TIMEOUT.
A call that cannot go out now stays QUEUED and leaves when the device is connected again,
until it expires; a sweep moves expired calls to EXPIRED.

Shared attributes: the hub listens to attribute commits on the bus; a shared change goes to the
session serving the device. After a reconnect, the shared attributes changed while the device
was away (since its ``last_seen``, which marks when it went offline) are pushed when the
gateway subscribes again or the sub-device is connected again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import AttributeScope, Device
from gatehub.domain.rpc import RpcCall, RpcRequest, RpcStatus, RpcTimeout
from gatehub.domain.telemetry import now_ms
from gatehub.errors import NotFound
from gatehub.protocols.mqtt import SendResult
from gatehub.store.rpc import RpcCalls

if TYPE_CHECKING:
    from gatehub.transports.mqtt.auth import MqttPrincipal
    from gatehub.transports.mqtt.session import MqttSession
    from gatehub.transports.mqtt.thingsboard import ThingsBoardDialect

log = logging.getLogger(__name__)

GW_RPC = "v1/gateway/rpc"
GW_ATTRIBUTES = "v1/gateway/attributes"
ME_ATTRIBUTES = "v1/devices/me/attributes"
ME_RPC_REQUEST = "v1/devices/me/rpc/request/"
ME_RPC_RESPONSE = "v1/devices/me/rpc/response/"


class RpcService:
    def __init__(self, dialect: ThingsBoardDialect, calls: RpcCalls) -> None:
        self.d = dialect
        self.calls = calls
        self.store = dialect.store
        self.bus = dialect.hub.bus
        self.settings = dialect.settings
        self.waiters: dict[str, list[asyncio.Future[RpcCall]]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.retries: dict[str, int] = {}  # persistent calls sent again after a missing reply
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="rpc-expiry")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for t in self.timers.values():
            t.cancel()
        self.timers.clear()
        for task in list(self._tasks):
            task.cancel()

    # the REST side ----------------------------------------------------------------------------
    def request(self, body: dict[str, Any]) -> RpcRequest:
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
        call = await self.calls.create(device.tenant_id, device.id, req)
        self._event(call)
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
    def _target(self, dev: Device, call: RpcCall) -> tuple[MqttSession, str, bytes] | None:
        from gatehub.transports.mqtt.thingsboard import tb_state

        hub = self.d.hub
        own = hub.session_for_device(dev.id)
        if own is not None and tb_state(own).me_rpc:
            body = {"method": call.method, "params": call.params}
            return own, f"{ME_RPC_REQUEST}{call.request_id}", orjson.dumps(body)
        if dev.parent_id:
            gw = hub.session_for_device(dev.parent_id)
            if gw is not None:
                st = tb_state(gw)
                name = st.names.get(dev.id)
                if st.gw_rpc and name is not None:
                    body = {
                        "device": name,
                        "data": {"id": call.request_id, "method": call.method, "params": call.params},
                    }
                    return gw, GW_RPC, orjson.dumps(body)
        return None

    async def deliver(self, call: RpcCall, dev: Device | None = None) -> None:
        if call.status.final:
            return
        if dev is None:
            try:
                dev = await self.store.devices.get(call.tenant_id, call.device_id)
            except NotFound:
                return
        target = self._target(dev, call)
        if target is None:
            return
        if not await self.calls.move(call.id, RpcStatus.SENT):
            return  # finished meanwhile
        call.status = RpcStatus.SENT
        self._event(call)
        session, topic, payload = target
        res = session.send(topic, payload, 1, on_ack=lambda code: self._spawn(self._acked(call, code)))
        if not res.accepted and res is not SendResult.QUEUED:
            log.warning("RPC %s to %s not sent: %s", call.id, call.device_id, res.name)

    async def deliver_pending(self, device_ids: list[str]) -> None:
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
        self._event(call)
        if call.oneway:
            if await self.calls.move(call.id, RpcStatus.SUCCESSFUL):
                call.status = RpcStatus.SUCCESSFUL
                self._finish(call)
        elif call.persistent:
            loop = asyncio.get_running_loop()
            self.timers[call.id] = loop.call_later(call.timeout_ms / 1000, lambda: self._spawn(self._timed_out(call)))

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

    async def reply(self, device_id: str, request_id: int, data: Any) -> None:
        """A device answered request ``request_id``."""
        call = await self.calls.find_pending(device_id, request_id)
        if call is None:
            log.info("reply from %s to unknown or finished RPC %d", device_id, request_id)
            return
        if await self.calls.move(call.id, RpcStatus.SUCCESSFUL, data, with_response=True):
            call.status = RpcStatus.SUCCESSFUL
            call.response = data
            self._finish(call)

    def _finish(self, call: RpcCall) -> None:
        self.retries.pop(call.id, None)
        t = self.timers.pop(call.id, None)
        if t is not None:
            t.cancel()
        self._event(call)
        for fut in self.waiters.pop(call.id, []):
            if not fut.done():
                fut.set_result(call)

    def _event(self, call: RpcCall) -> None:
        self.bus.publish(f"t.{call.tenant_id}.rpc.{call.device_id}", {"type": "rpc", **call.public()})

    def _spawn(self, coro: Any) -> None:
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

    # client-side RPC (the device asks the hub) ------------------------------------------------
    async def client_call(self, session: MqttSession, p: MqttPrincipal, rid: str, body: Any) -> int:
        method = body.get("method") if isinstance(body, dict) else None
        params = body.get("params") if isinstance(body, dict) else None
        if method == "getSessionLimits":
            answer: Any = self.session_limits()
        elif method == "getCurrentTime":
            answer = {"currentTime": now_ms()}
        else:
            answer = {"error": f"no server-side handler for method {method!r}"}
            self.bus.publish(
                f"t.{p.tenant_id}.rpc.{p.device_id}",
                {"type": "client-rpc", "deviceId": p.device_id, "requestId": rid, "method": method, "params": params},
            )
        session.send(f"{ME_RPC_RESPONSE}{rid}", orjson.dumps(answer), 1)
        return 0

    def session_limits(self) -> dict[str, Any]:
        """The hub's real limits, in the shape ThingsBoard's clients read."""
        s = self.settings
        lim = self.d.limits
        device = {"messages": "", "telemetryMessages": "", "telemetryDataPoints": lim.describe(lim.per_device)}
        return {
            "maxPayloadSize": s.mqtt_max_packet_size,
            "maxInflightMessages": s.mqtt_receive_maximum,
            "rateLimits": dict(device),
            "gatewayRateLimits": dict(device),
        }


class AttributePusher:
    def __init__(self, dialect: ThingsBoardDialect) -> None:
        self.d = dialect
        self.store = dialect.store
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tb-attribute-push")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        bus = self.d.hub.bus
        while True:
            sub = bus.subscribe("t.*.attributes.*", maxsize=100_000)
            async for env in sub:
                data = env.data
                if data.get("scope") != "shared":
                    continue
                tenant = env.subject.split(".", 2)[1]
                try:
                    await self.push(
                        tenant, str(data.get("deviceId")), data.get("data") or {}, data.get("deleted") or []
                    )
                except Exception:
                    log.exception("shared attribute push to %s failed", data.get("deviceId"))
            if sub.overflowed:
                log.warning("shared attribute pushes fell behind; some updates were not pushed live")

    async def push(self, tenant: str, device_id: str, data: dict[str, Any], deleted: list[str]) -> None:
        from gatehub.transports.mqtt.thingsboard import tb_state

        hub = self.d.hub
        body = dict(data)
        if deleted:
            body["deleted"] = deleted
        own = hub.session_for_device(device_id)
        if own is not None and tb_state(own).me_attrs:
            own.send(ME_ATTRIBUTES, orjson.dumps(body), 1)
            return
        try:
            dev = await self.store.devices.get(tenant, device_id)
        except NotFound:
            return
        if dev.parent_id:
            gw = hub.session_for_device(dev.parent_id)
            if gw is not None:
                st = tb_state(gw)
                name = st.names.get(device_id)
                if name is not None and st.gw_attrs:
                    gw.send(GW_ATTRIBUTES, orjson.dumps({"device": name, "data": body}), 1)

    async def push_missed(self, session: MqttSession, device_id: str, since: int) -> None:
        """Shared attributes of ``device_id`` changed at or after ``since`` (ms) go to ``session``."""
        from gatehub.transports.mqtt.thingsboard import tb_state

        rows = await self.store.data.attributes_detailed(device_id, AttributeScope.SHARED)
        data = {r["key"]: r["value"] for r in rows if r["lastUpdateTs"] >= since}
        if not data or session.closed:
            return
        p = session.principal
        if p is not None and p.device_id == device_id:
            session.send(ME_ATTRIBUTES, orjson.dumps(data), 1)
            return
        name = tb_state(session).names.get(device_id)
        if name is not None:
            session.send(GW_ATTRIBUTES, orjson.dumps({"device": name, "data": data}), 1)

    async def read(self, device_id: str, scope: str, keys: list[str] | None) -> dict[str, Any]:
        got = await self.store.data.attributes(device_id, AttributeScope(scope), keys)
        return got.get(scope, {})
