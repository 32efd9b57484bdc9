"""gatehub extensions of the ThingsBoard gateway API, version 1 (docs/thingsboard.md, "gatehub
extensions"): what a gateway needs to reconcile its topology and to send without loss.

- ``v1/gateway/topology/request`` -> ``.../response``: the gateway's sub-devices now, with the
  topology version; ``topology/add`` and ``topology/delete`` (each with a ``.../response``) put a
  sub-device in or take it out of the gateway's topology and say per device whether it worked
  (a sub-device of another gateway moves here only as ``subdevice_takeover`` allows: by default
  not while that gateway is online, ``409 other_gateway`` for that device);
  ``topology/change`` is pushed when the hub changes the topology (a sub-device deleted,
  detached or moved on the hub side).
- ``v1/gateway/register`` -> ``.../response``: dynamic registration of a pre-registered
  (whitelisted) sub-device, signed with its product secret; the device secret is delivered once.
- ``v1/gateway/batch``: telemetry and client attributes of many sub-devices with a per-gateway
  ``epoch`` and ``seq``. The PUBACK is the answer and leaves after commit; a batch whose
  sequence number the hub has already committed is acknowledged without being stored again
  (``store/ingest.py``), so a gateway can resend everything it has no PUBACK for.

Requests carry an ``id`` (echoed) and may carry ``"v": 1``; answers carry ``"v"``, ``"code"``
(200, or 4xx/5xx with ``"error"`` and ``"message"``). Everything runs in the session's order
with the rest of the ThingsBoard API.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import Device, DeviceKind, NodeType, Presence
from gatehub.domain.telemetry import flatten_points, now_ms
from gatehub.errors import AlreadyExists, Conflict, GatehubError, InvalidInput, NotFound
from gatehub.protocols.tbext import (
    BATCH,
    EXT_VERSION,
    MAX_PER_REQUEST,
    REGISTER,
    REGISTER_RESPONSE,
    SEQ_MAX,
    TOPO_ADD,
    TOPO_ADD_RESPONSE,
    TOPO_CHANGE,
    TOPO_DELETE,
    TOPO_DELETE_RESPONSE,
    TOPO_REQUEST,
    TOPO_RESPONSE,
    register_sign,
)
from gatehub.store import WriteBatch
from gatehub.store.ingest import SequenceHeld
from gatehub.transports.mqtt.dialect import AckResult
from gatehub.transports.mqtt.thingsboard_state import TbState, attribute_rows, tb_state

if TYPE_CHECKING:
    from gatehub.transports.mqtt.auth import MqttPrincipal
    from gatehub.transports.mqtt.session import MqttSession
    from gatehub.transports.mqtt.thingsboard import ThingsBoardDialect

log = logging.getLogger(__name__)

TOPICS = frozenset({TOPO_REQUEST, TOPO_ADD, TOPO_DELETE, REGISTER, BATCH})

OK = 0
UNSPECIFIED = 0x80
QUOTA_EXCEEDED = 0x97  # PUBACK has no 0x96 (message rate too high); 0x97 is its rate refusal
BAD_PAYLOAD = 0x99


class ExtState:
    """What one gateway session of the extension knows (``session.state()["tbx"]``)."""

    __slots__ = ("gone", "ids", "names")

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # name -> id of this gateway's sub-devices (batch path)
        self.names: dict[str, str] = {}  # id -> name, of sub-devices this session was told about
        self.gone: set[str] = set()  # names the hub took from this gateway during this session

    def learn(self, dev_id: str, name: str) -> None:
        self.ids[name] = dev_id
        self.names[dev_id] = name

    def forget(self, dev_id: str) -> str | None:
        name = self.names.pop(dev_id, None)
        if name is not None and self.ids.get(name) == dev_id:
            del self.ids[name]
        return name


def ext_state(session: MqttSession) -> ExtState:
    xs = session.state().get("tbx")
    if xs is None:
        xs = session.state()["tbx"] = ExtState()
    return xs


class TakeoverRefused(Conflict):
    """The sub-device belongs to another gateway, which keeps it (``subdevice_takeover``)."""

    def __init__(self, message: str, keeper: str) -> None:
        super().__init__(message)
        self.keeper = keeper


def _fail(name: Any, code: int, error: str, message: str) -> dict[str, Any]:
    return {"device": name, "code": code, "error": error, "message": message}


class TbExtension:
    def __init__(self, dialect: ThingsBoardDialect) -> None:
        self.d = dialect
        self.store = dialect.store
        self.writer = dialect.writer
        self.topics = TOPICS
        self._product_names: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="tb-topology-change")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    # dispatch ---------------------------------------------------------------------------------
    def on_publish(self, session: MqttSession, st: TbState, p: MqttPrincipal, topic: str, payload: bytes) -> AckResult:
        if topic == BATCH:
            return self._batch(session, st, p, payload)
        body = orjson.loads(payload) if payload else {}
        if type(body) is not dict:
            raise InvalidInput("the payload must be an object")
        rid = body.get("id")
        answer = {TOPO_REQUEST: TOPO_RESPONSE, TOPO_ADD: TOPO_ADD_RESPONSE, TOPO_DELETE: TOPO_DELETE_RESPONSE}.get(
            topic, REGISTER_RESPONSE
        )
        version = body.get("v", EXT_VERSION)
        if version != EXT_VERSION:
            msg = f"extension version {version!r} is not supported; this hub speaks version {EXT_VERSION}"
            self._answer(session, answer, rid, {"code": 400, "error": "unsupported_version", "message": msg})
            return OK
        handler = {TOPO_REQUEST: self._topology, TOPO_ADD: self._add, TOPO_DELETE: self._delete}.get(
            topic, self._register
        )
        return self._in_order(session, st, self._reply(session, answer, rid, handler(session, st, p, body)))

    def _in_order(self, session: MqttSession, st: TbState, coro: Coroutine[Any, Any, Any]) -> AckResult:
        """Run ``coro`` in the session's order (TbState.busy makes later messages queue behind)."""
        st.busy += 1

        async def job() -> Any:
            try:
                return await coro
            finally:
                st.busy -= 1

        return self._ack(session, session.serial(job()))

    async def _reply(
        self, session: MqttSession, topic: str, rid: Any, work: Coroutine[Any, Any, dict[str, Any]]
    ) -> int:
        try:
            body = await work
        except GatehubError as exc:
            body = {"code": 400 if exc.code == "invalid_input" else 500, "error": exc.code, "message": exc.message}
        self._answer(session, topic, rid, body)
        return OK

    @staticmethod
    def _answer(session: MqttSession, topic: str, rid: Any, body: dict[str, Any]) -> None:
        session.send(topic, orjson.dumps({"id": rid, "v": EXT_VERSION, **body}), 1)

    async def _ack(self, session: MqttSession, fut: Any) -> int:
        """The reason code for a PUBACK once ``fut`` (a job, possibly returning a commit future)
        is done. MQTT 3.1.1 has no failure PUBACK: there the session is closed instead, so the
        client sends the message again."""
        try:
            res = await fut
            if isinstance(res, asyncio.Future):
                res = await res
            code = res if isinstance(res, int) else OK
        except SequenceHeld as exc:
            log.info("%s: %s", session.client_id, exc)
            code = UNSPECIFIED
        except Exception as exc:
            log.warning("%s: batch not stored: %s", session.client_id, exc)
            code = UNSPECIFIED
        if code >= 0x80 and session.connect is not None and session.connect.protocol_version < 5:
            session.disconnect(code, "refused")
        return code

    def forget_products(self, tenant_id: str | None = None, product_id: str | None = None) -> None:
        """Drop cached product names: one product's (renamed or deleted), or all of them."""
        if tenant_id is None or product_id is None:
            self._product_names.clear()
        else:
            self._product_names.pop((tenant_id, product_id), None)

    # topology ---------------------------------------------------------------------------------
    async def _type_of(self, tenant: str, product_id: str) -> str:
        name = self._product_names.get((tenant, product_id))
        if name is None:
            try:
                name = (await self.store.catalog.get_product(tenant, product_id)).name
            except NotFound:
                name = product_id
            if len(self._product_names) > 10_000:
                self._product_names.clear()
            self._product_names[(tenant, product_id)] = name
        return name

    async def _entry(self, dev: Device) -> dict[str, Any]:
        return {
            "device": dev.name,
            "id": dev.id,
            "productKey": dev.product_id,
            "type": await self._type_of(dev.tenant_id, dev.product_id),
            "presence": dev.presence.value,
        }

    async def _topology(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: Any) -> dict[str, Any]:
        assert p.device_id is not None
        xs = ext_state(session)
        gw = await self.store.devices.get(p.tenant_id, p.device_id)
        children = await self.store.devices.children(gw.id)
        items = []
        for c in children:
            xs.learn(c.id, c.name)
            items.append(await self._entry(c))
        return {"code": 200, "topologyVersion": gw.topology_version, "devices": items}

    async def _version(self, p: MqttPrincipal) -> int:
        return (await self.store.devices.get(p.tenant_id, p.device_id)).topology_version

    def _moved_away(self, dev_id: str, old_gateway: str | None) -> None:
        if old_gateway is None:
            return
        other = self.d.hub.session_for_device(old_gateway)
        if other is not None:
            tb_state(other).forget(dev_id)
            ext_state(other).forget(dev_id)

    async def _adopt(
        self, session: MqttSession, p: MqttPrincipal, name: str, product_key: Any, type_: Any, *, quiet: bool = False
    ) -> Device:
        """Sub-device ``name`` in this gateway's topology: created if unknown (with product
        ``product_key``, or the product named ``type_`` as ThingsBoard's connect does), moved here
        from another gateway if needed. Presence does not change."""
        tenant, gw = p.tenant_id, p.device_id
        assert gw is not None
        dev = await self.store.devices.find_by_name(tenant, name)
        if dev is None:
            if isinstance(product_key, str) and product_key:
                prod = await self.store.catalog.get_product(tenant, product_key)
                if prod.node_type is not NodeType.SUBDEVICE:
                    raise InvalidInput(f"product {product_key} is not a sub-device product")
                try:
                    dev = await self.store.devices.create(tenant, name, prod.id, parent_id=gw)
                except AlreadyExists:
                    found = await self.store.devices.find_by_name(tenant, name)
                    if found is None:
                        raise
                    dev = found
            else:
                kind = type_ if isinstance(type_, str) and type_ else "default"
                dev = await self.d._create_sub(tenant, gw, name, kind)
        if dev.kind is not DeviceKind.SUBDEVICE:
            raise InvalidInput(f"{name!r} is a {dev.kind.value}, not a sub-device")
        if isinstance(product_key, str) and product_key and dev.product_id != product_key:
            raise InvalidInput(f"{name!r} is a device of product {dev.product_id}, not {product_key}")
        if dev.parent_id != gw:
            old = dev.parent_id
            via = f"thingsboard:{session.client_id}"
            if old is not None:
                why = self.d.takeover.check(dev, gw, via=via, quiet=quiet)
                if why is not None:
                    raise TakeoverRefused(why, old)
            dev = await self.store.devices.set_parent(tenant, dev.id, gw, source=via)
            if old is not None:
                self.d.takeover.taken_over(dev, old, gw, via=via)
            self._moved_away(dev.id, old)
        ext_state(session).gone.discard(name)
        ext_state(session).learn(dev.id, name)
        return dev

    async def _add(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: Any) -> dict[str, Any]:
        wanted = body.get("devices")
        if not isinstance(wanted, list) or len(wanted) > MAX_PER_REQUEST:
            raise InvalidInput(f"'devices' must be a list of at most {MAX_PER_REQUEST} objects")
        results = []
        for item in wanted:
            name = item.get("device") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                results.append(_fail(name, 400, "invalid_input", "each entry needs a 'device' name"))
                continue
            try:
                dev = await self._adopt(session, p, name, item.get("productKey"), item.get("type"))
            except NotFound as exc:
                results.append(_fail(name, 404, exc.code, exc.message))
            except TakeoverRefused as exc:
                results.append(_fail(name, 409, "other_gateway", exc.message))
            except GatehubError as exc:
                results.append(_fail(name, 409 if exc.code == "invalid_input" else 500, exc.code, exc.message))
            else:
                results.append({"device": name, "code": 200, "id": dev.id, "productKey": dev.product_id})
        return {"code": 200, "topologyVersion": await self._version(p), "results": results}

    async def _delete(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: Any) -> dict[str, Any]:
        names = body.get("devices")
        if not isinstance(names, list) or len(names) > MAX_PER_REQUEST:
            raise InvalidInput(f"'devices' must be a list of at most {MAX_PER_REQUEST} names")
        results = []
        for name in names:
            dev = await self.store.devices.find_by_name(p.tenant_id, name) if isinstance(name, str) else None
            if dev is None or dev.parent_id != p.device_id:
                results.append(_fail(name, 404, "not_in_topology", f"{name!r} is not a sub-device of this gateway"))
                continue
            st.forget(dev.id)
            ext_state(session).forget(dev.id)
            await self.store.devices.set_parent(p.tenant_id, dev.id, None)
            await self.store.devices.set_presence(p.tenant_id, dev.id, Presence.OFFLINE, cascade=False)
            results.append({"device": name, "code": 200, "id": dev.id})
        return {"code": 200, "topologyVersion": await self._version(p), "results": results}

    # registration -----------------------------------------------------------------------------
    async def _register(self, session: MqttSession, st: TbState, p: MqttPrincipal, body: Any) -> dict[str, Any]:
        wanted = body.get("devices")
        if not isinstance(wanted, list) or len(wanted) > MAX_PER_REQUEST:
            raise InvalidInput(f"'devices' must be a list of at most {MAX_PER_REQUEST} objects")
        return {"code": 200, "results": [await self._register_one(p, item) for item in wanted]}

    async def _register_one(self, p: MqttPrincipal, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            return _fail(None, 400, "invalid_input", "each entry must be an object")
        name, pk, random, sign = (item.get(k) for k in ("device", "productKey", "random", "sign"))
        if not all(isinstance(v, str) and v for v in (name, pk, random, sign)):
            return _fail(name, 400, "invalid_input", "'device', 'productKey', 'random' and 'sign' are required")
        assert isinstance(name, str) and isinstance(pk, str) and isinstance(random, str) and isinstance(sign, str)
        try:
            prod = await self.store.catalog.get_product(p.tenant_id, pk)
        except NotFound:
            return _fail(name, 404, "product_not_found", f"no product {pk} in this tenant")
        if prod.node_type is not NodeType.SUBDEVICE or not prod.dynamic_register:
            return _fail(name, 403, "registration_off", f"product {pk} does not allow dynamic registration")
        if not hmac.compare_digest(register_sign(prod.secret, name, pk, random), sign.lower()):
            return _fail(name, 403, "bad_sign", "the sign does not match this product's secret")
        dev = await self.store.devices.find_by_name(p.tenant_id, name)
        if dev is None or dev.product_id != pk:
            return _fail(name, 404, "not_registered", f"{name!r} is not pre-registered for product {pk}")
        if dev.parent_id not in (None, p.device_id):
            return _fail(name, 403, "other_gateway", f"{name!r} belongs to another gateway")
        delivered = await self.store.devices.deliver_secret(p.tenant_id, dev.id)
        if delivered is None:
            return _fail(name, 409, "already_delivered", f"the secret of {name!r} was delivered before")
        return {
            "device": name,
            "code": 200,
            "id": delivered.id,
            "productKey": pk,
            "deviceSecret": delivered.secret,
            "accessToken": delivered.access_token,
        }

    # sequence-numbered batches ----------------------------------------------------------------
    def _batch(self, session: MqttSession, st: TbState, p: MqttPrincipal, payload: bytes) -> AckResult:
        body = orjson.loads(payload)
        if type(body) is not dict:
            raise InvalidInput("a batch must be an object")
        epoch, seq = body.get("epoch"), body.get("seq")
        tele, attrs = body.get("telemetry", {}), body.get("attributes", {})
        if not isinstance(epoch, str) or not 1 <= len(epoch) <= 64:
            raise InvalidInput("'epoch' must be a string of 1-64 characters")
        if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
            raise InvalidInput("'seq' must be an integer from 1")
        if type(tele) is not dict or type(attrs) is not dict:
            raise InvalidInput("'telemetry' and 'attributes' must be objects keyed by device name")
        xs = ext_state(session)
        ids = xs.ids
        if st.busy or not (tele.keys() <= ids.keys() and attrs.keys() <= ids.keys()):
            return self._in_order(session, st, self._batch_slow(session, p, epoch, seq, tele, attrs))
        batch = self._build(session, p, epoch, seq, tele, attrs, ids)
        if batch is None:
            return self._refuse(session, p, epoch, seq)
        try:
            return self._ack(session, self.writer.submit_nowait(batch))
        except asyncio.QueueFull:
            return self._in_order(session, st, self.writer.submit(batch))

    def _refuse(self, session: MqttSession, p: MqttPrincipal, epoch: str, seq: int) -> int:
        """Over a rate limit: nothing of the batch is stored, and later batches wait for it."""
        assert p.device_id is not None
        self.writer.hold_sequence(p.device_id, epoch, seq)
        if session.connect is not None and session.connect.protocol_version < 5:
            session.disconnect(QUOTA_EXCEEDED, "rate limit")
        return QUOTA_EXCEEDED

    async def _batch_slow(
        self, session: MqttSession, p: MqttPrincipal, epoch: str, seq: int, tele: dict[str, Any], attrs: dict[str, Any]
    ) -> Any:
        xs = ext_state(session)
        st = tb_state(session)
        for name in (*tele, *attrs):
            if name in xs.gone and name not in st.devices:
                log.info("%s: batch data of %r dropped: the hub removed it from this gateway", session.client_id, name)
                continue
            if name not in xs.ids:
                keeper = st.held.get(name)
                if keeper is not None and self.d.takeover.still_refused(keeper):
                    continue  # logged when it was first refused
                try:
                    await self._adopt(session, p, name, None, None, quiet=keeper is not None)
                    st.held.pop(name, None)
                except TakeoverRefused as exc:
                    if len(st.held) < 10_000:
                        st.held[name] = exc.keeper
                except GatehubError as exc:
                    log.warning("%s: data of %r refused: %s", session.client_id, name, exc)
        batch = self._build(session, p, epoch, seq, tele, attrs, xs.ids)
        if batch is None:
            return self._refuse(session, p, epoch, seq)
        return await self.writer.submit(batch)

    def _build(
        self,
        session: MqttSession,
        p: MqttPrincipal,
        epoch: str,
        seq: int,
        tele: dict[str, Any],
        attrs: dict[str, Any],
        ids: dict[str, str],
    ) -> WriteBatch | None:
        """The batch, or None when a device is over its rate limit (then nothing is taken)."""
        assert p.device_id is not None
        batch = WriteBatch(p.tenant_id, sequence=(p.device_id, epoch, seq))
        counts: dict[str, int] = {}
        now = now_ms()
        for part, out in ((tele, batch.telemetry), (attrs, batch.attributes)):
            for name, value in part.items():
                dev = ids.get(name)
                if dev is None:
                    continue  # refused when it was resolved (logged there)
                start = len(out)
                try:
                    if out is batch.telemetry:
                        if type(value) is not list:
                            raise InvalidInput("telemetry of a device must be a list")
                        flatten_points(dev, value, now, batch.telemetry)
                    else:
                        attribute_rows(dev, "client", value, now, batch.attributes)
                except InvalidInput as exc:
                    log.info("%s: batch data of %r refused: %s", session.client_id, name, exc)
                    continue
                counts[dev] = counts.get(dev, 0) + len(out) - start
        if not self._within_limits(p, counts):
            return None
        return batch

    def _within_limits(self, p: MqttPrincipal, counts: dict[str, int]) -> bool:
        limits = self.d.limits
        if not limits.enabled:
            return True
        mono = time.monotonic()
        taken: list[tuple[str, int]] = []
        for dev, n in counts.items():
            if n and not limits.allow(p.tenant_id, dev, n, mono):
                for done, k in taken:  # all or nothing: give back what the others took
                    if (b := limits.devices.get(done)) is not None:
                        b.give_back(k)
                    if (t := limits.tenants.get(p.tenant_id)) is not None:
                        t.give_back(k)
                return False
            taken.append((dev, n))
        return True

    # hub-side topology changes ----------------------------------------------------------------
    async def _watch(self) -> None:
        bus = self.d.hub.bus
        while True:
            sub = bus.subscribe("t.*.topology.*", maxsize=100_000)
            async for env in sub:
                try:
                    await self._changed(env.subject.split(".", 2)[1], env.data)
                except Exception:
                    log.exception("topology change push failed")
            if sub.overflowed:
                log.warning("topology changes fell behind; asking the gateways to resynchronise")
                for session in list(self.d.hub.by_device.values()):
                    if self._wants_changes(session):
                        self._push(session, {"resync": True})

    @staticmethod
    def _wants_changes(session: MqttSession) -> bool:
        from gatehub.protocols.mqtt.topics import topic_matches

        if session.closed or session.user is None or "tb" not in session.user:
            return False
        return any(topic_matches(f, TOPO_CHANGE) for f in tb_state(session).filters)

    def _push(self, session: MqttSession, body: dict[str, Any]) -> None:
        session.send(TOPO_CHANGE, orjson.dumps({"v": EXT_VERSION, **body}), 1)

    async def _changed(self, tenant: str, data: dict[str, Any]) -> None:
        gw = data.get("gatewayId")
        session = self.d.hub.session_for_device(gw) if isinstance(gw, str) else None
        if session is None or data.get("deleted"):
            return
        st, xs = tb_state(session), ext_state(session)
        removed: list[str] = []
        resync = False
        for dev_id in data.get("removed") or ():
            name = xs.forget(dev_id)
            name = st.forget(dev_id) or name
            if name is None:
                try:
                    name = (await self.store.devices.get(tenant, dev_id)).name
                except NotFound:
                    resync = True  # deleted before this session learned its name
                    continue
            removed.append(name)
            if len(xs.gone) < 100_000:
                xs.gone.add(name)
        added = []
        for dev_id in data.get("added") or ():
            try:
                added.append(await self._entry(await self.store.devices.get(tenant, dev_id)))
            except NotFound:
                continue
        if not self._wants_changes(session):
            return
        try:
            version = (await self.store.devices.get(tenant, gw)).topology_version
        except NotFound:
            return
        body: dict[str, Any] = {"topologyVersion": version, "added": added, "removed": removed}
        if resync:
            body["resync"] = True
        self._push(session, body)
