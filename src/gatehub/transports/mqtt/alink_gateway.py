"""What an Alink gateway asks for itself: topology, sub-device sessions, dynamic registration.

- ``thing/topo/add`` ``[{productKey, deviceName, clientId, timestamp, signmethod, sign}]`` (at
  most 30): each sub-device proves its credentials with ``sign`` (or its product trusts gateways
  to add by name); reply data ``[{productKey, deviceName}]`` of those now in the topology. A
  sub-device of another gateway moves here only with its ``sign`` and as the takeover policy
  allows (``subdevice_takeover``: by default not while that gateway is online; code 7104
  ``OTHER_GATEWAY`` for that entry).
- ``thing/topo/delete`` ``[{productKey, deviceName}]``; ``thing/topo/get`` -> the whole topology.
- ``combine/login`` (one object) and ``combine/batch_login`` ``{signMethod, deviceList}`` (at most
  50): the sub-device must be in this gateway's topology and ``sign`` must match its secret
  over its clientId as sent; ``combine/logout`` / ``batch_logout``.
- ``thing/sub/register`` ``[{productKey, deviceName}]`` -> ``[{iotId, productKey, deviceName,
  deviceSecret}]``: the secret of a pre-registered sub-device, delivered once.
- ``thing/proxy/provisioning/product_register`` ``{"proxieds": [{productKey, deviceName, random,
  signMethod, sign}]}``: the same, signed with the sub-device product's secret; reply data
  ``{"successes": [...], "failures": [{productKey, deviceName, code, message}]}``.

A batch is answered 200 when every entry succeeded; otherwise with the first failure's code, a
message naming every failure, and the entries that succeeded in ``data`` (a delivered secret is
never lost in a partly failed reply).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gatehub.domain.model import Device, DeviceKind, Presence
from gatehub.errors import NotFound
from gatehub.protocols import alink
from gatehub.protocols.alink import AlinkError, Code
from gatehub.store.provisioning import RegisterRefused, RegistrationError
from gatehub.store.topology import Refused, SubRef

if TYPE_CHECKING:
    from gatehub.transports.mqtt.alink_state import AlinkCore, AlinkState
    from gatehub.transports.mqtt.session import MqttSession

TOPO_CODES = {
    Refused.NOT_FOUND: Code.DEVICE_NOT_FOUND,
    Refused.NOT_SUBDEVICE: Code.NOT_SUBDEVICE,
    Refused.NO_PROOF: Code.SIGN_INVALID,
    Refused.BAD_PROOF: Code.SIGN_INVALID,
    Refused.OTHER_GATEWAY: Code.OTHER_GATEWAY,
    Refused.NOT_CHILD: Code.TOPO_NOT_FOUND,
}
REGISTER_CODES = {
    RegisterRefused.PRODUCT_NOT_FOUND: Code.PRODUCT_NOT_FOUND,
    RegisterRefused.DISABLED: Code.REGISTER_DISABLED,
    RegisterRefused.NOT_FOUND: Code.DEVICE_NOT_FOUND,
    RegisterRefused.DELIVERED: Code.SECRET_DELIVERED,
}


class Outcome:
    """The results of a batch: what succeeded (reply data) and the failures (code, message)."""

    def __init__(self) -> None:
        self.ok: list[Any] = []
        self.failures: list[tuple[Code, str]] = []

    def fail(self, code: Code, message: str) -> None:
        self.failures.append((code, message))

    def send(self, d: AlinkCore, session: MqttSession, raw: str, rid: str, data: Any = None) -> int:
        if not self.failures:
            d.reply(session, raw, rid, Code.OK, self.ok if data is None else data)
        else:
            msg = "; ".join(m for _c, m in self.failures)
            d.reply(session, raw, rid, self.failures[0][0], self.ok if data is None else data, msg)
        return 0


def _ref(pk: str, dn: str) -> dict[str, str]:
    return {"productKey": pk, "deviceName": dn}


class GatewayHandlers:
    def __init__(self, dialect: AlinkCore) -> None:
        self.d = dialect
        self.store = dialect.store

    def _fresh(self, ts: str | None) -> bool:
        if ts is None or not self.d.skew_ms:
            return True
        ms = alink.timestamp_ms(ts)
        return ms is not None and abs(ms - time.time() * 1000) <= self.d.skew_ms

    def _source(self, session: MqttSession) -> str:
        return f"alink:{session.client_id}"

    # thing/topo/*, thing/sub/register, thing/proxy/provisioning/* ---------------------------
    async def request(self, session: MqttSession, st: AlinkState, path: str, raw: str, req: alink.Request) -> int:
        if path == "thing/topo/add":
            return await self._topo_add(session, st, raw, req)
        if path == "thing/topo/delete":
            return await self._topo_delete(session, st, raw, req)
        if path == "thing/topo/get":
            view = await self.store.topology.get(st.tenant_id, st.device_id)
            self.d.reply(session, raw, req.id, Code.OK, [_ref(c.product_id, c.name) for c in view.children])
            return 0
        if path == "thing/sub/register":
            return await self._sub_register(session, st, raw, req)
        if path == "thing/proxy/provisioning/product_register":
            return await self._product_register(session, st, raw, req)
        raise AlinkError(Code.TOPIC_ERROR, f"{path} is not served")

    async def _topo_add(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request) -> int:
        creds = alink.sub_credentials(req.params, alink.TOPO_MAX)
        out = Outcome()
        refs: list[SubRef] = []
        for c in creds:
            if c.sign is not None and not self._fresh(c.timestamp):
                out.fail(Code.TIMESTAMP_INVALID, f"{c.product_key}/{c.device_name}: timestamp outside the clock skew")
                continue
            refs.append(SubRef(name=c.device_name, product_id=c.product_key, proof=c.verify if c.sign else None))
        if refs:
            policy = self.d.takeover
            via = self._source(session)
            moving: dict[str, str] = {}  # sub-device -> the gateway it is taken from

            def may_move(dev: Device) -> str | None:
                why = policy.check(dev, st.device_id, via=via)
                if why is None and dev.parent_id is not None:
                    moving[dev.id] = dev.parent_id
                return why

            res = await self.store.topology.add(st.tenant_id, st.device_id, refs, source=via, may_move=may_move)
            for dev in res.added:
                if dev.id in moving:
                    policy.taken_over(dev, moving[dev.id], st.device_id, via=via)
            out.ok = [_ref(dev.product_id, dev.name) for dev in res.added]
            for r in res.refused:
                out.fail(TOPO_CODES[r.reason], r.message)
        return out.send(self.d, session, raw, req.id)

    async def _topo_delete(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request) -> int:
        refs = [SubRef(name=dn, product_id=pk) for pk, dn in alink.device_refs(req.params, alink.TOPO_MAX)]
        res = await self.store.topology.remove(st.tenant_id, st.device_id, refs, source=self._source(session))
        out = Outcome()
        for dev in res.removed:
            self.d.logout(st.device_id, dev.id)
            out.ok.append(_ref(dev.product_id, dev.name))
        for r in res.refused:
            out.fail(TOPO_CODES[r.reason], r.message)
        return out.send(self.d, session, raw, req.id)

    async def _deliver(self, st: AlinkState, pk: str, dn: str, out: Outcome) -> dict[str, str] | None:
        try:
            dev = await self.store.devices.find_by_name(st.tenant_id, dn)
            if dev is not None and dev.product_id == pk and dev.kind is not DeviceKind.SUBDEVICE:
                out.fail(Code.NOT_SUBDEVICE, f"{pk}/{dn} is not a sub-device")
                return None
            dev = await self.store.provisioning.deliver_secret(st.tenant_id, pk, dn)
        except RegistrationError as exc:
            out.fail(REGISTER_CODES[exc.reason], exc.message)
            return None
        assert dev.secret is not None
        return {"iotId": dev.id, "productKey": pk, "deviceName": dn, "deviceSecret": dev.secret}

    async def _sub_register(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request) -> int:
        out = Outcome()
        for pk, dn in alink.device_refs(req.params, alink.TOPO_MAX):
            got = await self._deliver(st, pk, dn, out)
            if got is not None:
                out.ok.append(got)
        return out.send(self.d, session, raw, req.id)

    async def _product_register(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request) -> int:
        out = Outcome()
        failures: list[dict[str, Any]] = []
        for r in alink.product_register_requests(req.params):
            before = len(out.failures)
            try:
                prod = await self.store.catalog.get_product(st.tenant_id, r.product_key)
            except NotFound:
                out.fail(Code.PRODUCT_NOT_FOUND, f"product {r.product_key} not found")
            else:
                if not alink.verify_register(
                    prod.secret, r.sign_method, r.device_name, r.product_key, r.random, r.sign
                ):
                    out.fail(
                        Code.SIGN_INVALID, f"{r.product_key}/{r.device_name}: the product signature does not match"
                    )
                else:
                    got = await self._deliver(st, r.product_key, r.device_name, out)
                    if got is not None:
                        out.ok.append(got)
            if len(out.failures) > before:
                code, msg = out.failures[-1]
                failures.append({**_ref(r.product_key, r.device_name), "code": int(code), "message": msg})
        return out.send(self.d, session, raw, req.id, {"successes": out.ok, "failures": failures})

    # combine/login, batch_login, logout, batch_logout -----------------------------------------
    async def session(self, session: MqttSession, st: AlinkState, path: str, raw: str, req: alink.Request) -> int:
        if path in ("combine/login", "combine/batch_login"):
            return await self._login(session, st, raw, req, path.endswith("batch_login"))
        if path in ("combine/logout", "combine/batch_logout"):
            return await self._logout(session, st, raw, req, path.endswith("batch_logout"))
        raise AlinkError(Code.TOPIC_ERROR, f"{path} is not served")

    async def _login(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request, batch: bool) -> int:
        out = Outcome()
        for c in alink.login_credentials(req.params, batch):
            who = f"{c.product_key}/{c.device_name}"
            dev = await self.store.devices.find_by_name(st.tenant_id, c.device_name)
            if dev is None or dev.product_id != c.product_key:
                out.fail(Code.DEVICE_NOT_FOUND, f"device {who} not found")
            elif dev.parent_id != st.device_id:
                out.fail(Code.TOPO_NOT_FOUND, f"{who} is not in this gateway's topology (thing/topo/add)")
            elif not self._fresh(c.timestamp):
                out.fail(Code.TIMESTAMP_INVALID, f"{who}: timestamp outside the clock skew")
            elif not dev.secret or not c.verify(dev.secret):
                out.fail(Code.SIGN_INVALID, f"{who}: the signature does not match its secret")
            else:
                await self.store.devices.set_presence(st.tenant_id, dev.id, Presence.ONLINE, cascade=False)
                self.d.login(st.device_id, c.product_key, c.device_name, dev.id)
                out.ok.append(_ref(c.product_key, c.device_name))
        data = out.ok if batch else (out.ok[0] if out.ok else {})
        return out.send(self.d, session, raw, req.id, data)

    async def _logout(self, session: MqttSession, st: AlinkState, raw: str, req: alink.Request, batch: bool) -> int:
        params = req.params
        if not batch and type(params) is dict:
            params = [params]
        out = Outcome()
        for pk, dn in alink.device_refs(params, alink.LOGIN_MAX if batch else 1):
            dev_id = self.d.logged.get(st.device_id, {}).get((pk, dn))
            if dev_id is None:
                dev = await self.store.devices.find_by_name(st.tenant_id, dn)
                if dev is None or dev.product_id != pk or dev.parent_id != st.device_id:
                    out.fail(Code.DEVICE_NOT_FOUND, f"device {pk}/{dn} not found in this gateway's topology")
                    continue
                dev_id = dev.id
            self.d.logout(st.device_id, dev_id)
            await self.store.devices.set_presence(st.tenant_id, dev_id, Presence.OFFLINE, cascade=False)
            out.ok.append(_ref(pk, dn))
        data = out.ok if batch else (out.ok[0] if out.ok else {})
        return out.send(self.d, session, raw, req.id, data)
