"""The ThingsBoard gateway and device MQTT API (seed 004; wire facts in PROTOCOLS.md).

A gateway authenticates with its access token as user name (or its certificate on the mTLS
listener) and speaks ``v1/gateway/*`` for the sub-devices behind it and ``v1/devices/me/*`` for
itself; a direct device speaks only ``v1/devices/me/*``.

Hot path (``v1/gateway/telemetry``): parse once with orjson, map each sub-device name to its id
from the session's cache, flatten straight to rows, hand the batch to the ingest writer without
waiting and let the PUBACK wait for the commit. A name the cache does not know (a device the
gateway never announced: implicit connect) sends the whole message through ``session.serial``,
which looks the device up or creates it, in order with everything else of that session.

Bad shapes are refused per device (ThingsBoard's behaviour): telemetry of a device must be a
list, attributes an object; the other devices of the same message are stored. Over the rate
limit a device's part of the message is refused and the gateway gets ``v1/gateway/disconnect``
``{"device": name, "reason": 150}``; what was accepted is stored and only then acknowledged.

Downlink (RPC, shared attribute pushes) lives in ``thingsboard_downlink``; the messages the hub
sends go only to the client they are for, never back to their sender (no broker echo).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import DeviceKind, NodeType, Presence
from gatehub.domain.telemetry import flatten_points, now_ms
from gatehub.errors import AlreadyExists, GatehubError, InvalidInput, NotFound, StorageError, Unavailable
from gatehub.protocols.mqtt import Publish, Subscription
from gatehub.protocols.mqtt.topics import topic_matches
from gatehub.store import WriteBatch
from gatehub.transports.mqtt.dialect import AckResult, Dialect
from gatehub.transports.mqtt.thingsboard_downlink import TbDownlink
from gatehub.transports.mqtt.thingsboard_limits import RateLimits
from gatehub.transports.mqtt.thingsboard_state import (
    GW_ATTRIBUTES,
    GW_RPC,
    ME_ATTRIBUTES,
    ME_RPC_REQUEST,
    ME_RPC_RESPONSE,
    TbState,
    attribute_rows,
    tb_state,
)

if TYPE_CHECKING:
    from gatehub.services.context import Services
    from gatehub.transports.mqtt.auth import MqttPrincipal
    from gatehub.transports.mqtt.hub import MqttHub
    from gatehub.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)

GW = "v1/gateway/"
ME = "v1/devices/me/"
GW_TELEMETRY = "v1/gateway/telemetry"
GW_ATTR_REQUEST = "v1/gateway/attributes/request"
GW_ATTR_RESPONSE = "v1/gateway/attributes/response"
GW_CONNECT = "v1/gateway/connect"
GW_DISCONNECT = "v1/gateway/disconnect"
GW_CLAIM = "v1/gateway/claim"
ME_TELEMETRY = "v1/devices/me/telemetry"
ME_ATTR_REQUEST = "v1/devices/me/attributes/request/"
ME_ATTR_RESPONSE = "v1/devices/me/attributes/response/"
ME_CLAIM = "v1/devices/me/claim"

OK = 0
NOT_AUTHORIZED = 0x87
BAD_PAYLOAD = 0x99
RATE_TOO_HIGH = 0x97  # quota exceeded: MQTT 5 has no 0x96 (message rate too high) for PUBACK
REASON_RATE_LIMIT = 150  # what ThingsBoard puts in a sub-device disconnect when a rate limit is hit
_PRODUCT_RE = re.compile(r"[^A-Za-z0-9_-]")


def _done(fut: asyncio.Future[Any]) -> int:
    return OK


def _ack_when_committed(fut: asyncio.Future[Any]) -> asyncio.Future[int]:
    """A future resolving to reason code 0 once ``fut`` (a commit) is done, or failing with it."""
    out: asyncio.Future[int] = fut.get_loop().create_future()

    def relay(f: asyncio.Future[Any]) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
        elif (exc := f.exception()) is not None:
            out.set_exception(exc)
        else:
            out.set_result(OK)

    fut.add_done_callback(relay)
    return out


class ThingsBoardDialect(Dialect):
    name = "thingsboard"
    prefixes = (GW, ME)

    def __init__(self, hub: MqttHub, services: Services) -> None:
        s = services.settings
        self.hub = hub
        self.services = services
        self.store = services.store
        self.writer = services.ingest
        self.settings = s
        self.rpc = services.rpc
        self.attributes = services.attributes
        self.claims_service = services.claims
        self.takeover = services.takeover
        self.limits = RateLimits(s.tb_rate_per_device, s.tb_rate_per_tenant, s.tb_rate_burst)
        self.products: dict[tuple[str, str], str] = {}
        self.left_at: dict[str, int] = {}  # device id -> when its last session ended (this process)
        # the ThingsBoard side of the RPC and shared-attribute ports (registered by the builder)
        self.downlink = TbDownlink(hub, services, self.limits)
        self.ext: Any = None  # thingsboard_ext.TbExtension: the gatehub extension topics
        self._catalog_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.ext is not None:
            await self.ext.start()
        self._catalog_task = asyncio.create_task(self._watch_catalog(), name="tb-catalog")

    async def stop(self) -> None:
        if self._catalog_task is not None:
            self._catalog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._catalog_task
            self._catalog_task = None
        if self.ext is not None:
            await self.ext.stop()

    async def _watch_catalog(self) -> None:
        """Drop the cached type -> product entries of a product that changed or was deleted
        (``catalog.product`` from the store), so the next connect of that type looks it up again
        (and creates it again if it is gone)."""
        bus = self.hub.bus
        while True:
            sub = bus.subscribe("catalog.product", maxsize=10_000)
            async for env in sub:
                self.forget_product(str(env.data.get("tenantId")), str(env.data.get("productId")))
            self.products.clear()  # fell behind: forget everything
            if self.ext is not None:
                self.ext.forget_products()

    def forget_product(self, tenant_id: str, product_id: str) -> None:
        for key in [k for k, v in self.products.items() if v == product_id and k[0] == tenant_id]:
            del self.products[key]
        if self.ext is not None:
            self.ext.forget_products(tenant_id, product_id)

    # sessions ---------------------------------------------------------------------------------
    async def on_disconnect(self, session: MqttSession, *, taken_over: bool) -> None:
        p = session.principal
        if p is not None and p.device_id is not None and not taken_over:
            self.left_at[p.device_id] = now_ms()

    def on_subscribe(self, session: MqttSession, sub: Subscription, subscription_id: int | None) -> int:
        p = session.principal
        if p is None or p.device_id is None:
            return NOT_AUTHORIZED
        if sub.topic_filter.startswith(GW) and p.device_kind != DeviceKind.GATEWAY.value:
            return NOT_AUTHORIZED
        st = tb_state(session)
        st.filters.add(sub.topic_filter)
        before = (st.gw_rpc, st.gw_attrs, st.me_rpc, st.me_attrs)
        self._wants(st)
        if st.gw_rpc and not before[0] and st.names:
            self.background(session, self.rpc.deliver_pending(list(st.names)))
        if st.gw_attrs and not before[1] and st.since:
            waiting, st.since = st.since, {}
            for dev_id, since in waiting.items():
                self.background(session, self.downlink.push_missed(session, dev_id, since))
        if st.me_rpc and not before[2]:
            self.background(session, self.rpc.deliver_pending([p.device_id]))
        if st.me_attrs and not before[3]:
            since = self.left_at.get(p.device_id, 0)
            self.background(session, self.downlink.push_missed(session, p.device_id, since))
        return min(sub.qos, 1)

    def on_unsubscribe(self, session: MqttSession, topic_filter: str) -> int:
        st = tb_state(session)
        if topic_filter not in st.filters:
            return 0x11
        st.filters.discard(topic_filter)
        self._wants(st)
        return OK

    @staticmethod
    def _wants(st: TbState) -> None:
        def any_match(topic: str) -> bool:
            return any(topic_matches(f, topic) for f in st.filters)

        st.gw_rpc = any_match(GW_RPC)
        st.gw_attrs = any_match(GW_ATTRIBUTES)
        st.me_rpc = any_match(ME_RPC_REQUEST + "1")
        st.me_attrs = any_match(ME_ATTRIBUTES)

    def background(self, session: MqttSession, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the session's order; failures are logged, nobody waits for it."""

        def report(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("ThingsBoard background work for %s failed: %s", session.client_id, f.exception())

        session.serial(coro).add_done_callback(report)

    # inbound ----------------------------------------------------------------------------------
    def on_publish(self, session: MqttSession, packet: Publish) -> AckResult:
        p = session.principal
        if p is None or p.device_id is None:
            return NOT_AUTHORIZED if packet.qos else None
        topic = packet.topic
        try:
            if topic.startswith(GW):
                if p.device_kind != DeviceKind.GATEWAY.value:
                    return NOT_AUTHORIZED
                return self._gateway(session, p, topic, packet.payload)
            return self._device(session, p, topic, packet.payload)
        except (orjson.JSONDecodeError, InvalidInput) as exc:
            log.info("bad %s from %s: %s", topic, session.client_id, exc)
            return BAD_PAYLOAD

    def _gateway(self, session: MqttSession, p: MqttPrincipal, topic: str, payload: bytes) -> AckResult:
        st = tb_state(session)
        if self.ext is not None and topic in self.ext.topics:
            return self.ext.on_publish(session, st, p, topic, payload)  # type: ignore[no-any-return]
        if topic in (GW_TELEMETRY, GW_ATTRIBUTES):
            body = orjson.loads(payload)
            if type(body) is not dict:
                raise InvalidInput("the payload must be an object keyed by device name")
            telemetry = topic == GW_TELEMETRY
            now = now_ms()
            if st.busy or not body.keys() <= st.devices.keys():
                return self._later(session, st, self._data_slow(session, st, p, body, now, telemetry))
            return self._submit(self._build(session, st, p, body, now, telemetry))
        body = orjson.loads(payload)
        if type(body) is not dict:
            raise InvalidInput("the payload must be an object")
        if topic == GW_CONNECT:
            return self._later(session, st, self._connect(session, st, p, body))
        if topic == GW_DISCONNECT:
            return self._later(session, st, self._disconnect(session, st, p, body))
        if topic == GW_ATTR_REQUEST:
            return self._later(session, st, self._gw_attr_request(session, st, p, body))
        if topic == GW_RPC:
            return self._later(session, st, self._gw_rpc_reply(session, st, p, body))
        if topic == GW_CLAIM:
            return self._later(session, st, self._gw_claim(session, st, p, body))
        log.info("%s published to unknown topic %s", session.client_id, topic)
        return OK

    def _device(self, session: MqttSession, p: MqttPrincipal, topic: str, payload: bytes) -> AckResult:
        assert p.device_id is not None
        st = tb_state(session)
        if topic == ME_TELEMETRY:
            batch = WriteBatch(p.tenant_id)
            flatten_points(p.device_id, orjson.loads(payload), now_ms(), batch.telemetry)
            if not self._allowed(p, p.device_id, len(batch.telemetry)):
                return RATE_TOO_HIGH
            return self._submit(batch if batch.telemetry else None)
        if topic == ME_ATTRIBUTES:
            batch = WriteBatch(p.tenant_id)
            attribute_rows(p.device_id, "client", orjson.loads(payload), now_ms(), batch.attributes)
            if not self._allowed(p, p.device_id, len(batch.attributes)):
                return RATE_TOO_HIGH
            return self._submit(batch if batch.attributes else None)
        if topic.startswith(ME_ATTR_REQUEST):
            rid = topic[len(ME_ATTR_REQUEST) :]
            body = orjson.loads(payload) if payload else {}
            return self._later(session, st, self._me_attr_request(session, p, rid, body))
        if topic.startswith(ME_RPC_REQUEST):
            rid = topic[len(ME_RPC_REQUEST) :]
            return self._later(
                session, st, self.downlink.client_call(session, p.tenant_id, p.device_id, rid, orjson.loads(payload))
            )
        if topic.startswith(ME_RPC_RESPONSE):
            rid = topic[len(ME_RPC_RESPONSE) :]
            data = orjson.loads(payload) if payload else None
            return self._later(session, st, self._me_rpc_reply(p.device_id, rid, data))
        if topic == ME_CLAIM:
            body = orjson.loads(payload) if payload else {}
            return self._later(session, st, self._open_claim(p.device_id, body))
        log.info("%s published to unknown topic %s", session.client_id, topic)
        return OK

    # ack plumbing -----------------------------------------------------------------------------
    def _submit(self, batch: WriteBatch | None) -> AckResult:
        if batch is None:
            return OK
        try:
            return _ack_when_committed(self.writer.submit_nowait(batch))
        except asyncio.QueueFull:
            return self._write(batch)

    async def _write(self, batch: WriteBatch) -> int:
        await self.writer.write(batch)
        return OK

    def _later(self, session: MqttSession, st: TbState, coro: Coroutine[Any, Any, Any]) -> Awaitable[int]:
        """Run ``coro`` in the session's order; the ack waits for it (and for the commit of a
        batch it returns). Messages that arrive meanwhile queue behind it."""
        st.busy += 1

        async def job() -> Any:
            try:
                res = await coro
                if isinstance(res, WriteBatch):
                    res = self._submit(res)
                return res
            finally:
                st.busy -= 1

        return self._after(session.serial(job()))

    @staticmethod
    async def _after(fut: asyncio.Future[Any]) -> int:
        res = await fut
        if res is None:
            return OK
        if isinstance(res, int):
            return res
        code = await res  # a commit started by the job
        return code if isinstance(code, int) else OK

    def _allowed(self, p: MqttPrincipal, device_id: str, n: int) -> bool:
        return not self.limits.enabled or not n or self.limits.allow(p.tenant_id, device_id, n, time.monotonic())

    # telemetry and attributes of sub-devices --------------------------------------------------
    def _build(
        self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any], now: int, telemetry: bool
    ) -> WriteBatch | None:
        batch = WriteBatch(p.tenant_id)
        out: list[Any] = batch.telemetry if telemetry else batch.attributes
        limited = self.limits.enabled
        spans: list[tuple[str, str, int, int]] = []  # (name, device, start, end) of each device's rows
        devices = st.devices
        for name, value in body.items():
            dev = devices.get(name)
            if dev is None:
                continue  # refused when it was resolved (logged there)
            start = len(out)
            try:
                if telemetry:
                    if type(value) is not list:
                        raise InvalidInput("telemetry of a device must be a list")
                    flatten_points(dev, value, now, out)
                else:
                    attribute_rows(dev, "client", value, now, out)
            except InvalidInput as exc:
                log.info("%s: data of %r refused: %s", session.client_id, name, exc)
                continue
            if limited:
                spans.append((name, dev, start, len(out)))
        if spans:
            refused = self.limits.admit(p.tenant_id, [(d, e - b) for _n, d, b, e in spans], time.monotonic())
            for i in reversed(refused):  # from the end: earlier spans keep their offsets
                _name, _dev, start, end = spans[i]
                del out[start:end]
            for i in refused:
                name, dev, _start, _end = spans[i]
                self._rate_limited(session, st, p, name, dev)
        return batch if out else None

    async def _data_slow(
        self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any], now: int, telemetry: bool
    ) -> WriteBatch | None:
        for name in body:
            if name not in st.devices:
                await self.resolve(session, st, p, name, None)
        return self._build(session, st, p, body, now, telemetry)

    def _rate_limited(self, session: MqttSession, st: TbState, p: MqttPrincipal, name: str, dev: str) -> None:
        log.info(
            "%s: %r is over its rate limit; disconnecting it (reason %d)", session.client_id, name, REASON_RATE_LIMIT
        )
        st.forget(dev)
        session.send(GW_DISCONNECT, orjson.dumps({"device": name, "reason": REASON_RATE_LIMIT}), 1)
        self.background(session, self._offline(p.tenant_id, dev))

    async def _offline(self, tenant_id: str, device_id: str) -> None:
        await self.store.devices.set_presence(tenant_id, device_id, Presence.OFFLINE, cascade=False)

    # sub-device registry ----------------------------------------------------------------------
    async def resolve(
        self, session: MqttSession, st: TbState, p: MqttPrincipal, name: Any, type_: Any, *, retry: bool = False
    ) -> str | None:
        """The id of sub-device ``name`` of this gateway, connecting it (and creating it, or
        moving it from another gateway) if needed. None when the name cannot be this gateway's.

        A refused name is logged and remembered so that data for it does not reach the database
        on every message; an explicit connect (``retry``) always tries it again (what refused it,
        a deleted product or a device of another kind, may have changed since). A sub-device of
        another gateway is taken over only as ``subdevice_takeover`` allows (services.takeover);
        a refused takeover is remembered with the gateway that keeps the device, and tried
        again once that gateway is offline."""
        if not isinstance(name, str) or not name:
            return None
        dev_id = st.devices.get(name)
        if dev_id is not None:
            return dev_id
        keeper = st.held.get(name)
        if keeper is not None and not retry and self.takeover.still_refused(keeper):
            return None
        if name in st.bad and not retry:
            return None
        gw = p.device_id
        assert gw is not None
        tenant = p.tenant_id
        since: int | None = None
        try:
            dev = await self.store.devices.find_by_name(tenant, name)
            if dev is None:
                dev = await self._create_sub(tenant, gw, name, type_ if isinstance(type_, str) and type_ else "default")
            else:
                if dev.kind is not DeviceKind.SUBDEVICE:
                    raise InvalidInput(f"{name!r} is a {dev.kind.value}, not a sub-device")
                since = dev.last_seen or 0
                if dev.parent_id != gw:
                    old = dev.parent_id
                    via = f"thingsboard:{session.client_id}"
                    if old is not None and self.takeover.check(dev, gw, via=via, quiet=name in st.held) is not None:
                        if len(st.held) < 10_000:
                            st.held[name] = old
                        return None
                    await self.store.devices.set_parent(tenant, dev.id, gw, source=via)
                    if old is not None:
                        self.takeover.taken_over(dev, old, gw, via=via)
                        other = self.hub.session_for_device(old)
                        if other is not None:
                            tb_state(other).forget(dev.id)
            await self.store.devices.set_presence(tenant, dev.id, Presence.ONLINE, cascade=False)
        except (StorageError, Unavailable):
            # the hub could not do it now: the whole message fails (PUBACK 0x80) and the gateway
            # sends it again, rather than its data for this device being acknowledged and dropped
            raise
        except GatehubError as exc:
            log.warning("%s: sub-device %r refused: %s", session.client_id, name, exc)
            if len(st.bad) < 10_000:
                st.bad.add(name)
            return None
        st.bad.discard(name)
        st.held.pop(name, None)
        st.devices[name] = dev.id
        st.names[dev.id] = name
        self._connected(session, st, dev.id, since)
        return dev.id

    def _connected(self, session: MqttSession, st: TbState, dev_id: str, since: int | None) -> None:
        """A sub-device joined this session: what waited for it goes out."""
        if st.gw_rpc:
            self.background(session, self.rpc.deliver_pending([dev_id]))
        if since is not None:
            if st.gw_attrs:
                self.background(session, self.downlink.push_missed(session, dev_id, since))
            else:
                st.since[dev_id] = since

    async def _create_sub(self, tenant: str, gw: str, name: str, type_: str) -> Any:
        product = await self._product(tenant, type_)
        try:
            try:
                return await self.store.devices.create(tenant, name, product, parent_id=gw)
            except NotFound:
                # the cached product was deleted and its event is not here yet: look it up again
                self.forget_product(tenant, product)
                product = await self._product(tenant, type_)
                return await self.store.devices.create(tenant, name, product, parent_id=gw)
        except AlreadyExists:
            dev = await self.store.devices.find_by_name(tenant, name)
            if dev is not None:
                return dev
            # the id derived from the name is taken (another name that maps to the same id)
            base = _PRODUCT_RE.sub("_", name)[:90]
            return await self.store.devices.create(
                tenant, name, product, parent_id=gw, device_id=f"{product[:24]}_{base}_{secrets.token_hex(4)}"
            )

    async def _product(self, tenant: str, type_: str) -> str:
        """The sub-device product named ``type_`` in this tenant, created when missing."""
        cached = self.products.get((tenant, type_))
        if cached is not None:
            return cached
        name = type_[:255]
        prod = await self.store.catalog.find_product_by_name(tenant, name)
        if prod is not None and prod.node_type is not NodeType.SUBDEVICE:
            name = f"{name[:240]} (sub-device)"
            prod = await self.store.catalog.find_product_by_name(tenant, name)
        if prod is None:
            slug = _PRODUCT_RE.sub("_", type_)[:80] or "type"
            digest = hashlib.sha1(f"{tenant}/{name}".encode()).hexdigest()[:10]
            for pid in (slug, f"{slug}-{digest}"):
                with contextlib.suppress(AlreadyExists):
                    prod = await self.store.catalog.create_product(tenant, pid, name, NodeType.SUBDEVICE)
                    break
                prod = await self.store.catalog.find_product_by_name(tenant, name)  # created meanwhile?
                if prod is not None:
                    break
            if prod is None:
                raise InvalidInput(f"no product can be made for device type {type_!r}")
        self.products[(tenant, type_)] = prod.id
        return prod.id

    async def _connect(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any]) -> int:
        name = body.get("device")
        if not isinstance(name, str) or not name:
            log.info("%s: connect without a device name", session.client_id)
            return BAD_PAYLOAD
        await self.resolve(session, st, p, name, body.get("type"), retry=True)  # a refusal is logged there
        return OK

    async def _disconnect(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any]) -> int:
        name = body.get("device")
        if not isinstance(name, str) or not name:
            return BAD_PAYLOAD
        dev_id = st.devices.get(name)
        if dev_id is None:
            dev = await self.store.devices.find_by_name(p.tenant_id, name)
            if dev is None or dev.parent_id != p.device_id:
                return OK
            dev_id = dev.id
        st.forget(dev_id)
        await self.store.devices.set_presence(p.tenant_id, dev_id, Presence.OFFLINE, cascade=False)
        return OK

    # requests ---------------------------------------------------------------------------------
    async def _gw_attr_request(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any]) -> int:
        rid = body.get("id")
        name = body.get("device")
        dev_id = await self.resolve(session, st, p, name, None)
        if dev_id is None:
            return OK
        single = "key" in body and "keys" not in body
        raw = body.get("key") if single else body.get("keys")
        keys = (
            [raw] if isinstance(raw, str) else [k for k in raw if isinstance(k, str)] if isinstance(raw, list) else []
        )
        scope = "client" if body.get("client") is True else "shared"
        values = await self.attributes.read(dev_id, scope, keys or None)
        out: dict[str, Any] = {"id": rid, "device": name}
        if single or len(keys) == 1:
            if keys and keys[0] in values:
                out["value"] = values[keys[0]]
        else:
            out["values"] = values
        session.send(GW_ATTR_RESPONSE, orjson.dumps(out), 1)
        return OK

    async def _me_attr_request(self, session: MqttSession, p: MqttPrincipal, rid: str, body: Any) -> int:
        assert p.device_id is not None
        if not isinstance(body, dict):
            body = {}
        out: dict[str, Any] = {}
        client, shared = body.get("clientKeys"), body.get("sharedKeys")
        for scope, raw in (("client", client), ("shared", shared)):
            if (client is None and shared is None) or raw is not None:
                keys = [k.strip() for k in str(raw).split(",") if k.strip()] if raw is not None else None
                out[scope] = await self.attributes.read(p.device_id, scope, keys)
        session.send(ME_ATTR_RESPONSE + rid, orjson.dumps(out), 1)
        return OK

    async def _gw_rpc_reply(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any]) -> int:
        """A reply never takes a sub-device over: one of another gateway is looked up by name and
        the RPC service counts the reply only if the call went out through this gateway."""
        name, rid = body.get("device"), body.get("id")
        if not isinstance(name, str) or not name or type(rid) is not int:
            return OK
        dev_id = st.devices.get(name)
        if dev_id is None:
            dev = await self.store.devices.find_by_name(p.tenant_id, name)
            if dev is None:
                return OK
            if dev.parent_id in (None, p.device_id):
                dev_id = await self.resolve(session, st, p, name, None)  # connected again (a new session)
            else:
                dev_id = dev.id
        if dev_id is None:
            return OK
        assert p.device_id is not None
        await self.rpc.reply(dev_id, rid, body.get("data"), via=p.device_id)
        return OK

    async def _me_rpc_reply(self, device_id: str, rid: str, data: Any) -> int:
        if rid.isdigit():
            await self.rpc.reply(device_id, int(rid), data, via=device_id)
        return OK

    async def _gw_claim(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: dict[str, Any]) -> int:
        for name, req in body.items():
            dev_id = await self.resolve(session, st, p, name, None)
            if dev_id is not None:
                await self._open_claim(dev_id, req if isinstance(req, dict) else {})
        return OK

    async def _open_claim(self, device_id: str, req: Any) -> int:
        secret = req.get("secretKey", "") if isinstance(req, dict) else ""
        duration = req.get("durationMs") if isinstance(req, dict) else None
        try:
            await self.claims_service.open(
                device_id,
                secret if isinstance(secret, str) else str(secret),
                duration if type(duration) is int else None,
            )
        except GatehubError as exc:
            log.info("claim of %s not opened: %s", device_id, exc)
        return OK
