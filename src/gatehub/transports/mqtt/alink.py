"""The Alibaba Alink dialect: Link SDK gateways and devices (seed 001; wire facts in PROTOCOLS.md).

A Link SDK client connects with its signature (``alink_auth``) and speaks ``/sys/{pk}/{dn}/...``
and ``/ext/session/{pk}/{dn}/...``, where pk/dn are its product id and device name. The SDK never
subscribes to replies or downlink: the hub sends them to the session that serves the device
(auto-subscription); a SUBSCRIBE inside the device's own namespace is granted and changes nothing.

- A gateway adds, deletes and reads its sub-devices (``thing/topo/*``, through ``store.topology``)
  and logs them in and out (``combine/login``, ``batch_login`` ... at most 50). After a login the
  sub-device's own topics travel on the gateway's connection. When the gateway's session ends
  (not taken over) its logged-in sub-devices go offline-because-gateway-offline at once.
- Topology changes made elsewhere (REST, CLI of this node, another dialect) are pushed to the
  gateway on ``thing/topo/change`` (status 0 added, 1 deleted).
- Dynamic registration: ``thing/sub/register`` (a pre-registered sub-device's secret, once),
  ``thing/proxy/provisioning/product_register`` (signed with the sub-device product's secret),
  and the ``authType=register`` CONNECT of a device that knows only its product's secret.
- Property and event posts are checked against the product's thing model and stored; the reply
  (200) goes out after the commit, then the PUBACK. Services and property sets come from the
  REST API (``services.things.ThingService``, through ``AlinkDialect.service_route``) and their
  replies return to the caller.

Every reply is ``{"id", "code", "data", "message"}`` on the request topic + ``_reply``; the
codes are listed in docs/alink.md. Work per message runs in the session's order
(``session.serial``); compiled thing models are cached and dropped on ``catalog.product``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import Device, DeviceKind
from gatehub.domain.thingmodel import ThingModel
from gatehub.errors import GatehubError
from gatehub.protocols import alink
from gatehub.protocols.alink import AlinkError, Code
from gatehub.protocols.mqtt import Publish, SendResult, Subscription
from gatehub.services.rpc import AckCallback, Send
from gatehub.store.ingest import WriteBatch
from gatehub.transports.mqtt.alink_auth import REGISTER_METHOD
from gatehub.transports.mqtt.alink_gateway import GatewayHandlers
from gatehub.transports.mqtt.alink_state import AlinkState, alink_session, alink_state
from gatehub.transports.mqtt.alink_things import ThingHandlers, TopologyNotifier
from gatehub.transports.mqtt.dialect import AckResult, Dialect

if TYPE_CHECKING:
    from gatehub.services.context import Services
    from gatehub.transports.mqtt.hub import MqttHub
    from gatehub.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)

NOT_AUTHORIZED = 0x87
REGISTER_TOPIC = "/ext/register"
REGISTER_LINGER = 10.0  # seconds a registration session may stay after it got its secret
GATEWAY_PATHS = ("thing/topo/", "thing/sub/register", "thing/proxy/provisioning/")


class AlinkDialect(Dialect):
    name = "alink"
    prefixes = ("/sys/", "/ext/session/")

    def __init__(self, hub: MqttHub, services: Services) -> None:
        self.hub = hub
        self.store = services.store
        self.ingest = services.ingest
        self.settings = services.settings
        self.models = services.models
        self.thing_service = services.things
        self.takeover = services.takeover
        self.skew_ms = services.settings.alink_timestamp_skew * 1000
        # sub-devices logged in through a gateway: gateway id -> {(pk, dn): sub-device id}, and back
        self.logged: dict[str, dict[tuple[str, str], str]] = {}
        self.via: dict[str, str] = {}
        self._ids = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gateway = GatewayHandlers(self)
        self.things = ThingHandlers(self)
        self.notifier = TopologyNotifier(self)

    async def start(self) -> None:
        self.notifier.start()

    async def stop(self) -> None:
        self.notifier.stop()
        for t in list(self._tasks):
            t.cancel()

    # helpers used by the handler modules ------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("Alink background work failed: %s", t.exception())

        task.add_done_callback(done)

    def next_id(self) -> str:
        """An id for a message the hub sends (topology notices): a number, as Alink wants."""
        self._ids = (self._ids + 1) % 4_000_000_000
        return str(self._ids)

    async def model(self, tenant_id: str, product_id: str) -> ThingModel:
        return await self.models.get(tenant_id, product_id)

    def session_of(self, device_id: str) -> MqttSession | None:
        """The Link SDK session that serves ``device_id``: its own, or its gateway's after a login."""
        s = self.hub.session_for_device(device_id)
        if alink_session(s) is not None:
            return s
        gw = self.via.get(device_id)
        if gw is not None:
            s = self.hub.session_for_device(gw)
            if alink_session(s) is not None:
                return s
        return None

    def service_route(self, device: Device, identifier: str, request_id: int, method: str, params: Any) -> Send | None:
        """The :class:`~gatehub.services.things.ServiceDownlink` of Alink: ``thing/service/{id}``
        to the Link SDK session that serves the device."""
        session = self.session_of(device.id)
        if session is None:
            return None
        topic = alink.sys_topic(device.product_id, device.name, f"thing/service/{identifier}")
        payload = alink.downlink(str(request_id), method, params)

        def send(on_ack: AckCallback) -> bool:
            res = session.send(topic, payload, 1, on_ack=on_ack)
            return res.accepted or res is SendResult.QUEUED

        return send

    def login(self, gateway_id: str, pk: str, dn: str, device_id: str) -> None:
        self.logged.setdefault(gateway_id, {})[(pk, dn)] = device_id
        self.via[device_id] = gateway_id

    def logout(self, gateway_id: str, device_id: str) -> bool:
        subs = self.logged.get(gateway_id)
        if not subs:
            return False
        for key, dev in list(subs.items()):
            if dev == device_id:
                del subs[key]
                if self.via.get(device_id) == gateway_id:
                    del self.via[device_id]
                return True
        return False

    @staticmethod
    def send(session: MqttSession, topic: str, payload: bytes) -> None:
        session.send(topic, payload, 1)

    def reply(self, session: MqttSession, topic: str, rid: str, code: int, data: Any = None, msg: str = "") -> None:
        self.send(session, topic + "_reply", alink.reply(rid, code, data, msg or None))

    # sessions ---------------------------------------------------------------------------------
    async def on_connect(self, session: MqttSession) -> None:
        p = session.principal
        if p is None:
            return
        if p.method == REGISTER_METHOD:
            await self._deliver_registration(session)
            return
        if p.device_id is None:
            return
        dev = await self.store.devices.get(p.tenant_id, p.device_id)
        signed = p.method == "alink" or "|securemode=" in (session.client_id or "")
        session.state()["alink"] = AlinkState(
            p.tenant_id, dev.id, dev.product_id, dev.name, dev.kind is DeviceKind.GATEWAY, signed
        )

    async def _deliver_registration(self, session: MqttSession) -> None:
        names = alink.parse_username(session.connect.username or "") if session.connect else None
        if names is None:
            session.disconnect(NOT_AUTHORIZED)
            return
        dn, pk = names
        try:
            dev = await self.store.provisioning.deliver_secret(None, pk, dn)
        except GatehubError as exc:
            log.info("dynamic registration of %s/%s refused: %s", pk, dn, exc)
            session.disconnect(NOT_AUTHORIZED)
            return
        body = {"productKey": pk, "deviceName": dn, "deviceSecret": dev.secret}
        session.send(REGISTER_TOPIC, orjson.dumps(body), 1)
        log.info("dynamic registration: the secret of %s/%s was delivered", pk, dn)
        self.hub.loop.call_later(REGISTER_LINGER, session.close)

    async def on_disconnect(self, session: MqttSession, *, taken_over: bool) -> None:
        st = alink_state(session)
        if st is None or taken_over or not st.is_gateway:
            return  # a newer session of the same gateway keeps its logged-in sub-devices
        if self.hub.session_for_device(st.device_id) not in (None, session):
            return
        for dev_id in self.logged.pop(st.device_id, {}).values():
            if self.via.get(dev_id) == st.device_id:
                del self.via[dev_id]
        # the hub marks the gateway offline, which takes its online sub-devices to offline-gateway

    def on_subscribe(self, session: MqttSession, sub: Subscription, subscription_id: int | None) -> int:
        st = alink_state(session)
        if st is None:
            return NOT_AUTHORIZED
        st.active = True
        own = (f"/sys/{st.product_id}/{st.device_name}/", f"/ext/session/{st.product_id}/{st.device_name}/")
        f = sub.topic_filter
        if f.startswith(own) or any(f.startswith(f"/sys/{pk}/{dn}/") for pk, dn in self.logged.get(st.device_id, {})):
            return min(sub.qos, 1)  # granted; delivery is automatic anyway
        return NOT_AUTHORIZED

    def on_unsubscribe(self, session: MqttSession, topic_filter: str) -> int:
        return 0

    # inbound ----------------------------------------------------------------------------------
    def on_publish(self, session: MqttSession, packet: Publish) -> AckResult:
        st = alink_state(session)
        if st is None:
            return NOT_AUTHORIZED if packet.qos else None
        st.active = True
        topic = alink.parse_topic(packet.topic)
        if topic is None:
            log.info("%s: unparsable Alink topic %s", session.client_id, packet.topic)
            return 0 if packet.qos else None
        return self._after(session.serial(self._handle(session, st, topic, packet.topic, packet.payload)))

    @staticmethod
    async def _after(fut: asyncio.Future[Any]) -> int:
        res = await fut
        if isinstance(res, asyncio.Future):
            await res  # a commit started by the job: the PUBACK waits for it
        return 0

    async def _handle(self, session: MqttSession, st: AlinkState, t: alink.Topic, raw: str, payload: bytes) -> Any:
        is_reply = t.path.endswith("_reply")
        try:
            req = alink.parse_request(payload)
        except AlinkError as exc:
            if not is_reply:
                self.reply(session, raw, alink.request_id_of(payload), exc.code, None, exc.message)
            return 0
        try:
            return await self._dispatch(session, st, t, raw, req, is_reply)
        except AlinkError as exc:
            self.reply(session, raw, req.id, exc.code, None, exc.message)
        except GatehubError as exc:
            self.reply(session, raw, req.id, Code.PARAM_ERROR, None, exc.message)
        except Exception:
            log.exception("%s: %s failed", session.client_id, raw)
            self.reply(session, raw, req.id, Code.INTERNAL_ERROR, None, "internal error")
        return 0

    async def _dispatch(
        self, session: MqttSession, st: AlinkState, t: alink.Topic, raw: str, req: alink.Request, is_reply: bool
    ) -> Any:
        own = t.product_key == st.product_id and t.device_name == st.device_name
        if t.family == "session":
            if not own or not st.is_gateway:
                raise AlinkError(Code.TOPIC_ERROR, "combine/* topics are the gateway's own")
            return await self.gateway.session(session, st, t.path, raw, req)
        path = t.path
        if path.startswith(GATEWAY_PATHS):
            if not own or not st.is_gateway:
                raise AlinkError(Code.TOPIC_ERROR, f"{path} is served to a gateway on its own topic")
            if path == "thing/topo/change_reply":
                return 0
            return await self.gateway.request(session, st, path, raw, req)
        if own:
            device_id, product_id = st.device_id, st.product_id
        else:
            sub = self.logged.get(st.device_id, {}).get((t.product_key, t.device_name))
            if sub is None:
                if is_reply:
                    return 0
                raise AlinkError(
                    Code.NOT_LOGGED_IN,
                    f"{t.product_key}/{t.device_name} is not logged in through this gateway (combine/login)",
                )
            device_id, product_id = sub, t.product_key
        return await self.things.handle(session, st, device_id, product_id, path, raw, req, is_reply)

    # commits ----------------------------------------------------------------------------------
    def commit(self, batch: WriteBatch) -> asyncio.Future[Any]:
        """Hand ``batch`` to the ingest writer without waiting; the future ends at its commit."""
        return self.ingest.commit(batch)

    def reply_after(
        self, fut: asyncio.Future[Any], session: MqttSession, raw: str, rid: str, data: Any = None
    ) -> asyncio.Future[Any]:
        """Reply 200 once ``fut`` (a commit) is done, 500 if it failed; returns ``fut``."""

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                self.reply(session, raw, rid, Code.INTERNAL_ERROR, None, "the data could not be stored")
            else:
                self.reply(session, raw, rid, Code.OK, data)

        fut.add_done_callback(done)
        return fut


__all__ = ["AlinkDialect", "AlinkState", "alink_state"]
