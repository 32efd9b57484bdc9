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


async def _logged_in(h: AlinkHub, c: AlinkClient, *names: str) -> None:
    params = [sub_sign(SUB_PK, n, _secret(h, n)) for n in names]
    assert (await c.request(c.topic("thing/topo/add"), params))["code"] == 200
    devs = []
    for n in names:
        d = sub_sign(SUB_PK, n, _secret(h, n))
        d.pop("signmethod")
        devs.append(d)
    login = f"/ext/session/{GW_PK}/gw-0001/combine/batch_login"
    r = await c.request(login, {"signMethod": "hmacSha256", "deviceList": devs}, qos=0)
    assert r["code"] == 200, r


async def test_services_and_property_set_from_the_rest_api(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h, h.http() as http:
        c = await _gateway(h)
        try:
            await _logged_in(h, c, "sub-0")
            url = "/api/v1/devices/sub-0/services/calibrate"
            call = asyncio.create_task(http.post(url, json={"params": {"offset": 1.5}, "timeout": 5000}))
            # delivered to the gateway's connection without any SUBSCRIBE, on the sub-device's topic
            req = await c.wait_for(c.topic("thing/service/calibrate", SUB_PK, "sub-0"))
            assert req["method"] == "thing.service.calibrate" and req["params"] == {"offset": 1.5}
            assert req["version"] == "1.0" and req["id"].isdigit()
            # the SDK's thing_answer_service sends {id, code, data} (no message)
            reply = {"id": req["id"], "code": 200, "data": {"ok": True}}
            await c.publish(c.topic("thing/service/calibrate_reply", SUB_PK, "sub-0"), orjson.dumps(reply), 0)
            r = await call
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["code"] == 200 and body["data"] == {"ok": True} and body["status"] == "SUCCESSFUL"
            stored = await http.get(f"/api/v1/rpc/{body['rpcId']}")
            assert stored.json()["response"]["data"] == {"ok": True}
            # input checked against the model before anything is sent
            r = await http.post(url, json={"params": {"offset": 50}})
            assert r.status_code == 400 and "params.offset" in r.json()["error"]["message"], r.text
            r = await http.post("/api/v1/devices/sub-0/services/nope", json={"params": {}})
            assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
            # a reply that does not fit the output parameters: 502 naming the field
            call = asyncio.create_task(http.post(url, json={"params": {"offset": 0}}))
            req = await c.wait_for(c.topic("thing/service/calibrate", SUB_PK, "sub-0"))
            bad = {"id": req["id"], "code": 200, "data": {"ok": "yes"}}
            await c.publish(c.topic("thing/service/calibrate_reply", SUB_PK, "sub-0"), orjson.dumps(bad), 0)
            r = await call
            assert r.status_code == 502 and "data.ok" in r.json()["error"]["message"], r.text
            # a device error code is returned to the caller as it is
            call = asyncio.create_task(http.post(url, json={"params": {"offset": 0}}))
            req = await c.wait_for(c.topic("thing/service/calibrate", SUB_PK, "sub-0"))
            err = {"id": req["id"], "code": 100001, "data": {}, "message": "motor stuck"}
            await c.publish(c.topic("thing/service/calibrate_reply", SUB_PK, "sub-0"), orjson.dumps(err), 0)
            body = (await call).json()
            assert body["code"] == 100001 and body["message"] == "motor stuck"
            # no reply: 504
            r = await http.post(url, json={"params": {"offset": 0}, "timeout": 300})
            assert r.status_code == 504 and r.json()["error"]["code"] == "rpc_timeout"
            await c.wait_for(c.topic("thing/service/calibrate", SUB_PK, "sub-0"))

            # property set: writable properties only
            r = await http.post("/api/v1/devices/sub-0/properties/set", json={"params": {"temp": 20}})
            assert r.status_code == 400 and "read-only" in r.json()["error"]["message"]
            r = await http.post("/api/v1/devices/sub-0/properties/set", json={"params": {"level": 11}})
            assert r.status_code == 400 and "params.level" in r.json()["error"]["message"]
            call = asyncio.create_task(http.post("/api/v1/devices/sub-0/properties/set", json={"params": {"level": 7}}))
            req = await c.wait_for(c.topic("thing/service/property/set", SUB_PK, "sub-0"))
            assert req["method"] == "thing.service.property.set" and req["params"] == {"level": 7}
            ok = {"id": req["id"], "code": 200, "data": {}}
            await c.publish(c.topic("thing/service/property/set_reply", SUB_PK, "sub-0"), orjson.dumps(ok), 1)
            assert (await call).json()["code"] == 200
            # a device that nobody serves now
            r = await http.post("/api/v1/devices/sub-1/services/calibrate", json={"params": {}})
            assert r.status_code == 409 and r.json()["error"]["code"] == "device_offline"
            # wait=false: 202 at once, the reply lands in the call's record
            r = await http.post(url, json={"params": {"offset": 0}, "wait": False})
            assert r.status_code == 202 and r.json()["status"] == "SENT"
            rpc_id = r.json()["rpcId"]
            req = await c.wait_for(c.topic("thing/service/calibrate", SUB_PK, "sub-0"))
            ok = {"id": req["id"], "code": 200, "data": {"ok": False}}
            await c.publish(c.topic("thing/service/calibrate_reply", SUB_PK, "sub-0"), orjson.dumps(ok), 1)

            async def done() -> bool:
                return (await http.get(f"/api/v1/rpc/{rpc_id}")).json()["status"] == "SUCCESSFUL"

            for _ in range(100):
                if await done():
                    break
                await asyncio.sleep(0.05)
            assert await done()
        finally:
            await c.disconnect()


async def _sse_until(h: AlinkHub, device_id: str, presence: str) -> dict[str, str]:
    """Read the live event stream until ``device_id`` shows ``presence``."""
    async with h.http() as http, http.stream("GET", f"/api/v1/events/stream?tenantId={TENANT}&types=status") as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                data = orjson.loads(line[6:])
                if data.get("deviceId") == device_id and data.get("presence") == presence:
                    return data  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


async def test_gateway_offline_takes_its_sub_devices_offline_gateway(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        bus = h.m.node.bus
        sub = bus.subscribe(f"t.{TENANT}.status.*")
        c = await _gateway(h)
        try:
            await _logged_in(h, c, "sub-0", "sub-1")
            await eventually(lambda: h.m.hub.session_for_device("gw-0001") is not None)
            seen: dict[str, str] = {}
            while len(seen) < 3 or any(v != "online" for v in seen.values()):
                env = await sub.get(timeout=5)
                assert env is not None
                seen[env.data["deviceId"]] = env.data["presence"]
            sse = asyncio.create_task(_sse_until(h, "sub-1", "offline-gateway"))
            await asyncio.sleep(0.3)  # the stream is open
            c.abort()  # the gateway's connection just ends: no logouts
            assert (await asyncio.wait_for(sse, 10))["gatewayId"] == "gw-0001"
            gone: dict[str, dict[str, str]] = {}
            while len(gone) < 3:
                env = await sub.get(timeout=5)
                assert env is not None
                gone[env.data["deviceId"]] = env.data
            assert gone["gw-0001"]["presence"] == "offline"
            for n in ("sub-0", "sub-1"):
                assert gone[n]["presence"] == "offline-gateway" and gone[n]["gatewayId"] == "gw-0001"
                assert await _presence(h, n) is Presence.GATEWAY_OFFLINE
            assert await _presence(h, "sub-2") is Presence.OFFLINE
            # back again: the sub-devices stay offline until the gateway logs them in
            c2 = await _gateway(h)
            try:
                r = await c2.request(c2.topic("thing/event/property/post", SUB_PK, "sub-0"), {"temp": 1})
                assert r["code"] == 7108
                assert await _presence(h, "sub-0") is Presence.GATEWAY_OFFLINE
            finally:
                await c2.disconnect()
        finally:
            sub.close()
            c.stop()


async def test_topology_changes_are_pushed_to_the_gateway(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h, h.http() as http:
        c = await _gateway(h)
        try:
            r = await http.post("/api/v1/gateways/gw-0001/topology", json={"add": ["sub-0", "sub-1"]})
            assert r.status_code == 200 and r.json()["added"] == ["sub-0", "sub-1"], r.text
            note = await c.wait_for(c.topic("thing/topo/change"))
            assert note["method"] == "thing.topo.change" and note["id"].isdigit()
            assert note["params"] == {
                "status": 0,
                "subList": [
                    {"productKey": SUB_PK, "deviceName": "sub-0"},
                    {"productKey": SUB_PK, "deviceName": "sub-1"},
                ],
            }
            r = await http.delete("/api/v1/gateways/gw-0001/topology/sub-1")
            assert r.status_code == 200 and r.json()["removed"] == ["sub-1"]
            note = await c.wait_for(c.topic("thing/topo/change"))
            assert note["params"] == {"status": 1, "subList": [{"productKey": SUB_PK, "deviceName": "sub-1"}]}
            # deleting the device itself is a topology change too
            r = await http.delete("/api/v1/devices/sub-0")
            assert r.status_code == 204
            note = await c.wait_for(c.topic("thing/topo/change"))
            assert note["params"]["status"] == 1 and note["params"]["subList"][0]["deviceName"] == "sub-0"
            # the gateway's own change is answered, not notified back to it
            r = await c.request(c.topic("thing/topo/add"), [sub_sign(SUB_PK, "sub-2", _secret(h, "sub-2"))])
            assert r["code"] == 200
            await c.nothing(0.3)
            tree = (await http.get("/api/v1/gateways/gw-0001/topology")).json()
            assert [x["id"] for x in tree["children"]] == ["sub-2"] and tree["topologyVersion"] == 4
        finally:
            await c.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_malformed_requests_and_batch_limits(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        c = await _gateway(h)
        try:
            topo = c.topic("thing/topo/add")
            await c.publish(topo, b"not json", 1)
            r = await c.reply(topo + "_reply")
            assert r["code"] == 6207 and set(r) == {"id", "code", "data", "message"}
            await c.publish(topo, orjson.dumps({"params": []}), 1)
            assert (await c.reply(topo + "_reply"))["code"] == 460
            many = [{"productKey": TRUST_PK, "deviceName": f"t{i}"} for i in range(31)]
            r = await c.request(topo, many)
            assert r["code"] == 460 and "at most 30" in r["message"]
            login = f"/ext/session/{GW_PK}/gw-0001/combine/batch_login"
            devs = [sub_sign(SUB_PK, f"s{i}", "x" * 10) for i in range(51)]
            r = await c.request(login, {"signMethod": "hmacSha256", "deviceList": devs}, qos=0)
            assert r["code"] == 460 and "at most 50" in r["message"]
            r = await c.request(c.topic("thing/nothing/here"), {})
            assert r["code"] == 6203
            # another device's topics are not this session's
            r = await c.request("/sys/otherPk/other/thing/topo/get", {})
            assert r["code"] == 6203
            assert await h.store.devices.children("gw-0001") == []
            # SUBSCRIBE inside its own namespace is granted (and changes nothing); others' is refused
            assert await c.subscribe(c.topic("thing/service/+"), 1) == [1]
            assert await c.subscribe("/sys/otherPk/other/#", 1) == [0x80]
        finally:
            await c.disconnect()
