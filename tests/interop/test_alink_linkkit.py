"""The real PyPI ``aliyun-iot-linkkit`` (``linkkit.LinkKit``, with ``paho-mqtt<2``) in its own
virtualenv (tests/interop/venvs.py), as a gateway against a hub, pointed at it by the endpoint
only: signed CONNECT, dynamic registration of a sub-device (the secret comes once), topology add
and delete, batch login, a sub-device's property post through the gateway, services invoked from
the REST API and answered in the SDK's callbacks, topology changes pushed to the SDK's callback,
and a device that knows only its product's secret registering itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gatehub.domain.model import NodeType, Presence
from tests.integration.alink_helpers import GW_PK, GW_SECRET, SUB_PK, TENANT, alink_hub
from tests.interop.venvs import ensure_venv, start_script

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

GW_MODEL: dict[str, Any] = {
    "properties": [
        {"identifier": "power", "accessMode": "rw", "dataType": {"type": "int", "specs": {"min": "0", "max": "1"}}}
    ],
    "events": [],
    "services": [
        {
            "identifier": "reboot",
            "callType": "sync",
            "inputData": [{"identifier": "delay", "dataType": {"type": "int", "specs": {"min": "0", "max": "60"}}}],
            "outputData": [{"identifier": "ok", "dataType": {"type": "bool"}}],
        }
    ],
}

COMMON = r"""
import json, os, sys, time, logging
logging.basicConfig(level=logging.WARNING)
from linkkit import linkkit

args = json.loads(sys.argv[1])
port, stopfile = args["port"], args["stop"]

def out(**kw):
    print(json.dumps(kw), flush=True)

events = []
def record(**kw):
    events.append(kw)
    out(**kw)

def wait(pred, timeout=30, what="event"):
    end = time.time() + timeout
    while time.time() < end:
        for e in events:
            if pred(e):
                return e
        time.sleep(0.05)
    out(event="error", message="timed out waiting for " + what)
    sys.exit(2)

def ev(name, **match):
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in match.items())

def linger():
    end = time.time() + 120
    while not os.path.exists(stopfile) and time.time() < end:
        time.sleep(0.05)
"""

GATEWAY_SCRIPT = (
    COMMON
    + r"""
lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=args["pk"], device_name=args["dn"],
                     device_secret=args["secret"])
lk.config_mqtt(port=port, secure="", endpoint="127.0.0.1")
with open("tsl.json", "w") as fh:
    json.dump(args["tsl"], fh)
assert lk.thing_setup("tsl.json") == 0

lk.on_connect = lambda flag, rc, ud: record(event="connected", rc=rc)
lk.on_thing_enable = lambda ud: record(event="enabled")
reply = lambda name: (lambda rid, code, data, msg, ud: record(event=name, id=rid, code=code, data=data, message=msg))
lk.on_gateway_register_subdev_reply = reply("register")
lk.on_gateway_add_subdev_topo_reply = reply("topo_add")
lk.on_gateway_delete_subdev_topo_reply = reply("topo_delete")
lk.on_gateway_login_subdev_reply = reply("login")
lk.on_gateway_logout_subdev_reply = reply("logout")
lk.on_thing_prop_post = reply("prop_post")
lk.on_gateway_topo_change = lambda rid, params, ud: record(event="topo_change", id=rid, params=params)

def on_service(identifier, rid, params, ud):
    record(event="service", identifier=identifier, params=params)
    lk.thing_answer_service(identifier, rid, 200, {"ok": params.get("delay", 0) < 30})
lk.on_thing_call_service = on_service

def on_message(topic, payload, qos, ud):
    body = json.loads(payload)
    record(event="message", topic=topic, body=body)
    if topic.endswith("/thing/service/calibrate"):   # a sub-device's service, answered on its topic
        lk.publish_topic(topic + "_reply", json.dumps({"id": body["id"], "code": 200, "data": {"ok": True}}))
lk.on_topic_message = on_message

lk.connect_async()
wait(ev("enabled"), what="connect")
sub_pk = args["sub_pk"]

# dynamic registration through the gateway: the secret comes once
lk.gateway_register_subdev([[sub_pk, "sub-new"]])
first = wait(ev("register"), what="register")
lk.gateway_register_subdev([[sub_pk, "sub-new"]])
wait(lambda e: e.get("event") == "register" and e is not first, what="second register")
new_secret = first["data"][0]["deviceSecret"]

