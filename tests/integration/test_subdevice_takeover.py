"""Sub-device takeover inside a tenant (``subdevice_takeover``): a gateway publishing for another
gateway's sub-device, over the ThingsBoard API (data, the topology/add extension), Alink
``thing/topo/add``, and RPC replies from a gateway the call was not sent to; on SQLite and
PostgreSQL, both event loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gatehub.bus import Subscription
from gatehub.domain.model import NodeType, Presence
from gatehub.services.takeover import SubdeviceTakeover
from tests.integration.alink_helpers import GW_PK, SUB_PK, AlinkClient, alink_hub, sub_sign
from tests.integration.alink_helpers import TENANT as ALI
from tests.interop.tbhub import GATEWAY_TOPICS, GW2_TOKEN, GW_TOKEN, TENANT, Paho, TbHub, gateway_client, tb_hub

TAKEOVER_LOG = "gatehub.services.takeover"
RPC_LOG = "gatehub.services.rpc"


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


def policy(h: TbHub) -> SubdeviceTakeover:
    assert h.node.services is not None
    return h.node.services.takeover


def topology_events(h: TbHub) -> Subscription:
    return h.node.bus.subscribe(f"t.{TENANT}.topology.*", maxsize=1000)


async def takeover_events(sub: Subscription, n: int = 2, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``n`` topology events that carry a takeover."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        env = await sub.get(timeout=timeout)
        assert env is not None, f"only {out} within {timeout} s"
        if env.data.get("takeovers"):
            out.append(env.data)
    return out


async def gateway_offline(h: TbHub, name: str) -> None:
    async def offline() -> bool:
        return (await h.device(name)).presence is not Presence.ONLINE

    await h.wait_for(offline)


async def gateway(h: TbHub, token: str = GW_TOKEN, client_id: str = "") -> Paho:
    """A connected gateway client the test closes itself (when it goes offline mid-test)."""
    c = await Paho(h.port, token, client_id).connect()
    await c.subscribe(*GATEWAY_TOPICS)
    return c


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_refused_while_the_parent_is_online_taken_once_it_is_offline(
    h: TbHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=TAKEOVER_LOG)
    events = topology_events(h)
    a = await gateway(h)
    try:
        assert await a.publish("v1/gateway/telemetry", {"Shared": [{"ts": 1000, "values": {"v": 1}}]}) == 0
        s = await h.device("Shared")
        assert s.parent_id == "gw1"
        async with gateway_client(h, GW2_TOKEN) as b:
            for i in range(2):  # refused, twice: counted each time, logged once
                body = {"Shared": [{"ts": 2000 + i, "values": {"v": 2}}], "Own": [{"ts": 2000, "values": {"w": 1}}]}
                assert await b.publish("v1/gateway/telemetry", body) == 0  # ThingsBoard has no per-device error
            assert await b.publish("v1/gateway/connect", {"device": "Shared"}) == 0
            assert await b.publish("v1/gateway/attributes", {"Shared": {"fw": "evil"}}) == 0
            s = await h.device("Shared")
            assert s.parent_id == "gw1" and s.presence is Presence.ONLINE
            assert (await h.points(s.id))["v"] == [{"ts": 1000, "value": 1}]
            assert "fw" not in (await h.store.data.attributes(s.id)).get("client", {})
            assert (await h.points((await h.device("Own")).id))["w"] == [{"ts": 2000, "value": 1}]
            assert policy(h).refused == 4 and policy(h).taken == 0
            refused = lines(caplog, "sub-device takeover refused")
            assert len(refused) == 1 and refused[0].levelno == logging.WARNING
            msg = refused[0].getMessage()
            assert TENANT in msg and s.id in msg and "gateway gw1 is online" in msg and "gateway gw2 asked" in msg
            # A's own data for it still counts
            assert await a.publish("v1/gateway/telemetry", {"Shared": [{"ts": 3000, "values": {"v": 3}}]}) == 0
            assert [p["ts"] for p in (await h.points(s.id))["v"]] == [1000, 3000]

            # A goes offline: B's next message takes S over
            await a.close()
            await gateway_offline(h, "Gateway 1")
            assert await b.publish("v1/gateway/telemetry", {"Shared": [{"ts": 4000, "values": {"v": 4}}]}) == 0
            s = await h.device("Shared")
            assert s.parent_id == "gw2" and s.presence is Presence.ONLINE
            assert [p["ts"] for p in (await h.points(s.id))["v"]] == [1000, 3000, 4000]
            assert policy(h).taken == 1
            taken = lines(caplog, "sub-device takeover:")
            assert len(taken) == 1 and taken[0].levelno == logging.INFO
            assert f"device {s.id}" in taken[0].getMessage() and "from gateway gw1 (offline) to gateway gw2" in (
                taken[0].getMessage()
            )
            got = await takeover_events(events)
            assert sorted(e["gatewayId"] for e in got) == ["gw1", "gw2"]
            for e in got:
                assert e["takeovers"] == [{"deviceId": s.id, "from": "gw1", "to": "gw2"}]
                assert e["source"] == "thingsboard:c-gw2-token"
            assert next(e for e in got if e["gatewayId"] == "gw1")["removed"] == [s.id]
            # and now A, back, is the one refused
            a = await gateway(h)
            assert await a.publish("v1/gateway/telemetry", {"Shared": [{"ts": 5000, "values": {"v": 5}}]}) == 0
            assert (await h.device("Shared")).parent_id == "gw2"
            assert 5000 not in [p["ts"] for p in (await h.points(s.id))["v"]]
    finally:
        await a.close()
        events.close()


async def test_allow_keeps_thingsboards_takeover(tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=TAKEOVER_LOG)
    async with tb_hub(tmp_path, db_url, subdevice_takeover="allow") as h:
        events = topology_events(h)
        async with gateway_client(h) as a, gateway_client(h, GW2_TOKEN) as b:
            assert await a.publish("v1/gateway/connect", {"device": "Shared"}) == 0
            assert await b.publish("v1/gateway/telemetry", {"Shared": [{"ts": 2000, "values": {"v": 2}}]}) == 0
            s = await h.device("Shared")
            assert s.parent_id == "gw2"
            assert (await h.points(s.id))["v"] == [{"ts": 2000, "value": 2}]
            assert policy(h).taken == 1 and policy(h).refused == 0
            taken = lines(caplog, "sub-device takeover:")
            assert len(taken) == 1 and taken[0].levelno == logging.WARNING  # its gateway was online
            assert "from gateway gw1 (online) to gateway gw2" in taken[0].getMessage()
            got = await takeover_events(events)
            assert all(e["takeovers"] == [{"deviceId": s.id, "from": "gw1", "to": "gw2"}] for e in got)
        events.close()


async def test_topology_add_extension_refuses_per_device(h: TbHub) -> None:
    await h.store.catalog.create_product(TENANT, "meter", "Electricity meter", NodeType.SUBDEVICE)

    async def add(c: Paho, rid: int) -> dict[str, Any]:
        assert (
            await c.publish("v1/gateway/topology/add", {"id": rid, "devices": [{"device": "M", "productKey": "meter"}]})
            == 0
        )
        r = await c.expect("v1/gateway/topology/add/response")
        return r["results"][0]  # type: ignore[no-any-return]

    async with gateway_client(h) as a:
        await a.subscribe("v1/gateway/topology/#")
        assert (await add(a, 1))["code"] == 200
        async with gateway_client(h, GW2_TOKEN) as b:
            await b.subscribe("v1/gateway/topology/#")
            r = await add(b, 2)
            assert r["code"] == 409 and r["error"] == "other_gateway" and "gw1" in r["message"]
            assert (await h.device("M")).parent_id == "gw1" and policy(h).refused == 1
            await a.close()
            await gateway_offline(h, "Gateway 1")
            assert (await add(b, 3))["code"] == 200
            assert (await h.device("M")).parent_id == "gw2" and policy(h).taken == 1


async def _rpc_status(h: TbHub, device_id: str) -> str:
    items = (await h.http.get(f"/api/v1/devices/{device_id}/rpc")).json()["items"]
    return str(items[0]["status"]) if items else ""


async def test_rpc_reply_counts_only_from_the_gateway_it_was_sent_to(
    h: TbHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RPC_LOG)
    assert h.node.services is not None
    rpc = h.node.services.rpc
    async with gateway_client(h) as a, gateway_client(h, GW2_TOKEN) as b:
        assert await a.publish("v1/gateway/connect", {"device": "Valve"}) == 0
        dev = await h.device("Valve")
        call = asyncio.create_task(
            h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={"method": "open", "timeout": 20_000})
        )
        req = await a.expect("v1/gateway/rpc")
        rid = req["data"]["id"]
        await h.wait_for(lambda: _delivered(h, dev.id))
        # B answers A's call: ignored (and B does not take Valve over by answering)
        assert await b.publish("v1/gateway/rpc", {"device": "Valve", "id": rid, "data": "forged"}) == 0
        assert await _rpc_status(h, dev.id) == "DELIVERED" and not call.done()
        assert (await h.device("Valve")).parent_id == "gw1"
        assert rpc.replies_refused == 1
        assert any("reply from gw2 ignored; the call was sent to gw1" in r.getMessage() for r in caplog.records)
        # the real reply completes it
        assert await a.publish("v1/gateway/rpc", {"device": "Valve", "id": rid, "data": {"ok": True}}) == 0
        r = await asyncio.wait_for(call, 15)
        assert r.status_code == 200 and r.json() == {"ok": True}


async def _delivered(h: TbHub, device_id: str) -> bool:
    return await _rpc_status(h, device_id) == "DELIVERED"


async def test_rpc_reply_after_the_device_moved_counts_from_where_it_was_sent_last(h: TbHub) -> None:
    """Sent to A; A goes away; B takes the device over (A is offline) and the persistent call is
    sent again, to B. A, back, answers the call: no longer A's to answer. B's answer counts."""
    assert h.node.services is not None
    rpc = h.node.services.rpc
    a = await gateway(h, client_id="gw-a")
    try:
        assert await a.publish("v1/gateway/connect", {"device": "Valve"}) == 0
        dev = await h.device("Valve")
        body = {"method": "open", "persistent": True, "timeout": 20_000}
        r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json=body)
        rpc_id = r.json()["rpcId"]
        rid = (await a.expect("v1/gateway/rpc"))["data"]["id"]
        await h.wait_for(lambda: _delivered(h, dev.id))
        await a.close()
        await gateway_offline(h, "Gateway 1")
        async with gateway_client(h, GW2_TOKEN) as b:
            assert await b.publish("v1/gateway/connect", {"device": "Valve"}) == 0
            assert (await h.device("Valve")).parent_id == "gw2"
            assert (await b.expect("v1/gateway/rpc"))["data"]["id"] == rid  # sent again, to its gateway now
            await h.wait_for(lambda: _delivered(h, dev.id))
            a = await gateway(h, client_id="gw-a")
            assert await a.publish("v1/gateway/rpc", {"device": "Valve", "id": rid, "data": "late"}) == 0
            assert (await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()["status"] == "DELIVERED"
            assert rpc.replies_refused == 1
            assert (await h.device("Valve")).parent_id == "gw2"  # answering takes nothing over
            assert await b.publish("v1/gateway/rpc", {"device": "Valve", "id": rid, "data": "opened"}) == 0
            got = (await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()
            assert got["status"] == "SUCCESSFUL" and got["response"] == "opened"
    finally:
        await a.close()


async def test_alink_topo_add_of_an_online_gateways_sub_device(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        await h.store.devices.create(ALI, "gw-0002", GW_PK, device_id="gw-0002", secret="gw2-secret-0123456789")
        secret = h.subs["sub-0"].secret
        assert secret is not None
        c1 = AlinkClient(GW_PK, "gw-0001", "gw-secret-0123456789abcdef")
        c2 = AlinkClient(GW_PK, "gw-0002", "gw2-secret-0123456789")
        assert await c1.start(h.port) == 0 and await c2.start(h.port) == 0
        try:
            r = await c1.request(c1.topic("thing/topo/add"), [sub_sign(SUB_PK, "sub-0", secret)])
            assert r["code"] == 200
            # its signature is not enough while gw-0001 is online
            r = await c2.request(c2.topic("thing/topo/add"), [sub_sign(SUB_PK, "sub-0", secret)])
            assert r["code"] == 7104 and "online" in r["message"] and r["data"] == []
            assert (await h.store.devices.get(ALI, "sub-0")).parent_id == "gw-0001"
            await c1.disconnect()

            async def gone() -> bool:
                return (await h.store.devices.get(ALI, "gw-0001")).presence is not Presence.ONLINE  # type: ignore[no-any-return]

            for _ in range(200):
                if await gone():
                    break
                await asyncio.sleep(0.05)
            r = await c2.request(c2.topic("thing/topo/add"), [sub_sign(SUB_PK, "sub-0", secret)])
            assert r["code"] == 200, r
            assert (await h.store.devices.get(ALI, "sub-0")).parent_id == "gw-0002"
            svc = h.m.node.services
            assert svc is not None and svc.takeover.taken == 1 and svc.takeover.refused == 1
        finally:
            await c2.disconnect()
