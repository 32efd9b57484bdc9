"""The real PyPI ``tb-mqtt-client`` (TBGatewayMqttClient and TBDeviceMqttClient, MQTT 5), in its own
virtualenv (tests/interop/venvs.py), against a hub: data up, attributes both ways, RPC, claim."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.interop.tbhub import GW_TOKEN, TbHub, tb_hub
from tests.interop.venvs import ensure_venv, start_script

pytestmark = pytest.mark.slow

COMMON = r"""
import json, os, sys, time, logging
logging.basicConfig(level=logging.WARNING)
port, token, stopfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def out(**kw):
    print(json.dumps(kw), flush=True)

def wait(cond, timeout=30):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            out(event="error", message="timed out")
            sys.exit(2)
        time.sleep(0.05)

def linger(client):
    end = time.time() + 90
    while not os.path.exists(stopfile) and time.time() < end:
        time.sleep(0.05)
    client.disconnect()
    out(event="stopped")
"""

GATEWAY_SCRIPT = (
    COMMON
    + r"""
from tb_gateway_mqtt import TBGatewayMqttClient

gw = TBGatewayMqttClient("127.0.0.1", port, username=token)

def on_rpc(client, req):
    out(event="rpc", req=req)
    client.gw_send_rpc_reply(req["device"], req["data"]["id"], {"echo": req["data"]["params"]})

def on_attr(content):
    out(event="attr", content=content)
    gw.gw_request_shared_attributes(content["device"], sorted(content["data"]),
                                    lambda resp, exc: out(event="shared_response", resp=resp))

gw.gw_set_server_side_rpc_request_handler(on_rpc)
gw.connect()
wait(lambda: gw.is_connected() and gw.rate_limits_received)
out(event="connected")
gw.gw_connect_device("Sensor 1", "tb-sensor").get()
gw.gw_subscribe_to_all_attributes(on_attr)
gw.gw_send_telemetry("Sensor 1", {"ts": 1700000000000, "values": {"t": 21.5}}).get()
gw.gw_send_telemetry("Sensor 1", {"h": 40}).get()
gw.gw_send_attributes("Sensor 1", {"fw": "1.0"}).get()
gw.gw_request_client_attributes("Sensor 1", ["fw"], lambda resp, exc: out(event="client_response", resp=resp))
gw.gw_claim("Sensor 1", "sec-1", 60000).get()
out(event="ready")
linger(gw)
"""
)

DEVICE_SCRIPT = (
    COMMON
    + r"""
from tb_device_mqtt import TBDeviceMqttClient

c = TBDeviceMqttClient("127.0.0.1", port, username=token)

def on_rpc(req_id, body):
    out(event="rpc", id=req_id, body=body)
    c.send_rpc_reply(req_id, {"echo": body.get("params")})

def on_attr(content, *args):
    out(event="attr", content=content)
    c.request_attributes(shared_keys=sorted(content),
                         callback=lambda resp, exc: out(event="shared_response", resp=resp))

c.set_server_side_rpc_request_handler(on_rpc)
c.connect()
wait(lambda: c.is_connected() and c.rate_limits_received)
out(event="connected")
c.subscribe_to_all_attributes(on_attr)
c.send_telemetry({"ts": 1700000000000, "values": {"cpu": 7}}).get()
c.send_telemetry({"mem": 512}).get()
c.send_attributes({"fw": "2.0"}).get()
c.request_attributes(client_keys=["fw"], callback=lambda resp, exc: out(event="client_response", resp=resp))
c.claim("sec-2", 60000).get()
out(event="ready")
linger(c)
"""
)


class Client:
    def __init__(self, proc: subprocess.Popen[bytes], cwd: Path) -> None:
        self.proc = proc
        self.cwd = cwd

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.cwd / "stdout.txt").read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    async def wait(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events():
                if e["event"] == event:
                    return e
                if e["event"] == "error":
                    raise AssertionError(f"client failed: {e}; stderr: {self.stderr()}")
            if self.proc.poll() is not None and not any(e["event"] == event for e in self.events()):
                raise AssertionError(f"client exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event!r} within {timeout} s; events {self.events()}; {self.stderr()}")
            await asyncio.sleep(0.1)

    def stderr(self) -> str:
        return (self.cwd / "stderr.txt").read_text()[-3000:]

    async def stop(self) -> None:
        (self.cwd / "stop").touch()
        for _ in range(150):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.proc.kill()
        self.proc.wait(5)


async def _run(h: TbHub, script: str, tmp_path: Path) -> Client:
    await asyncio.to_thread(ensure_venv, "tb-mqtt-client")
    cwd = tmp_path / "client"
    proc = start_script("tb-mqtt-client", script, [str(h.port), GW_TOKEN, str(cwd / "stop")], cwd)
    return Client(proc, cwd)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_gateway_client(tmp_path: Path, db_url: str) -> None:
    async with tb_hub(tmp_path, db_url) as h:
        c = await _run(h, GATEWAY_SCRIPT, tmp_path)
        try:
            await c.wait("ready")
            dev = await h.device("Sensor 1")
            assert dev.parent_id == "gw1"
            pts = await h.points(dev.id)
            assert pts["t"] == [{"ts": 1_700_000_000_000, "value": 21.5}]
            assert pts["h"][0]["value"] == 40 and pts["h"][0]["ts"] > 1_700_000_000_000
            assert (await c.wait("client_response"))["resp"] == {"id": 1, "device": "Sensor 1", "value": "1.0"}
            # shared attribute: pushed, then requested back by the client
            r = await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"target": 5})
            assert r.status_code == 200
            assert (await c.wait("attr"))["content"] == {"device": "Sensor 1", "data": {"target": 5}}
            resp = (await c.wait("shared_response"))["resp"]
            assert resp["device"] == "Sensor 1" and resp["value"] == 5
            # server-side RPC answered by the client
            r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={"method": "ping", "params": {"n": 1}})
            assert r.status_code == 200 and r.json() == {"echo": {"n": 1}}, r.text
            # the claim window the client opened
            r = await h.customer_http.post(f"/api/v1/devices/{dev.id}/claim", json={"secretKey": "sec-1"})
            assert r.status_code == 200, r.text
            await c.stop()
            await c.wait("stopped", 10)
        finally:
            await c.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_device_client_on_the_gateway_itself(tmp_path: Path, db_url: str) -> None:
    async with tb_hub(tmp_path, db_url) as h:
        c = await _run(h, DEVICE_SCRIPT, tmp_path)
        try:
            await c.wait("ready")
            pts = await h.points("gw1")
            assert pts["cpu"] == [{"ts": 1_700_000_000_000, "value": 7}] and pts["mem"][0]["value"] == 512
            assert (await c.wait("client_response"))["resp"] == {"client": {"fw": "2.0"}}
            r = await h.http.post("/api/v1/devices/gw1/attributes/shared", json={"mode": "fast"})
            assert r.status_code == 200
            assert (await c.wait("attr"))["content"] == {"mode": "fast"}
            assert (await c.wait("shared_response"))["resp"] == {"shared": {"mode": "fast"}}
            r = await h.http.post("/api/v1/devices/gw1/rpc", json={"method": "ping", "params": [1, 2]})
            assert r.status_code == 200 and r.json() == {"echo": [1, 2]}, r.text
            r = await h.customer_http.post("/api/v1/devices/gw1/claim", json={"secretKey": "sec-2"})
            assert r.status_code == 200, r.text
            await c.stop()
            await c.wait("stopped", 10)
        finally:
            await c.stop()