# topology: add two sub-devices with their credentials, then read it back
subs = [[sub_pk, "sub-0", args["sub0_secret"]], [sub_pk, "sub-new", new_secret]]
lk.gateway_add_subdev_topo(subs)
wait(ev("topo_add"), what="topo add")
rid = "900001"
get = {"id": rid, "version": "1.0", "params": {}, "method": "thing.topo.get"}
lk.publish_topic("/sys/%s/%s/thing/topo/get" % (args["pk"], args["dn"]), json.dumps(get))
wait(lambda e: e.get("event") == "message" and e["topic"].endswith("/thing/topo/get_reply"), what="topo get")

# batch login, then a sub-device's property post on the gateway's connection
lk.gateway_login_subdev(subs)
wait(ev("login"), what="login")
post = {"id": "900002", "version": "1.0", "params": {"temp": 21.5, "level": 4}, "method": "thing.event.property.post"}
lk.publish_topic("/sys/%s/sub-0/thing/event/property/post" % sub_pk, json.dumps(post))
wait(lambda e: e.get("event") == "message" and e["body"].get("id") == "900002", what="sub post")
bad = {"id": "900003", "version": "1.0", "params": {"level": 99}, "method": "thing.event.property.post"}
lk.publish_topic("/sys/%s/sub-0/thing/event/property/post" % sub_pk, json.dumps(bad))
wait(lambda e: e.get("event") == "message" and e["body"].get("id") == "900003", what="bad post")
# the gateway's own property
rc, _ = lk.thing_post_property({"power": 1})
assert rc == 0, rc
wait(ev("prop_post"), what="prop post")
record(event="ready")

# the hub adds sub-1 through its REST API: the SDK's callback hears it
wait(ev("topo_change"), timeout=60, what="topo change")
lk.gateway_delete_subdev_topo([[sub_pk, "sub-new"]])
wait(ev("topo_delete"), what="topo delete")
lk.gateway_logout_subdev([[sub_pk, "sub-0"]])
wait(ev("logout"), what="logout")
record(event="done")
linger()
lk.disconnect()
time.sleep(0.5)
record(event="stopped")
"""
)

REGISTER_SCRIPT = (
    COMMON
    + r"""
def register():
    got = []
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=args["pk"], device_name=args["dn"],
                         device_secret="", product_secret=args["product_secret"], auth_type="register")
    lk.config_mqtt(port=port, secure="", endpoint="127.0.0.1", auto_reconnect_min_sec=1, auto_reconnect_max_sec=1)
    lk.on_device_dynamic_register = lambda rc, value, ud: got.append((rc, value))
    lk.connect_async()
    end = time.time() + 30
    while not got and time.time() < end:
        time.sleep(0.05)
    lk.destruct()
    return got[0] if got else (None, None)

