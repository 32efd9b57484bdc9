"""The gatehub extensions of the ThingsBoard gateway API (topology, registration, sequenced
batches) with paho over MQTT 5 and 3.1.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from gatehub.domain.model import NodeType, Presence
from gatehub.protocols.tbext import register_sign
from tests.interop.tbhub import GW_TOKEN, TENANT, Paho, TbHub, gateway_client, tb_hub

EXT_TOPICS = ("v1/gateway/topology/#", "v1/gateway/register/response")


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url, tb_rate_per_device=1000, tb_rate_burst=1) as hub:
        await hub.store.catalog.create_product(TENANT, "meter", "Electricity meter", NodeType.SUBDEVICE)
        yield hub


@pytest.fixture
async def gw(h: TbHub) -> AsyncIterator[Paho]:
    async with gateway_client(h) as c:
        await c.subscribe(*EXT_TOPICS)
        yield c


async def ask(c: Paho, topic: str, body: dict[str, Any]) -> Any:
    assert await c.publish(topic, body) == 0
    return await c.expect(topic.replace("/request", "") + "/response")


async def test_topology_request_add_delete_and_changes(h: TbHub, gw: Paho) -> None:
    r = await ask(gw, "v1/gateway/topology/request", {"id": 1})
    assert r == {"id": 1, "v": 1, "code": 200, "topologyVersion": 0, "devices": []}

    r = await ask(
        gw,
        "v1/gateway/topology/add",
        {"id": 2, "devices": [{"device": "m-1", "productKey": "meter"}, {"device": "t-1", "type": "thermo"}, {}]},
    )
    assert r["code"] == 200 and r["id"] == 2
    assert [x["code"] for x in r["results"]] == [200, 200, 400]
    m1 = await h.device("m-1")
    assert m1.parent_id == "gw1" and m1.product_id == "meter" and m1.presence is Presence.OFFLINE
    assert (await h.store.catalog.get_product(TENANT, (await h.device("t-1")).product_id)).name == "thermo"
    for _ in range(2):  # each add pushes a change to the subscribed gateway
        change = await gw.expect("v1/gateway/topology/change")
        assert change["removed"] == [] and len(change["added"]) == 1
    # a product mismatch and a gateway's name are refused per device
    r = await ask(gw, "v1/gateway/topology/add", {"id": 3, "devices": [{"device": "m-1", "productKey": "tbgw"}]})
    assert r["results"][0]["code"] == 409
    r = await ask(gw, "v1/gateway/topology/add", {"id": 4, "devices": [{"device": "Gateway 2"}]})
    assert r["results"][0]["code"] == 409

    r = await ask(gw, "v1/gateway/topology/request", {"id": 5})
    assert sorted((d["device"], d["productKey"], d["type"]) for d in r["devices"]) == [
        ("m-1", "meter", "Electricity meter"),
        ("t-1", (await h.device("t-1")).product_id, "thermo"),
    ]
    version = r["topologyVersion"]
    assert version >= 2

    # the gateway takes t-1 out of its topology: detached, offline, still on the hub
    assert await gw.publish("v1/gateway/connect", {"device": "t-1"}) == 0
    r = await ask(gw, "v1/gateway/topology/delete", {"id": 6, "devices": ["t-1", "nope"]})
    assert [x["code"] for x in r["results"]] == [200, 404] and r["topologyVersion"] > version
    t1 = await h.device("t-1")
    assert t1.parent_id is None and t1.presence is Presence.OFFLINE
    assert (await gw.expect("v1/gateway/topology/change"))["removed"] == ["t-1"]

    # the hub deletes m-1 (REST): the gateway is told, by name
    assert (await h.http.delete(f"/api/v1/devices/{m1.id}")).status_code == 204
    change = await gw.expect("v1/gateway/topology/change")
    assert change["removed"] == ["m-1"] and change["topologyVersion"] > version + 1
    r = await ask(gw, "v1/gateway/topology/request", {"id": 7})
    assert r["devices"] == []

    # unknown extension version
    r = await ask(gw, "v1/gateway/topology/request", {"id": 8, "v": 2})
    assert r["code"] == 400 and r["error"] == "unsupported_version"


async def test_dynamic_registration_delivers_a_secret_once(h: TbHub, gw: Paho) -> None:
    st = h.store
    await st.catalog.update_product(TENANT, "meter", dynamic_register=True)
    prod = await st.catalog.get_product(TENANT, "meter")
    await st.devices.create(TENANT, "AA-01", "meter")  # pre-registered: the whitelist
    await st.catalog.create_product(TENANT, "closed", "closed", NodeType.SUBDEVICE)
    await st.devices.create(TENANT, "CC-01", "closed")

    def entry(name: str, pk: str = "meter", secret: str = prod.secret) -> dict[str, str]:
        return {"device": name, "productKey": pk, "random": "r1", "sign": register_sign(secret, name, pk, "r1")}

    r = await ask(gw, "v1/gateway/register", {"id": 1, "devices": [entry("AA-01")]})
    res = r["results"][0]
    dev = await h.device("AA-01")
    assert res["code"] == 200 and res["deviceSecret"] == dev.secret and res["accessToken"] == dev.access_token
    assert dev.secret_delivered

    closed = await st.catalog.get_product(TENANT, "closed")
    r = await ask(
        gw,
        "v1/gateway/register",
        {
            "id": 2,
            "devices": [
                entry("AA-01"),  # second request: refused
                entry("BB-02"),  # not pre-registered
                entry("AA-01", secret="wrong"),
                entry("CC-01", "closed", closed.secret),  # product without dynamic registration
                {"device": "x"},
            ],
        },
    )
    assert [(x["code"], x["error"]) for x in r["results"]] == [
        (409, "already_delivered"),
        (404, "not_registered"),
        (403, "bad_sign"),
        (403, "registration_off"),
        (400, "invalid_input"),
    ]
    assert "deviceSecret" not in str(r["results"])


def batch(seq: int, values: dict[str, Any], epoch: str = "e1") -> dict[str, Any]:
    return {"epoch": epoch, "seq": seq, "telemetry": {"m-1": [{"ts": 1_700_000_000_000 + seq, "values": values}]}}


async def test_batches_are_stored_once_and_never_skip_a_refused_one(h: TbHub, gw: Paho) -> None:
    writer = h.node.writer
    assert writer is not None
    assert await gw.publish("v1/gateway/batch", {**batch(1, {"a": 1}), "attributes": {"m-1": {"fw": "2"}}}) == 0
    m1 = await h.device("m-1")  # implicitly added to the topology, not marked online
    assert m1.parent_id == "gw1" and m1.presence is Presence.OFFLINE
    assert (await h.store.data.attributes(m1.id, None, ["fw"]))["client"] == {"fw": "2"}
    committed = writer.rows_committed
    assert await gw.publish("v1/gateway/batch", batch(1, {"a": 99})) == 0  # a replay: acknowledged, not stored
    assert await gw.publish("v1/gateway/batch", batch(2, {"a": 2})) == 0
    assert writer.rows_committed == committed + 1
    stored = [(p["ts"], p["value"]) for p in (await h.points(m1.id))["a"]]
    assert stored == [(1_700_000_000_001, 1), (1_700_000_000_002, 2)]

    # over the rate limit (1,000 points/s, burst 1 s): the whole batch is refused, and the next
    # ones are refused until it comes again
    big = {f"k{i}": i for i in range(1500)}
    assert await gw.publish("v1/gateway/batch", batch(3, big)) == 0x97
    assert await gw.publish("v1/gateway/batch", batch(4, {"a": 4})) == 0x80
    await asyncio.sleep(1.1)
    assert await gw.publish("v1/gateway/batch", batch(3, {"a": 3})) == 0  # the resend (now small)
    assert await gw.publish("v1/gateway/batch", batch(4, {"a": 4})) == 0
    assert [p["value"] for p in (await h.points(m1.id))["a"]] == [1, 2, 3, 4]
    # a new epoch starts over
    assert await gw.publish("v1/gateway/batch", batch(1, {"a": 5}, epoch="e2")) == 0
    assert [p["value"] for p in (await h.points(m1.id))["a"]] == [5, 2, 3, 4]  # same ts: replaced
    for bad in ({"epoch": "", "seq": 1}, {"epoch": "e", "seq": 0}, {"epoch": "e", "seq": 1, "telemetry": []}):
        assert await gw.publish("v1/gateway/batch", bad) == 0x99


async def test_mqtt311_refused_batch_closes_the_session(h: TbHub) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v3gw", protocol=mqtt.MQTTv311)
    c.username_pw_set(GW_TOKEN, "")
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    acked: list[int] = []
    c.on_disconnect = lambda *_a: loop.call_soon_threadsafe(gone.set)
    c.on_publish = lambda _c, _u, mid, *_a: acked.append(mid)
    c.connect("127.0.0.1", h.port)
    c.loop_start()
    try:
        ok = c.publish("v1/gateway/batch", b'{"epoch":"e","seq":1,"telemetry":{"d":[{"x":1}]}}', 1)
        for _ in range(200):
            if ok.mid in acked:
                break
            await asyncio.sleep(0.02)
        assert ok.mid in acked
        big = {f"k{i}": i for i in range(1500)}
        refused = c.publish("v1/gateway/batch", orjson.dumps(batch(2, big, "e")), 1)
        await asyncio.wait_for(gone.wait(), 10)
        assert refused.mid not in acked
    finally:
        c.loop_stop()
