"""Alink thing-model traffic: property and event posts (checked, stored), service invocation and
property set from the REST API (the reply returns to the caller), topology change notices.

- ``thing/event/property/post`` params ``{id: value}`` or ``{id: {"value", "time"}}``: every value
  is checked against the product's thing model; a post with any invalid field is refused whole
  (460, the message names the field) and stores nothing; a valid one is stored as telemetry
  (key: the property's ``key``, else its identifier) and answered 200 after the commit.
- ``thing/event/{id}/post`` params ``{"value": {...}, "time"?}``: checked against the event's
  output parameters, written to the event log (type ``event``) and answered after the commit.
- ``thing/deviceinfo/update`` ``[{attrKey, attrValue}]``: stored as client attributes.
- Services: ``ServiceCaller.call`` records the call (``rpc_calls``, method ``thing.service.{id}``),
  sends ``thing/service/{id}`` to the session that serves the device (its own, or its gateway's
  after a login) and waits for ``thing/service/{id}_reply``; the reply's data is checked against
  the service's output parameters. Property set is the service ``property/set``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import Device
from gatehub.domain.rpc import RpcCall, RpcRequest, RpcStatus, RpcTimeout
from gatehub.domain.telemetry import check_key, now_ms, row
from gatehub.domain.thingmodel import ThingModelError
from gatehub.errors import Conflict, DomainError, InvalidInput
from gatehub.protocols import alink
from gatehub.protocols.alink import AlinkError, Code
from gatehub.store.ingest import WriteBatch
from gatehub.store.rpc import RpcCalls

if TYPE_CHECKING:
    from gatehub.transports.mqtt.alink import AlinkDialect, AlinkState
    from gatehub.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)

PROPERTY_SET = "property/set"


def _model_error(exc: ThingModelError) -> AlinkError:
    return AlinkError(Code.PARAM_ERROR, exc.message)


class ThingHandlers:
    def __init__(self, dialect: AlinkDialect) -> None:
        self.d = dialect

    async def handle(
        self,
        session: MqttSession,
        st: AlinkState,
        device_id: str,
        product_id: str,
        path: str,
        raw: str,
        req: alink.Request,
        is_reply: bool,
    ) -> Any:
        if is_reply:
            if path.startswith("thing/service/"):
                await self.d.services.reply(st.tenant_id, device_id, product_id, path[14:-6], req)
            return 0
        if path == "thing/event/property/post":
            return await self._properties(session, st, device_id, product_id, raw, req)
        if path.startswith("thing/event/") and path.endswith("/post"):
            return await self._event(session, st, device_id, product_id, path[12:-5], raw, req)
        if path == "thing/deviceinfo/update":
            return self._device_info(session, st, device_id, raw, req)
        raise AlinkError(Code.TOPIC_ERROR, f"{path} is not served")

    async def _properties(
        self, session: MqttSession, st: AlinkState, device_id: str, product_id: str, raw: str, req: alink.Request
    ) -> Any:
        model = await self.d.model(st.tenant_id, product_id)
        rows = []
        for ident, value, ts in alink.property_values(req.params, now_ms()):
            where = f"params.{ident}"
            key = ident
            try:
                if model.strict:
                    spec = model.check(ident, value, where)
                    key = spec.key or ident
                elif value is None:
                    raise ThingModelError(where, "null is not a value")
                check_key(key)
                rows.append(row(device_id, key, ts, value))
            except ThingModelError as exc:
                raise _model_error(exc) from None
            except InvalidInput as exc:
                raise AlinkError(Code.PARAM_ERROR, f"{where}: {exc.message}") from None
        fut = self.d.commit(WriteBatch(st.tenant_id, telemetry=rows))
        return self.d.reply_after(fut, session, raw, req.id)

    async def _event(
        self,
        session: MqttSession,
        st: AlinkState,
        device_id: str,
        product_id: str,
        identifier: str,
        raw: str,
        req: alink.Request,
    ) -> Any:
        model = await self.d.model(st.tenant_id, product_id)
        params = req.params
        if type(params) is not dict:
            raise AlinkError(Code.PARAM_ERROR, "params must be an object with 'value'")
        value = params.get("value")
        ts = params.get("time", now_ms())
        if type(ts) is not int or ts < 0:
            raise AlinkError(Code.PARAM_ERROR, "params.time must be UTC milliseconds")
        try:
            spec = model.check_event(identifier, value)
        except ThingModelError as exc:
            raise _model_error(exc) from None
        body = {"identifier": identifier, "eventType": spec.type if spec else None, "value": value or {}}
        batch = WriteBatch(st.tenant_id, events=[(st.tenant_id, device_id, ts, "event", orjson.dumps(body).decode())])
        return self.d.reply_after(self.d.commit(batch), session, raw, req.id)

    def _device_info(self, session: MqttSession, st: AlinkState, device_id: str, raw: str, req: alink.Request) -> Any:
        items = req.params
        if type(items) is not list or not items:
            raise AlinkError(Code.PARAM_ERROR, "params must be a list of {attrKey, attrValue}")
        now = now_ms()
        rows = []
        for n, item in enumerate(items):
            k = item.get("attrKey") if type(item) is dict else None
            v = item.get("attrValue") if type(item) is dict else None
            if not isinstance(k, str) or not k or len(k) > 255 or v is None:
                raise AlinkError(Code.PARAM_ERROR, f"params[{n}] must be {{attrKey, attrValue}}")
            rows.append((device_id, "client", k, orjson.dumps(v).decode(), now))
        return self.d.reply_after(self.d.commit(WriteBatch(st.tenant_id, attributes=rows)), session, raw, req.id)


@dataclass(slots=True)
class ServiceResult:
    call: RpcCall
    code: int | None = None  # the device's reply code (None: no reply yet)
    data: Any = None
    message: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rpcId": self.call.id, "status": self.call.status.value}
        if self.code is not None:
            out.update(code=self.code, data=self.data, message=self.message)
        return out


class ServiceFailed(DomainError):
    """The device answered with data that does not fit the service's output parameters."""

    code = "thing_model"
    http_status = 502


