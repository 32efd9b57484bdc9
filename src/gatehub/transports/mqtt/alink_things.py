"""Alink thing-model traffic: property and event posts (checked, stored), service invocation and
property set from the REST API (the reply returns to the caller), topology change notices.

- ``thing/event/property/post`` params ``{id: value}`` or ``{id: {"value", "time"}}``: every value
  is checked against the product's thing model; a post with any invalid field is refused whole
  (460, the message names the field) and stores nothing; a valid one is stored as telemetry
  (key: the property's ``key``, else its identifier) and answered 200 after the commit.
- ``thing/event/{id}/post`` params ``{"value": {...}, "time"?}``: checked against the event's
  output parameters, written to the event log (type ``event``) and answered after the commit.
- ``thing/deviceinfo/update`` ``[{attrKey, attrValue}]``: stored as client attributes.
- Services: ``services.things.ThingService.call`` records the call (``rpc_calls``, method
  ``thing.service.{id}``) and sends ``thing/service/{id}`` through the dialect's downlink
  (``alink.AlinkDialect.service_route``) to the session that serves the device (its own, or its
  gateway's after a login); ``thing/service/{id}_reply`` comes back here and goes to the service,
  which checks its data against the service's output parameters. Property set is the service
  ``property/set``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.telemetry import check_key, now_ms, row
from gatehub.domain.thingmodel import ThingModelError
from gatehub.errors import InvalidInput
from gatehub.protocols import alink
from gatehub.protocols.alink import AlinkError, Code
from gatehub.store.ingest import WriteBatch
from gatehub.transports.mqtt.alink_state import alink_session

if TYPE_CHECKING:
    from gatehub.transports.mqtt.alink_state import AlinkCore, AlinkState
    from gatehub.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)


def _model_error(exc: ThingModelError) -> AlinkError:
    return AlinkError(Code.PARAM_ERROR, exc.message)


def _reply_body(req: alink.Request) -> tuple[int, Any, str | None]:
    """The code, data and message of a ``thing/service/{id}_reply`` (a code that is not a number
    counts as a request error)."""
    body = req.raw
    code = body.get("code")
    message = body.get("message")
    return (
        code if type(code) is int else int(Code.REQUEST_ERROR),
        body.get("data"),
        message if isinstance(message, str) else None,
    )


class ThingHandlers:
    def __init__(self, dialect: AlinkCore) -> None:
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
            if path.startswith("thing/service/") and req.id.isdigit():
                code, data, message = _reply_body(req)
                await self.d.thing_service.reply(
                    st.tenant_id, device_id, product_id, path[14:-6], int(req.id), code, data, message
                )
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


class TopologyNotifier:
    """Pushes ``thing/topo/change`` to a gateway's Link SDK session when its topology changes
    through someone else (REST, CLI, another dialect), and logs out sub-devices it lost."""

    def __init__(self, dialect: AlinkCore) -> None:
        self.d = dialect
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="alink-topology")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
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
