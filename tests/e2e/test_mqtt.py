"""Every MQTT face of a ``gatehub serve`` process with real clients: the ThingsBoard gateway API
over MQTT and MQTTS (a gateway certificate the hub CA issued through ``gatehub cert gateway``),
the plain broker on MQTT 3.1.1 and 5 (paho, and mosquitto_pub/sub when installed), and an Alink
gateway with a signed CONNECT."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess
from tests.integration.alink_helpers import SUB_MODEL, AlinkClient
from tests.integration.mqtt_helpers import V5, V311, Paho

TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def tb(e2e_hub: HubProcess) -> dict[str, Any]:
    """A tenant with a ThingsBoard gateway (token) and that gateway's certificate (CLI)."""
    tenant = unique("tb")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-gw", "gateway")  # product and device ids are hub-wide
    token, gateway = f"tok-{tenant}", f"{tenant}-line-1"
    e2e_hub.gateway(tenant, gateway, f"{tenant}-gw", token)
    cert, key, serial = e2e_hub.gateway_cert(tenant, gateway)
    return {"tenant": tenant, "gateway": gateway, "token": token, "cert": cert, "key": key, "serial": serial}


async def _tb_gateway_round(hub: HubProcess, c: Paho, tb: dict[str, Any], dev: str) -> None:
    """Connect a sub-device, send telemetry, read it back; an RPC from REST answered by the gateway."""
    assert await c.subscribe("v1/gateway/rpc", 1) == [1]
    await c.publish("v1/gateway/connect", orjson.dumps({"device": dev, "type": "meter"}), 1)
    body = {dev: [{"ts": TS, "values": {"kwh": 12.5, "on": True}}, {"ts": TS + 1, "values": {"kwh": 12.9}}]}
    await c.publish("v1/gateway/telemetry", orjson.dumps(body), 1)  # PUBACK after the commit
    found = hub.find_device(tb["tenant"], dev)
    assert found is not None and found["parentId"] == tb["gateway"] and found["presence"] == "online", found
    pts = hub.telemetry(found["id"], "kwh,on")
    assert pts["kwh"] == [{"ts": TS, "value": 12.5}, {"ts": TS + 1, "value": 12.9}], pts
    assert pts["on"] == [{"ts": TS, "value": True}], pts

    async with hub.async_rest() as api:
        call = asyncio.create_task(
            api.post(f"/devices/{found['id']}/rpc", json={"method": "open", "params": {"pct": 50}, "timeout": 10000})
        )
        (msg,) = await c.expect(1, timeout=10)
        req = orjson.loads(msg.payload)
        assert msg.topic == "v1/gateway/rpc" and req["device"] == dev, req
        assert req["data"]["method"] == "open" and req["data"]["params"] == {"pct": 50}
        reply = {"device": dev, "id": req["data"]["id"], "data": {"ok": True}}
        await c.publish("v1/gateway/rpc", orjson.dumps(reply), 1)
        r = await asyncio.wait_for(call, 15)
        assert r.status_code == 200 and r.json() == {"ok": True}, r.text
    rpcs = hub.api("GET", f"/devices/{found['id']}/rpc")["items"]
    assert [x["status"] for x in rpcs] == ["SUCCESSFUL"], rpcs


async def test_thingsboard_gateway_over_mqtt(e2e_hub: HubProcess, tb: dict[str, Any]) -> None:
    with Paho("tb-line-1", V5) as c:
        rc, _ = await c.connect(e2e_hub.ports.mqtt, username=tb["token"])
        assert rc == 0
        await _tb_gateway_round(e2e_hub, c, tb, "meter-tcp")
        await c.disconnect()


async def test_thingsboard_gateway_over_mqtts_with_a_hub_certificate(e2e_hub: HubProcess, tb: dict[str, Any]) -> None:
    tls = e2e_hub.client_tls(tb["cert"], tb["key"])
    with Paho("tb-line-1-tls", V5) as c:
        rc, _ = await c.connect(e2e_hub.ports.mqtts, tls=tls)
        assert rc == 0
        await _tb_gateway_round(e2e_hub, c, tb, "meter-tls")
        await c.disconnect()