class ServiceCaller:
    """Services and property sets invoked through the REST API."""

    def __init__(self, dialect: AlinkDialect, calls: RpcCalls) -> None:
        self.d = dialect
        self.calls = calls
        self.waiters: dict[tuple[str, int], asyncio.Future[ServiceResult]] = {}

    def stop(self) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.cancel()

    async def call(
        self, device: Device, identifier: str, params: Any, timeout_ms: int | None = None, wait: bool = True
    ) -> ServiceResult:
        if not identifier or len(identifier) > 128 or "/" in identifier.replace(PROPERTY_SET, ""):
            raise InvalidInput(f"not a service identifier: {identifier!r}")
        params = {} if params is None else params
        model = await self.d.model(device.tenant_id, device.product_id)
        if identifier == PROPERTY_SET:
            model.check_set(params)
        else:
            model.check_service(identifier, params)
        method = "thing.service.property.set" if identifier == PROPERTY_SET else f"thing.service.{identifier}"
        s = self.d.settings
        req = RpcRequest.build(
            method,
            params,
            timeout_ms,
            False,
            False,
            None,
            now=now_ms(),
            default_timeout_ms=s.rpc_default_timeout_ms,
            default_expiration_ms=s.rpc_default_expiration_ms,
        )
        call = await self.calls.create(device.tenant_id, device.id, req)
        self._event(call)
        session = self.d.session_of(device.id)
        if session is None:
            await self._end(call, RpcStatus.FAILED, {"error": "device offline"})
            raise Conflict(
                f"device {device.id} is offline: not connected, or not logged in through its gateway",
                code="device_offline",
            )
        key = (device.id, call.request_id)
        fut: asyncio.Future[ServiceResult] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        await self.calls.move(call.id, RpcStatus.SENT)
        call.status = RpcStatus.SENT
        self._event(call)
        topic = alink.sys_topic(device.product_id, device.name, f"thing/service/{identifier}")
        session.send(
            topic,
            alink.downlink(str(call.request_id), method, params),
            1,
            on_ack=lambda code: self.d.spawn(self._acked(call, code)),
        )
        if not wait:
            self._forget_later(key, fut, req.timeout_ms)
            return ServiceResult(call)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), req.timeout_ms / 1000)
        except TimeoutError:
            await self._end(call, RpcStatus.TIMEOUT)
            raise RpcTimeout(f"no reply from device {device.id} within {req.timeout_ms} ms") from None
        finally:
            if self.waiters.get(key) is fut:
                del self.waiters[key]

    def _forget_later(self, key: tuple[str, int], fut: asyncio.Future[ServiceResult], timeout_ms: int) -> None:
        def forget() -> None:
            if self.waiters.get(key) is fut:
                del self.waiters[key]

        asyncio.get_running_loop().call_later(timeout_ms / 1000 * 2, forget)

    async def _acked(self, call: RpcCall, code: int) -> None:
        if code < 0x80 and await self.calls.move(call.id, RpcStatus.DELIVERED):
            call.status = RpcStatus.DELIVERED
            self._event(call)

    async def _end(self, call: RpcCall, status: RpcStatus, response: Any = None) -> None:
        if await self.calls.move(call.id, status, response, with_response=response is not None):
            call.status = status
            call.response = response
            self._event(call)

    async def reply(self, tenant_id: str, device_id: str, product_id: str, identifier: str, req: alink.Request) -> None:
        """A device answered ``thing/service/{identifier}`` request ``req.id``."""
        if not req.id.isdigit():
            return
        rid = int(req.id)
        call = await self.calls.find_pending(device_id, rid)
        if call is None:
            log.info("reply from %s to unknown or finished service call %s", device_id, req.id)
            return
        body = self._reply_body(req)
        result = ServiceResult(call, body.get("code"), body.get("data"), body.get("message"))
        fut = self.waiters.get((device_id, rid))
        if result.code == Code.OK and identifier != PROPERTY_SET:
            model = await self.d.model(tenant_id, product_id)
            try:
                model.check_service(identifier, result.data, output=True, where="data")
            except ThingModelError as exc:
                await self._end(call, RpcStatus.FAILED, {"code": int(Code.PARAM_ERROR), "message": exc.message})
                if fut is not None and not fut.done():
                    fut.set_exception(ServiceFailed(f"the device's reply does not fit the thing model: {exc.message}"))
                return
        response = {"code": result.code, "data": result.data, "message": result.message}
        await self._end(call, RpcStatus.SUCCESSFUL, response)
        if fut is not None and not fut.done():
            fut.set_result(result)

    @staticmethod
    def _reply_body(req: alink.Request) -> dict[str, Any]:
        body = req.raw
        code = body.get("code")
        return {
            "code": code if type(code) is int else Code.REQUEST_ERROR,
            "data": body.get("data"),
            "message": body.get("message") if isinstance(body.get("message"), str) else None,
        }

    def _event(self, call: RpcCall) -> None:
        self.d.hub.bus.publish(f"t.{call.tenant_id}.rpc.{call.device_id}", {"type": "rpc", **call.public()})


