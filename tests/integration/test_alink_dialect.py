"""The Alink dialect with an in-process paho client on MQTT 3.1.1 speaking exactly what the Link
SDK sends (its signatures, topics and shapes): topology, sub-device sessions, thing-model posts,
replies in the ``{id, code, data, message}`` shape on topics the client never subscribed to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from gatehub.domain.model import Presence
from tests.integration.alink_helpers import (
    FREE_PK,
    GW_PK,
    GW_SECRET,
    SUB_PK,
    TENANT,
    TRUST_PK,
    AlinkClient,
    AlinkHub,
    alink_hub,
    sub_sign,
)
from tests.integration.mqtt_helpers import eventually


def _secret(h: AlinkHub, name: str) -> str:
    s = h.subs[name].secret
    assert s is not None
    return s


async def _gateway(h: AlinkHub) -> AlinkClient:
    c = AlinkClient(GW_PK, "gw-0001", GW_SECRET)
    assert await c.start(h.port) == 0
    return c


async def _presence(h: AlinkHub, dev_id: str) -> Presence:
    return (await h.store.devices.get(TENANT, dev_id)).presence  # type: ignore[no-any-return]


async def test_topology_login_and_thing_data(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        c = await _gateway(h)
        try:
            r = await c.request(c.topic("thing/topo/get"), {})
            assert r == {"id": r["id"], "code": 200, "data": [], "message": "success"}
            # add two sub-devices with their signatures, as the SDK signs them
            params = [sub_sign(SUB_PK, n, _secret(h, n)) for n in ("sub-0", "sub-1")]
            r = await c.request(c.topic("thing/topo/add"), params)
            assert r["code"] == 200 and r["message"] == "success", r
            assert r["data"] == [
                {"productKey": SUB_PK, "deviceName": "sub-0"},
                {"productKey": SUB_PK, "deviceName": "sub-1"},
            ]
            gw = await h.store.devices.get(TENANT, "gw-0001")
            assert gw.topology_version == 1
            assert {d.id for d in await h.store.devices.children("gw-0001")} == {"sub-0", "sub-1"}
            # adding again is idempotent and changes nothing
            r = await c.request(c.topic("thing/topo/add"), params[:1])
            assert r["code"] == 200 and (await h.store.devices.get(TENANT, "gw-0001")).topology_version == 1
            # a wrong signature, an unknown device, a name without signature
            bad = sub_sign(SUB_PK, "sub-2", "not-its-secret")
            r = await c.request(c.topic("thing/topo/add"), [bad])
            assert r["code"] == 7101 and "sub-2" in r["message"] and r["data"] == []
            r = await c.request(c.topic("thing/topo/add"), [sub_sign(SUB_PK, "ghost", "x" * 10)])
            assert r["code"] == 6100 and r["data"] == []
            await h.store.devices.create(TENANT, "trusted-1", TRUST_PK, device_id="trusted-1")
            await h.store.devices.create(TENANT, "free-1", FREE_PK, device_id="free-1")
            r = await c.request(c.topic("thing/topo/add"), [{"productKey": TRUST_PK, "deviceName": "trusted-1"}])
            assert r["code"] == 200 and r["data"] == [{"productKey": TRUST_PK, "deviceName": "trusted-1"}]
            r = await c.request(c.topic("thing/topo/add"), [{"productKey": FREE_PK, "deviceName": "free-1"}])
            assert r["code"] == 7101 and "trustedGatewayAdd" in r["message"]
            assert (await h.store.devices.get(TENANT, "free-1")).parent_id is None
            r = await c.request(c.topic("thing/topo/get"), {})
            assert sorted(x["deviceName"] for x in r["data"]) == ["sub-0", "sub-1", "trusted-1"]

            # batch login: the signature covers the clientId exactly as sent
            devs = []
            for n in ("sub-0", "sub-1"):
                d = sub_sign(SUB_PK, n, _secret(h, n), client_id=f"{SUB_PK}.{n}|lan=Python,_v=2.2.1,_ss=1|")
                d.pop("signmethod")
                devs.append({**d, "cleanSession": "false"})
            login = f"/ext/session/{GW_PK}/gw-0001/combine/batch_login"
            r = await c.request(login, {"signMethod": "hmacSha256", "deviceList": devs}, qos=0)
            assert r["code"] == 200 and len(r["data"]) == 2, r
            assert await _presence(h, "sub-0") is Presence.ONLINE and await _presence(h, "sub-1") is Presence.ONLINE
            # a login whose clientId was changed after signing is refused
            tampered = {**devs[0], "clientId": f"{SUB_PK}.sub-0"}
            r = await c.request(login, {"signMethod": "hmacSha256", "deviceList": [tampered]}, qos=0)
            assert r["code"] == 7101

            # a sub-device's property post on the gateway's connection: stored, then answered
            post = c.topic("thing/event/property/post", SUB_PK, "sub-0")
            r = await c.request(post, {"temp": 21.5, "level": 3, "label": {"value": "ab", "time": 1_700_000_000_000}})
            assert r["code"] == 200 and r["message"] == "success", r
            latest = await h.store.data.latest("sub-0")
            assert latest["temp"]["value"] == 21.5 and latest["level"]["value"] == 3
            assert latest["name_label"] == {"ts": 1_700_000_000_000, "value": "ab"}  # the model's storage key
            # invalid fields are refused with a code and a message naming the field; nothing stored
            for params, field in (
                ({"temp": 200}, "params.temp"),
                ({"level": 1.5}, "params.level"),
                ({"mode": 7}, "params.mode"),
                ({"label": "far too long"}, "params.label"),
                ({"colour": "red"}, "params.colour"),
                ({"level": 2, "temp": "hot"}, "params.temp"),
            ):
                r = await c.request(post, params)
                assert r["code"] == 460 and field in r["message"], (params, r)
            assert (await h.store.data.latest("sub-0"))["level"]["value"] == 3
            # events, checked against their output parameters
            ev = c.topic("thing/event/overheat/post", SUB_PK, "sub-1")
            r = await c.request(
                ev, {"value": {"t": 99.5}, "time": 1_700_000_000_001}, method="thing.event.overheat.post"
            )
            assert r["code"] == 200, r
            r = await c.request(ev, {"value": {"t": "hot"}})
            assert r["code"] == 460 and "params.value.t" in r["message"]
            r = await c.request(c.topic("thing/event/nope/post", SUB_PK, "sub-1"), {"value": {}})
            assert r["code"] == 460 and "nope" in r["message"]
            logged = await h.store.data.events(TENANT, "sub-1", "event")
            assert [e["body"] for e in logged] == [
                {"identifier": "overheat", "eventType": "alert", "value": {"t": 99.5}}
            ]
            # a sub-device that did not log in on this connection
            r = await c.request(c.topic("thing/event/property/post", SUB_PK, "sub-2"), {"temp": 1})
            assert r["code"] == 7108

            # delete: out of the topology, offline, logged out
            r = await c.request(c.topic("thing/topo/delete"), [{"productKey": SUB_PK, "deviceName": "sub-1"}])
            assert r["code"] == 200 and r["data"] == [{"productKey": SUB_PK, "deviceName": "sub-1"}]
            assert (await h.store.devices.get(TENANT, "sub-1")).parent_id is None
            assert await _presence(h, "sub-1") is Presence.OFFLINE
            r = await c.request(c.topic("thing/event/property/post", SUB_PK, "sub-1"), {"temp": 1})
            assert r["code"] == 7108
            single = f"/ext/session/{GW_PK}/gw-0001/combine/login"
            d = sub_sign(SUB_PK, "sub-1", _secret(h, "sub-1"))
            r = await c.request(single, {**d, "signMethod": d.pop("signmethod")}, qos=0)
            assert r["code"] == 7103  # not in this gateway's topology any more
            r = await c.request(c.topic("thing/topo/delete"), [{"productKey": SUB_PK, "deviceName": "sub-1"}])
            assert r["code"] == 7103
            # logout
            r = await c.request(
                f"/ext/session/{GW_PK}/gw-0001/combine/logout", {"productKey": SUB_PK, "deviceName": "sub-0"}, qos=0
            )
            assert r["code"] == 200 and await _presence(h, "sub-0") is Presence.OFFLINE
            events = await h.store.data.events(TENANT, "gw-0001", "topology")
            assert [e["body"]["version"] for e in events] == [3, 2, 1]
        finally:
            await c.disconnect()
