"""Sub-device takeover against a real ``gatehub serve``: gateway B publishing for gateway A's
sub-device is refused while A is online (its data dropped, a log line, a counter) and takes the
sub-device over once A is offline (a log line, a topology event on the REST event stream); an
RPC reply from a gateway the call was not sent to is ignored; a hub with
``subdevice_takeover = "allow"`` keeps ThingsBoard's immediate takeover."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess, wait_until
from tests.integration.mqtt_helpers import V5, Paho

TS = 1_700_000_000_000


def _provision(hub: HubProcess) -> dict[str, str]:
    tenant = unique("takeover")
    hub.tenant(tenant)
    hub.product(tenant, f"{tenant}-gw", "gateway")
    a, b = f"{tenant}-gw-a", f"{tenant}-gw-b"
    hub.gateway(tenant, a, f"{tenant}-gw", f"tok-{a}")
    hub.gateway(tenant, b, f"{tenant}-gw", f"tok-{b}")
    return {"tenant": tenant, "a": a, "b": b}


def _metric(hub: HubProcess, name: str) -> float:
    text = httpx.get(hub.url + "/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m is not None, f"no {name} in /metrics"
    return float(m.group(1))


async def _gateway(hub: HubProcess, gw: str) -> Paho:
    c = Paho(f"client-{gw}", V5)
    rc, _ = await c.connect(hub.ports.mqtt, username=f"tok-{gw}")
    assert rc == 0
    return c


async def _send(c: Paho, topic: str, body: Any) -> None:
    await c.publish(topic, orjson.dumps(body), 1)  # waits for the PUBACK (after the commit)


def _points(hub: HubProcess, device_id: str) -> list[int]:
    return [p["ts"] for p in hub.telemetry(device_id, "v").get("v", [])]


@contextlib.asynccontextmanager
async def _event_stream(hub: HubProcess, tenant: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The topology events of ``tenant`` on ``/events/stream``, as they arrive."""
    got: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def read() -> None:
        async with (
            hub.async_rest() as api,
            api.stream("GET", "/events/stream", params={"tenantId": tenant, "types": "topology"}) as r,
        ):
            assert r.status_code == 200
            event = ""
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "topology":
                    got.append(orjson.loads(line[6:]))

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(connected.wait(), 10)
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _until(check: Any, timeout: float = 15.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"{what} not met within {timeout} s"
        await asyncio.sleep(0.1)


async def test_takeover_refused_while_the_parent_is_online_rpc_reply_checked_then_taken(e2e_hub: HubProcess) -> None:
    hub = e2e_hub
    t = _provision(hub)
    tenant, a_id, b_id = t["tenant"], t["a"], t["b"]
    refused0 = _metric(hub, "gatehub_subdevice_takeovers_refused")
    taken0 = _metric(hub, "gatehub_subdevice_takeovers")
    replies0 = _metric(hub, "gatehub_rpc_replies_refused")
    async with _event_stream(hub, tenant) as events:
        a = await _gateway(hub, a_id)
        b = await _gateway(hub, b_id)
        try:
            assert await a.subscribe("v1/gateway/rpc", 1) == [1]
            await _send(a, "v1/gateway/connect", {"device": "S"})
            await _send(a, "v1/gateway/telemetry", {"S": [{"ts": TS, "values": {"v": 1}}]})
            s = hub.find_device(tenant, "S")
            assert s is not None and s["parentId"] == a_id
            # B publishes for A's sub-device: refused, B's data for it dropped
            await _send(b, "v1/gateway/telemetry", {"S": [{"ts": TS + 1, "values": {"v": 2}}]})
            s = hub.find_device(tenant, "S")
            assert s is not None and s["parentId"] == a_id
            assert _points(hub, s["id"]) == [TS]
            assert _metric(hub, "gatehub_subdevice_takeovers_refused") == refused0 + 1
            wait_until(
                lambda: f"sub-device takeover refused: tenant {tenant}, device {s['id']}" in hub.stderr(),
                what="the refusal in the hub's log",
            )

            # an RPC to S goes to A; B's answer is ignored, A's completes it
            async with hub.async_rest() as api:
                call = asyncio.create_task(
                    api.post(f"/devices/{s['id']}/rpc", json={"method": "open", "timeout": 20_000})
                )
                (msg,) = await a.expect(1, timeout=10)
                rid = orjson.loads(msg.payload)["data"]["id"]
                await _send(b, "v1/gateway/rpc", {"device": "S", "id": rid, "data": "forged"})
                await _until(lambda: _metric(hub, "gatehub_rpc_replies_refused") == replies0 + 1, what="refused reply")
                assert not call.done()
                assert f"reply from {b_id} ignored; the call was sent to {a_id}" in hub.stderr()
                await _send(a, "v1/gateway/rpc", {"device": "S", "id": rid, "data": {"ok": True}})
                r = await asyncio.wait_for(call, 15)
                assert r.status_code == 200 and r.json() == {"ok": True}, r.text

            # A goes offline: B's next message takes S over
            await a.disconnect()
            wait_until(lambda: hub.api("GET", f"/devices/{a_id}")["presence"] != "online", what="A offline")
            await _send(b, "v1/gateway/telemetry", {"S": [{"ts": TS + 2, "values": {"v": 3}}]})
            s = hub.find_device(tenant, "S")
            assert s is not None and s["parentId"] == b_id
            assert _points(hub, s["id"]) == [TS, TS + 2]
            assert _metric(hub, "gatehub_subdevice_takeovers") == taken0 + 1
            wait_until(
                lambda: f"device {s['id']} ('S') moved from gateway {a_id} (offline) to gateway {b_id}" in hub.stderr(),
                what="the takeover in the hub's log",
            )
            moved = {"deviceId": s["id"], "from": a_id, "to": b_id}
            await _until(lambda: len([e for e in events if e.get("takeovers")]) >= 2, what="SSE takeover events")
            seen = [e for e in events if e.get("takeovers")]
            assert sorted(e["gatewayId"] for e in seen) == [a_id, b_id]
            assert all(e["takeovers"] == [moved] for e in seen)
        finally:
            for c in (a, b):
                with contextlib.suppress(Exception):
                    await c.disconnect()


async def test_allow_takes_over_at_once(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub", subdevice_takeover="allow")
    hub.start()
    try:
        t = _provision(hub)
        tenant, a_id, b_id = t["tenant"], t["a"], t["b"]
        async with _event_stream(hub, tenant) as events:
            a = await _gateway(hub, a_id)
            b = await _gateway(hub, b_id)
            try:
                await _send(a, "v1/gateway/connect", {"device": "S"})
                await _send(b, "v1/gateway/telemetry", {"S": [{"ts": TS, "values": {"v": 1}}]})
                s = hub.find_device(tenant, "S")
                assert s is not None and s["parentId"] == b_id
                assert _points(hub, s["id"]) == [TS]
                assert _metric(hub, "gatehub_subdevice_takeovers") == 1
                assert _metric(hub, "gatehub_subdevice_takeovers_refused") == 0
                wait_until(
                    lambda: f"moved from gateway {a_id} (online) to gateway {b_id}" in hub.stderr(),
                    what="the takeover in the hub's log",
                )
                await _until(lambda: len([e for e in events if e.get("takeovers")]) >= 2, what="SSE takeover events")
            finally:
                for c in (a, b):
                    with contextlib.suppress(Exception):
                        await c.disconnect()
    finally:
        hub.assert_clean_exit(hub.stop())