class TopologyNotifier:
    """Pushes ``thing/topo/change`` to a gateway's Link SDK session when its topology changes
    through someone else (REST, CLI, another dialect), and logs out sub-devices it lost."""

    def __init__(self, dialect: AlinkDialect) -> None:
        self.d = dialect
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="alink-topology")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        from gatehub.transports.mqtt.alink import alink_session

        while True:
            sub = self.d.hub.bus.subscribe("t.*.topology.*", maxsize=100_000)
            async for env in sub:
                data = env.data
                gw = str(data.get("gatewayId"))
                for dev_id in data.get("removed") or ():
                    self.d.logout(gw, dev_id)
                session = self.d.hub.session_for_device(gw)
                st = alink_session(session)
                if session is None or st is None or data.get("source") == f"alink:{session.client_id}":
                    continue
                details = {d["id"]: d for d in data.get("devices") or () if isinstance(d, dict)}
                for status, key in ((0, "added"), (1, "removed")):
                    subs = [
                        {"productKey": details[i]["productId"], "deviceName": details[i]["name"]}
                        for i in data.get(key) or ()
                        if i in details
                    ]
                    if subs:
                        topic = alink.sys_topic(st.product_id, st.device_name, "thing/topo/change")
                        body = alink.downlink(
                            self.d.next_id(), "thing.topo.change", {"status": status, "subList": subs}
                        )
                        session.send(topic, body, 1)
            if sub.overflowed:
                log.warning("topology notices fell behind; gateways pull with thing/topo/get")