def test_mqtts_refuses_a_client_without_a_certificate(e2e_hub: HubProcess) -> None:
    ctx = e2e_hub.client_tls()
    with (
        socket.create_connection(("127.0.0.1", e2e_hub.ports.mqtts), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        # TLS 1.3: the client's side of the handshake ends first; the refusal is the next read
        s.sendall(b"\x10\x00")
        if not s.recv(16):
            raise ConnectionError("closed")


@pytest.fixture(scope="module")
def plain(e2e_hub: HubProcess) -> dict[str, Any]:
    tenant = unique("plain")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-sensor", "direct")
    tokens = {}
    for name in ("pub", "sub", "mos-pub", "mos-sub"):
        tokens[name] = f"tok-{tenant}-{name}"
        e2e_hub.device(tenant, f"{tenant}-{name}", f"{tenant}-sensor", accessToken=tokens[name])
    return {"tenant": tenant, "tokens": tokens}


@pytest.mark.parametrize("version", [V311, V5], ids=["mqtt311", "mqtt5"])
async def test_plain_broker_pub_sub(e2e_hub: HubProcess, plain: dict[str, Any], version: int) -> None:
    t = plain["tokens"]
    topic = f"plant/{version}/temp"
    with Paho(f"sub-{version}", version) as sub, Paho(f"pub-{version}", version) as pub:
        assert (await sub.connect(e2e_hub.ports.mqtt, username=t["sub"]))[0] == 0
        assert (await pub.connect(e2e_hub.ports.mqtt, username=t["pub"]))[0] == 0
        assert await sub.subscribe("plant/+/temp", 2) == [2]
        for qos in (0, 1, 2):
            await pub.publish(topic, f"21.{qos}".encode(), qos)
        msgs = await sub.expect(3, timeout=10)
        assert [(m.topic, m.payload, m.qos) for m in msgs] == [(topic, f"21.{q}".encode(), q) for q in (0, 1, 2)]
        await pub.publish(f"plant/{version}/retained", b"kept", 1, retain=True)
        assert await sub.subscribe(f"plant/{version}/retained", 1) == [1]
        (m,) = await sub.expect(1, timeout=10)
        assert (m.payload, m.retain) == (b"kept", True)
        await pub.disconnect()
        await sub.disconnect()


@pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")), reason="no mosquitto clients"
)
def test_plain_broker_with_mosquitto_clients(e2e_hub: HubProcess, plain: dict[str, Any]) -> None:
    t = plain["tokens"]
    port = str(e2e_hub.ports.mqtt)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-u",
            t["mos-sub"],
            "-t",
            "mos/#",
            "-C",
            "2",
            "-W",
            "20",
            "-V",
            "mqttv5",
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it subscribe
        for i, v in enumerate(("mqttv311", "mqttv5")):
            subprocess.run(
                [
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    port,
                    "-u",
                    t["mos-pub"],
                    "-t",
                    f"mos/{i}",
                    "-m",
                    f"m{i}",
                    "-q",
                    "1",
                    "-V",
                    v,
                ],
                check=True,
                timeout=20,
            )
        out, err = sub.communicate(timeout=25)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["mos/0 m0", "mos/1 m1"]


@pytest.fixture(scope="module")
def alink(e2e_hub: HubProcess) -> dict[str, Any]:
    tenant = unique("ali")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, "a1GwPk", "gateway", dynamicRegister=False)
    e2e_hub.product(tenant, "a1SubPk", "sub-device", thingModel=SUB_MODEL)
    secret = "gw-secret-0123456789abcdef"
    e2e_hub.device(tenant, "gw-0001", "a1GwPk", secret=secret)
    return {"tenant": tenant, "secret": secret}


async def test_alink_signed_connect_and_property_post(e2e_hub: HubProcess, alink: dict[str, Any]) -> None:
    c = AlinkClient("a1GwPk", "gw-0001", alink["secret"])
    with c:
        assert await c.start(e2e_hub.ports.mqtt) == 0
        assert await c.subscribe(c.topic("#"), 1) == [1]
        reply = await c.request(
            c.topic("thing/event/property/post"),
            {"temp": {"value": 21.5, "time": TS}},
            method="thing.event.property.post",
        )
        assert reply["code"] == 200, reply
        await c.disconnect()
    dev = e2e_hub.find_device(alink["tenant"], "gw-0001")
    assert dev is not None
    pts = e2e_hub.telemetry(dev["id"], "temp")
    assert pts["temp"] == [{"ts": TS, "value": 21.5}], pts


async def test_alink_bad_signature_refused(e2e_hub: HubProcess, alink: dict[str, Any]) -> None:
    with AlinkClient("a1GwPk", "gw-0001", "not-the-secret") as c:
        assert await c.start(e2e_hub.ports.mqtt) == 134  # 3.1.1 return code 4, as paho 2 reports it