rc, secret = register()
record(event="registered", rc=rc, secret=secret)
# the secret works: the device connects with it
lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=args["pk"], device_name=args["dn"], device_secret=secret)
lk.config_mqtt(port=port, secure="", endpoint="127.0.0.1")
lk.on_connect = lambda flag, rc, ud: record(event="connected", rc=rc)
lk.connect_async()
wait(ev("connected"), what="connect with the secret")
lk.disconnect()
time.sleep(0.3)
rc2, secret2 = register()
record(event="second", rc=rc2, secret=secret2)
"""
)


class Client:
    def __init__(self, proc: subprocess.Popen[bytes], cwd: Path) -> None:
        self.proc = proc
        self.cwd = cwd

    def events(self) -> list[dict[str, Any]]:
        lines = (self.cwd / "stdout.txt").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    async def wait(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events():
                if e["event"] == event:
                    return e
                if e["event"] == "error":
                    raise AssertionError(f"client failed: {e}; stderr: {self.stderr()}")
            if self.proc.poll() is not None and not any(e["event"] == event for e in self.events()):
                raise AssertionError(f"client exited {self.proc.returncode}: {self.events()} {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event!r} within {timeout} s; events {self.events()}; {self.stderr()}")
            await asyncio.sleep(0.1)

    def all(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]

    def stderr(self) -> str:
        return (self.cwd / "stderr.txt").read_text()[-3000:]

    async def stop(self) -> None:
        (self.cwd / "stop").touch()
        for _ in range(100):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.proc.kill()
        self.proc.wait(5)


async def _run(script: str, tmp_path: Path, name: str, args: dict[str, Any]) -> Client:
    await asyncio.to_thread(ensure_venv, "aliyun-iot-linkkit")
    cwd = tmp_path / name
    args = {**args, "stop": str(cwd / "stop")}
    proc = start_script("aliyun-iot-linkkit", script, [json.dumps(args)], cwd)
    return Client(proc, cwd)


async def test_linkkit_gateway(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h, h.http() as http:
        st = h.store
        await st.catalog.update_product(TENANT, GW_PK, thing_model=GW_MODEL)
        await st.devices.create(TENANT, "sub-new", SUB_PK, device_id="sub-new")  # pre-registered (whitelist)
        args = {
            "port": h.port,
            "pk": GW_PK,
            "dn": "gw-0001",
            "secret": GW_SECRET,
            "tsl": GW_MODEL,
            "sub_pk": SUB_PK,
            "sub0_secret": h.subs["sub-0"].secret,
        }
        c = await _run(GATEWAY_SCRIPT, tmp_path, "gateway", args)
        try:
            await c.wait("ready", 90)
            assert c.all("connected")[0]["rc"] == 0
            first, second = c.all("register")
            new = (await st.devices.get(TENANT, "sub-new")).secret
            assert first["code"] == 200 and first["message"] == "success"
            assert first["data"] == [
                {"iotId": "sub-new", "productKey": SUB_PK, "deviceName": "sub-new", "deviceSecret": new}
            ]
            assert second["code"] == 7105 and "delivered already" in second["message"]
            add = c.all("topo_add")[0]
            assert add["code"] == 200 and {d["deviceName"] for d in add["data"]} == {"sub-0", "sub-new"}
            got = next(e for e in c.all("message") if e["topic"].endswith("/thing/topo/get_reply"))["body"]
            assert got["code"] == 200 and {d["deviceName"] for d in got["data"]} == {"sub-0", "sub-new"}
            login = c.all("login")[0]
            assert login["code"] == 200 and len(login["data"]) == 2
            assert (await st.devices.get(TENANT, "sub-0")).presence is Presence.ONLINE
            posts = [
                e["body"] for e in c.all("message") if e["topic"].endswith("sub-0/thing/event/property/post_reply")
            ]
            assert posts[0]["code"] == 200 and posts[1]["code"] == 460 and "params.level" in posts[1]["message"]
            latest = await st.data.latest("sub-0")
            assert latest["temp"]["value"] == 21.5 and latest["level"]["value"] == 4
            assert c.all("prop_post")[0]["code"] == 200
            assert (await st.data.latest("gw-0001"))["power"]["value"] == 1

            # a service of the gateway, answered in on_thing_call_service -> thing_answer_service
            r = await http.post("/api/v1/devices/gw-0001/services/reboot", json={"params": {"delay": 5}})
            assert r.status_code == 200, r.text
            assert r.json()["code"] == 200 and r.json()["data"] == {"ok": True}
            assert c.all("service")[0] == {"event": "service", "identifier": "reboot", "params": {"delay": 5}}
            # a sub-device's service on the gateway's connection, answered with publish_topic
            r = await http.post("/api/v1/devices/sub-0/services/calibrate", json={"params": {"offset": 1}})
            assert r.status_code == 200 and r.json()["data"] == {"ok": True}, r.text

            # a topology change made through the REST API reaches the SDK's callback
            r = await http.post("/api/v1/gateways/gw-0001/topology", json={"add": ["sub-1"]})
            assert r.status_code == 200 and r.json()["added"] == ["sub-1"]
            await c.wait("done", 60)
            change = c.all("topo_change")[0]["params"]
            assert change == {"status": 0, "subList": [{"productKey": SUB_PK, "deviceName": "sub-1"}]}
            deleted = c.all("topo_delete")[0]
            assert deleted["code"] == 200 and deleted["data"] == [{"productKey": SUB_PK, "deviceName": "sub-new"}]
            assert (await st.devices.get(TENANT, "sub-new")).parent_id is None
            assert c.all("logout")[0]["code"] == 200
            assert (await st.devices.get(TENANT, "sub-0")).presence is Presence.OFFLINE
            await c.stop()
            await c.wait("stopped", 15)
        finally:
            await c.stop()


async def test_linkkit_dynamic_registration_with_the_product_secret(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        st = h.store
        prod = await st.catalog.create_product(TENANT, "a1DynGw", node_type=NodeType.GATEWAY, dynamic_register=True)
        await st.devices.create(TENANT, "factory-77", "a1DynGw", device_id="factory-77")  # the whitelist
        args = {"port": h.port, "pk": "a1DynGw", "dn": "factory-77", "product_secret": prod.secret}
        c = await _run(REGISTER_SCRIPT, tmp_path, "register", args)
        try:
            await c.wait("second", 90)
            dev = await st.devices.get(TENANT, "factory-77")
            reg = c.all("registered")[0]
            assert reg["rc"] == 0 and reg["secret"] == dev.secret and dev.secret_delivered
            assert c.all("connected")[0]["rc"] == 0
            second = c.all("second")[0]
            assert second["rc"] != 0 and second["secret"] is None  # refused: delivered once only
        finally:
            await c.stop()
