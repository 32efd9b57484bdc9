"""The ThingsBoard gateway API end to end with paho (MQTT 5), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehub.domain.model import DeviceKind, NodeType, Presence
from tests.interop.tbhub import GW2_TOKEN, TENANT, Paho, TbHub, gateway_client, tb_hub


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


async def test_connect_telemetry_with_and_without_ts_and_presence(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        assert await gw.publish("v1/gateway/connect", {"device": "Dev A", "type": "thermostat"}) == 0
        a = await h.device("Dev A")
        assert a.kind is DeviceKind.SUBDEVICE and a.parent_id == "gw1" and a.presence is Presence.ONLINE
        prod = await h.store.catalog.get_product(TENANT, a.product_id)
        assert prod.name == "thermostat" and prod.node_type is NodeType.SUBDEVICE
        body = {
            "Dev A": [{"ts": 1_700_000_000_000, "values": {"t": 21.5, "on": True}}, {"hum": 40}],
            "Dev B": [{"ts": 1_700_000_000_001, "values": {"t": 3}}],  # never announced: implicit connect
            "Dev C": {"t": 1},  # not a list: refused for this device only
        }
        assert await gw.publish("v1/gateway/telemetry", body) == 0
        pts = await h.points(a.id)
        assert pts["t"] == [{"ts": 1_700_000_000_000, "value": 21.5}]
        assert pts["on"][0]["value"] is True
        assert pts["hum"][0]["ts"] > 1_700_000_000_000  # the hub's receive time
        b = await h.device("Dev B")
        assert b.parent_id == "gw1" and b.presence is Presence.ONLINE
        assert (await h.store.catalog.get_product(TENANT, b.product_id)).name == "default"
        assert (await h.points(b.id))["t"] == [{"ts": 1_700_000_000_001, "value": 3}]
        c = await h.store.devices.find_by_name(TENANT, "Dev C")
        assert c is None or not await h.points(c.id)
        assert await gw.publish("v1/gateway/telemetry", b"not json") == 0x99
        assert await gw.publish("v1/gateway/disconnect", {"device": "Dev A"}) == 0
        assert (await h.device("Dev A")).presence is Presence.OFFLINE
    # the gateway's session ended: its online sub-devices are offline because of it
    await h.wait_for(lambda: _presence(h, "Dev B", Presence.GATEWAY_OFFLINE))
    assert (await h.device("Dev A")).presence is Presence.OFFLINE
    assert (await h.device("Gateway 1")).presence is Presence.OFFLINE


async def _presence(h: TbHub, name: str, want: Presence) -> bool:
    return (await h.device(name)).presence is want


async def test_client_attributes_requests_and_shared_push(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        await gw.publish("v1/gateway/connect", {"device": "Dev A"})
        assert await gw.publish("v1/gateway/attributes", {"Dev A": {"fw": "1.2", "n": 3}, "Dev X": [1]}) == 0
        dev = await h.device("Dev A")
        assert (await h.store.data.attributes(dev.id))["client"] == {"fw": "1.2", "n": 3}
        # a shared attribute written through the REST API is pushed to the gateway
        r = await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"target": 22, "mode": "eco"})
        assert r.status_code == 200, r.text
        assert await gw.expect("v1/gateway/attributes") == {"device": "Dev A", "data": {"target": 22, "mode": "eco"}}
        # requests: "key" -> "value", "keys" -> "values"
        await gw.publish("v1/gateway/attributes/request", {"id": 1, "device": "Dev A", "client": True, "key": "fw"})
        assert await gw.expect("v1/gateway/attributes/response") == {"id": 1, "device": "Dev A", "value": "1.2"}
        req = {"id": 2, "device": "Dev A", "client": False, "keys": ["target", "mode"]}
        await gw.publish("v1/gateway/attributes/request", req)
        resp = await gw.expect("v1/gateway/attributes/response")
        assert resp == {"id": 2, "device": "Dev A", "values": {"target": 22, "mode": "eco"}}
        # deletion is pushed too
        r = await h.http.delete(f"/api/v1/devices/{dev.id}/attributes/shared", params={"keys": "mode"})
        assert r.status_code == 204
        assert await gw.expect("v1/gateway/attributes") == {"device": "Dev A", "data": {"deleted": ["mode"]}}


async def test_server_side_rpc_two_way_timeout_and_no_echo(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        await gw.publish("v1/gateway/connect", {"device": "Valve"})
        dev = await h.device("Valve")
        call = asyncio.create_task(
            h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={"method": "open", "params": {"pct": 50}})
        )
        req = await gw.expect("v1/gateway/rpc")
        assert req["device"] == "Valve" and req["data"]["method"] == "open" and req["data"]["params"] == {"pct": 50}
        rid = req["data"]["id"]
        assert await gw.publish("v1/gateway/rpc", {"device": "Valve", "id": rid, "data": {"ok": True}}) == 0
        r = await asyncio.wait_for(call, 15)
        assert r.status_code == 200 and r.json() == {"ok": True}
        # the gateway's own reply is not echoed back to it
        await asyncio.sleep(0.2)
        assert not [m for m in gw.pending() if m[0] == "v1/gateway/rpc"]
        calls = (await h.http.get(f"/api/v1/devices/{dev.id}/rpc")).json()["items"]
        assert calls[0]["status"] == "SUCCESSFUL" and calls[0]["response"] == {"ok": True}
        # no reply within the timeout: 504 and TIMEOUT
        r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={"method": "slow", "timeout": 300})
        assert r.status_code == 504, r.text
        assert (await gw.expect("v1/gateway/rpc"))["data"]["method"] == "slow"
        calls = (await h.http.get(f"/api/v1/devices/{dev.id}/rpc", params={"status": "TIMEOUT"})).json()["items"]
        assert [c["method"] for c in calls] == ["slow"]
        # one-way: answered once delivered
        r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={"method": "blink", "oneway": True})
        assert r.status_code == 200 and r.json()["status"] == "SUCCESSFUL", r.text
        assert (await h.http.get(f"/api/v1/rpc/{r.json()['rpcId']}")).json()["status"] == "SUCCESSFUL"


async def test_persistent_rpc_and_shared_attributes_reach_a_reconnecting_gateway(h: TbHub) -> None:
    async with gateway_client(h, client_id="gw-a") as gw:
        await gw.publish("v1/gateway/connect", {"device": "Pump"})
    dev = await h.device("Pump")
    await h.wait_for(lambda: _presence(h, "Pump", Presence.GATEWAY_OFFLINE))
    await asyncio.sleep(0.01)
    # while the gateway is away
    body = {"method": "start", "params": 1, "persistent": True, "timeout": 5000}
    r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json=body)
    assert r.status_code == 200 and r.json()["status"] == "QUEUED", r.text
    rpc_id = r.json()["rpcId"]
    expired = await h.http.post(
        f"/api/v1/devices/{dev.id}/rpc", json={"method": "old", "persistent": True, "expirationTime": _soon()}
    )
    assert (await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"speed": 7})).status_code == 200
    await h.wait_for(lambda: _status(h, expired.json()["rpcId"], "EXPIRED"), 10)
    async with gateway_client(h, client_id="gw-a") as gw:
        await gw.publish("v1/gateway/connect", {"device": "Pump"})
        req = await gw.expect("v1/gateway/rpc")
        assert req["data"]["method"] == "start"
        assert await gw.expect("v1/gateway/attributes") == {"device": "Pump", "data": {"speed": 7}}
        await h.wait_for(lambda: _status(h, rpc_id, "DELIVERED"))
        await gw.publish("v1/gateway/rpc", {"device": "Pump", "id": req["data"]["id"], "data": "started"})
        await h.wait_for(lambda: _status(h, rpc_id, "SUCCESSFUL"))
        got = (await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()
        assert got["response"] == "started"
        assert not [m for m in gw.pending() if m[0] == "v1/gateway/rpc"]  # the expired call never went out


def _soon() -> int:
    from gatehub.domain.telemetry import now_ms

    return now_ms() + 300


async def _status(h: TbHub, rpc_id: str, want: str) -> bool:
    return bool((await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()["status"] == want)


async def test_claim_window_and_refusals(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        claim = {"Meter": {"secretKey": "s3cret", "durationMs": 60000}, "Old": {"secretKey": "x", "durationMs": 1}}
        assert await gw.publish("v1/gateway/claim", claim) == 0
    meter, old = await h.device("Meter"), await h.device("Old")
    c = h.customer_http
    # the customer cannot see the unclaimed device
    assert (await c.get(f"/api/v1/devices/{meter.id}")).status_code == 404
    r = await c.post(f"/api/v1/devices/{meter.id}/claim", json={"secretKey": "wrong"})
    assert r.status_code == 403, r.text
    r = await c.post(f"/api/v1/devices/{meter.id}/claim", json={"secretKey": "s3cret"})
    assert r.status_code == 200, r.text
    assert (await h.device("Meter")).customer_id == "cust1"
    assert (await c.get(f"/api/v1/devices/{meter.id}")).status_code == 200
    listed = (await c.get("/api/v1/devices")).json()["items"]
    assert [d["name"] for d in listed] == ["Meter"]
    r = await c.post(f"/api/v1/devices/{meter.id}/claim", json={"secretKey": "s3cret"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_claimed"
    await asyncio.sleep(0.05)
    r = await c.post(f"/api/v1/devices/{old.id}/claim", json={"secretKey": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "claim_expired"
    # a tenant key must say for which customer
    r = await h.http.post(f"/api/v1/devices/{old.id}/claim", json={"secretKey": "x"})
    assert r.status_code == 400


async def test_device_moves_to_another_gateway_and_rename_keeps_history(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        await gw.publish("v1/gateway/telemetry", {"Roamer": [{"ts": 1000, "values": {"v": 1}}]})
    # Gateway 1 is offline (a takeover while it is online is refused: test_subdevice_takeover.py)
    await h.wait_for(lambda: _presence(h, "Gateway 1", Presence.OFFLINE))
    v1 = (await h.device("Gateway 1")).topology_version
    dev = await h.device("Roamer")
    r = await h.http.patch(f"/api/v1/devices/{dev.id}", json={"name": "Roamer 2"})
    assert r.status_code == 200, r.text
    async with gateway_client(h, GW2_TOKEN) as gw2:
        assert await gw2.publish("v1/gateway/telemetry", {"Roamer 2": [{"ts": 2000, "values": {"v": 2}}]}) == 0
    moved = await h.device("Roamer 2")
    assert moved.id == dev.id and moved.parent_id == "gw2"
    assert (await h.device("Gateway 1")).topology_version == v1 + 1
    assert (await h.device("Gateway 2")).topology_version >= 1
    assert (await h.points(dev.id))["v"] == [{"ts": 1000, "value": 1}, {"ts": 2000, "value": 2}]


async def test_gateway_api_needs_a_gateway_and_a_valid_token(h: TbHub) -> None:
    bad = await Paho(h.port, "no-such-token").connect(expect_ok=False)
    assert bad.reason.is_failure
    await bad.close()
    await h.store.catalog.create_product(TENANT, "plain", "plain", NodeType.DIRECT)
    await h.store.devices.create(TENANT, "Plain", "plain", access_token="plain-token")
    d = await Paho(h.port, "plain-token").connect()
    assert await d.publish("v1/gateway/telemetry", {"X": [{"a": 1}]}) == 0x87
    assert await d.publish("v1/devices/me/telemetry", {"a": 1}) == 0
    await d.close()
    assert (await h.points((await h.device("Plain")).id))["a"][0]["value"] == 1


async def test_persistent_rpc_without_reply_is_sent_again_then_times_out(h: TbHub) -> None:
    async with gateway_client(h) as gw:
        await gw.publish("v1/gateway/connect", {"device": "Deaf"})
        dev = await h.device("Deaf")
        body = {"method": "poke", "persistent": True, "timeout": 300}
        rpc_id = (await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json=body)).json()["rpcId"]
        first = await gw.expect("v1/gateway/rpc")
        again = await gw.expect("v1/gateway/rpc")  # no reply: sent again with the same request id
        assert again == first
        await gw.expect("v1/gateway/rpc")  # rpc_persistent_retries = 2
        await h.wait_for(lambda: _status(h, rpc_id, "TIMEOUT"))
        # a late reply changes nothing
        await gw.publish("v1/gateway/rpc", {"device": "Deaf", "id": first["data"]["id"], "data": 1})
        assert (await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()["status"] == "TIMEOUT"


async def test_a_thingsboard_gateway_gets_nothing_of_other_dialects(h: TbHub) -> None:
    """Topology changes made for a ThingsBoard gateway (its own connects, an operator's attach)
    reach it only in its own dialect: never an Alink ``/sys/.../thing/topo/change`` push."""
    async with gateway_client(h) as gw:
        assert await gw.publish("v1/gateway/connect", {"device": "Dev A", "type": "thermostat"}) == 0
        assert await gw.publish("v1/gateway/telemetry", {"Dev B": [{"v": 1}]}) == 0  # implicit connect
        a = await h.device("Dev A")
        c = await h.store.devices.create(TENANT, "Dev C", a.product_id)
        r = await h.http.post("/api/v1/gateways/gw1/topology", json={"add": [c.id]})  # an operator attaches it
        assert r.status_code == 200, r.text
        assert (await h.device("Dev C")).parent_id == "gw1"
        # an RPC round trip: everything the hub sent before it has arrived
        call = asyncio.create_task(
            h.http.post(f"/api/v1/devices/{a.id}/rpc", json={"method": "ping", "params": {}, "timeout": 5000})
        )
        req = await gw.expect("v1/gateway/rpc")
        assert await gw.publish("v1/gateway/rpc", {"device": "Dev A", "id": req["data"]["id"], "data": "pong"}) == 0
        assert (await call).status_code == 200
        leaked = [t for t, _ in gw.pending() if not t.startswith("v1/")]
        assert leaked == []


async def test_deleted_product_and_device_are_created_again_on_the_next_connect(h: TbHub) -> None:
    """Issue 19 (8): the dialect's type -> product cache follows deletions over REST."""
    async with gateway_client(h) as gw:
        assert await gw.publish("v1/gateway/connect", {"device": "Meter X", "type": "water-meter"}) == 0
        dev = await h.device("Meter X")
        product_id = dev.product_id
        assert (await h.store.catalog.get_product(TENANT, product_id)).name == "water-meter"
        # the operator deletes the device, then its auto-created product
        r = await h.http.delete(f"/api/v1/devices/{dev.id}")
        assert r.status_code == 204, r.text
        r = await h.http.delete(f"/api/v1/products/{product_id}")
        assert r.status_code == 204, r.text
        assert await h.store.devices.find_by_name(TENANT, "Meter X") is None
        # the same gateway session connects the same name and type again: created again
        for _ in range(100):  # the session learns of the deletion through the topology event
            assert await gw.publish("v1/gateway/connect", {"device": "Meter X", "type": "water-meter"}) == 0
            if await h.store.devices.find_by_name(TENANT, "Meter X") is not None:
                break
            await asyncio.sleep(0.05)
        again = await h.device("Meter X")
        assert again.presence is Presence.ONLINE and again.parent_id == "gw1"
        assert (await h.store.catalog.get_product(TENANT, again.product_id)).name == "water-meter"
        body = {"Meter X": [{"ts": 1_700_000_000_000, "values": {"litres": 12.5}}]}
        assert await gw.publish("v1/gateway/telemetry", body) == 0
        assert (await h.points(again.id))["litres"] == [{"ts": 1_700_000_000_000, "value": 12.5}]


async def test_a_refused_name_is_tried_again_on_the_next_connect(h: TbHub) -> None:
    """Issue 19 (8): a name refused once (a direct device's) is not ignored for the rest of the
    session: once the operator has removed what refused it, the next connect creates it."""
    await h.store.catalog.create_product(TENANT, "plain", "Plain device", NodeType.DIRECT)
    direct = await h.store.devices.create(TENANT, "Boiler", "plain")
    async with gateway_client(h) as gw:
        assert await gw.publish("v1/gateway/connect", {"device": "Boiler", "type": "boiler"}) == 0
        assert (await h.device("Boiler")).kind is DeviceKind.DIRECT  # refused: not a sub-device
        r = await h.http.delete(f"/api/v1/devices/{direct.id}")
        assert r.status_code == 204, r.text
        assert await gw.publish("v1/gateway/connect", {"device": "Boiler", "type": "boiler"}) == 0
        sub = await h.device("Boiler")
        assert sub.kind is DeviceKind.SUBDEVICE and sub.parent_id == "gw1" and sub.presence is Presence.ONLINE
        assert (
            await gw.publish("v1/gateway/telemetry", {"Boiler": [{"ts": 1_700_000_000_000, "values": {"t": 60}}]}) == 0
        )
        assert (await h.points(sub.id))["t"] == [{"ts": 1_700_000_000_000, "value": 60}]
