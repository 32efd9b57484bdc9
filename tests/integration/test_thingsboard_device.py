"""The gateway's own device API (``v1/devices/me/*``) and the rate limits, with paho (MQTT 5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gatehub.domain.model import Presence
from tests.interop.tbhub import TbHub, gateway_client, tb_hub


async def test_gateway_own_device_api(tmp_path: Path, db_url: str) -> None:
    async with tb_hub(tmp_path, db_url) as h, gateway_client(h) as gw:
        assert await gw.publish("v1/devices/me/telemetry", {"cpu": 12}) == 0
        assert await gw.publish("v1/devices/me/telemetry", {"ts": 5000, "values": {"cpu": 13}}) == 0
        assert await gw.publish("v1/devices/me/telemetry", [{"ts": 6000, "values": {"cpu": 14}}, {"mem": 1}]) == 0
        pts = await h.points("gw1")
        assert [p["value"] for p in pts["cpu"]] == [13, 14, 12] and pts["mem"][0]["value"] == 1
        assert await gw.publish("v1/devices/me/attributes", {"version": "3.8"}) == 0
        await h.http.post("/api/v1/devices/gw1/attributes/shared", json={"interval": 5})
        assert await gw.expect("v1/devices/me/attributes") == {"interval": 5}
        await gw.publish("v1/devices/me/attributes/request/7", {"clientKeys": "version", "sharedKeys": "interval"})
        got = await gw.expect("v1/devices/me/attributes/response/7")
        assert got == {"client": {"version": "3.8"}, "shared": {"interval": 5}}
        # client-side RPC: the session limits are the hub's
        await gw.publish("v1/devices/me/rpc/request/1", {"method": "getSessionLimits", "params": {"timeout": 5000}})
        limits = await gw.expect("v1/devices/me/rpc/response/1")
        s = h.node.settings
        assert limits["maxPayloadSize"] == s.mqtt_max_packet_size
        assert limits["maxInflightMessages"] == s.mqtt_receive_maximum
        assert limits["gatewayRateLimits"]["telemetryDataPoints"] == "20000:2"
        await gw.publish("v1/devices/me/rpc/request/2", {"method": "whatever"})
        assert "error" in await gw.expect("v1/devices/me/rpc/response/2")
        # server-side RPC to the gateway itself
        call = asyncio.create_task(h.http.post("/api/v1/devices/gw1/rpc", json={"method": "reboot", "params": {}}))
        req = await gw.expect("v1/devices/me/rpc/request/1")
        assert req == {"method": "reboot", "params": {}}
        await gw.publish("v1/devices/me/rpc/response/1", {"done": 1})
        r = await asyncio.wait_for(call, 15)
        assert r.status_code == 200 and r.json() == {"done": 1}


async def test_rate_limit_disconnects_the_sub_device_with_reason_150(tmp_path: Path, db_url: str) -> None:
    async with tb_hub(tmp_path, db_url, tb_rate_per_device=10.0, tb_rate_burst=1.0) as h, gateway_client(h) as gw:
        many = [{"ts": 1000 + i, "values": {"v": i}} for i in range(30)]
        body = {"Busy": many, "Calm": [{"ts": 1000, "values": {"v": 1}}]}
        assert await gw.publish("v1/gateway/telemetry", body) == 0
        assert await gw.expect("v1/gateway/disconnect") == {"device": "Busy", "reason": 150}
        busy, calm = await h.device("Busy"), await h.device("Calm")
        assert not await h.points(busy.id)  # refused whole: the gateway must resend it
        assert (await h.points(calm.id))["v"] == [{"ts": 1000, "value": 1}]
        await h.wait_for(lambda: _offline(h, "Busy"))
        # within the limit again: accepted (and connected again)
        assert await gw.publish("v1/gateway/telemetry", {"Busy": many[:5]}) == 0
        assert len((await h.points(busy.id))["v"]) == 5
        assert (await h.device("Busy")).presence is Presence.ONLINE
        # the gateway's own device API: over the limit, the message is refused whole with a
        # PUBACK code MQTT 5 allows there (0x97 quota exceeded), so paho completes the publish
        me = {str(i): i for i in range(30)}
        assert await gw.publish("v1/devices/me/telemetry", me) == 0x97
        gw_dev = await h.device("Gateway 1")
        assert not await h.points(gw_dev.id)


async def _offline(h: TbHub, name: str) -> bool:
    return (await h.device(name)).presence is Presence.OFFLINE
