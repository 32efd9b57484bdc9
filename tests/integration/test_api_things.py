"""REST and CLI for thing models (import/export), whitelists (CSV), topology trees, presence and
secret resets: permissions, tenant isolation, bad input that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gatehub.domain.model import NodeType, Presence
from gatehub.domain.permissions import Role
from tests.conftest import RunningHub

MODEL: dict[str, Any] = {
    "properties": [{"identifier": "t", "accessMode": "r", "dataType": {"type": "float", "specs": {"unit": "°C"}}}],
    "events": [{"identifier": "alarm", "type": "alert", "outputData": []}],
    "services": [{"identifier": "reboot", "callType": "async", "inputData": [], "outputData": []}],
}


async def _setup(hub: RunningHub) -> tuple[Any, Any]:
    st = hub.node.store
    assert st is not None
    for t in ("t1", "t2"):
        await st.accounts.create_tenant(t)
        await st.catalog.create_product(t, f"{t}-gw", node_type=NodeType.GATEWAY)
        await st.catalog.create_product(t, f"{t}-sub", node_type=NodeType.SUBDEVICE)
    await st.devices.create("t1", "gw", "t1-gw", device_id="gw")
    for i in range(3):
        await st.devices.create("t1", f"s{i}", "t1-sub", device_id=f"s{i}")
    _i, viewer = await st.accounts.create_api_key("viewer", Role.VIEWER, "t1")
    _i, other = await st.accounts.create_api_key("other", Role.TENANT_ADMIN, "t2")
    return hub.as_key(viewer), hub.as_key(other)


async def test_thing_model_import_and_export(hub: RunningHub) -> None:
    viewer, other = await _setup(hub)
    async with viewer, other:
        c = hub.client
        r = await c.put("/api/v1/products/t1-sub/thing-model", json=MODEL)
        assert r.status_code == 200 and r.json() == MODEL
        assert (await c.get("/api/v1/products/t1-sub/thing-model")).json() == MODEL
        assert (await viewer.get("/api/v1/products/t1-sub/thing-model")).json() == MODEL
        bad = {"properties": [{"identifier": "t", "dataType": {"type": "int", "specs": {"min": "9", "max": "1"}}}]}
        r = await c.put("/api/v1/products/t1-sub/thing-model", json=bad)
        assert r.status_code == 400 and "thingModel.properties[0].dataType.specs" in r.json()["error"]["message"]
        assert (await c.get("/api/v1/products/t1-sub/thing-model")).json() == MODEL  # unchanged
        r = await c.post("/api/v1/products?tenantId=t1", json={"id": "t1-bad", "thingModel": bad})
        assert r.status_code == 400
        assert (await viewer.put("/api/v1/products/t1-sub/thing-model", json=MODEL)).status_code == 403
        assert (await other.get("/api/v1/products/t1-sub/thing-model")).status_code == 404
        assert (await c.delete("/api/v1/products/t1-sub/thing-model")).status_code == 204
        assert (await c.get("/api/v1/products/t1-sub/thing-model")).json() == {}


async def test_whitelist_csv(hub: RunningHub) -> None:
    viewer, other = await _setup(hub)
    async with viewer, other:
        c = hub.client
        csv = (
            "deviceName,deviceId,deviceSecret\nm-1,m-1,secret-m-1\nm-2,,\n,,\nm-1,x,\ns0,,\n"
            "bad\x01name,,\nm-3,not an id,\n"
        )
        r = await c.post("/api/v1/products/t1-sub/whitelist", content=csv.encode())
        assert r.status_code == 200, r.text
        body = r.json()
        assert [d["name"] for d in body["created"]] == ["m-1", "m-2"] and body["existing"] == ["s0"]
        assert [e["line"] for e in body["errors"]] == [4, 5, 7, 8]
        st = hub.node.store
        assert st is not None
        m1 = await st.devices.get("t1", "m-1")
        assert m1.secret == "secret-m-1" and not m1.secret_delivered and m1.parent_id is None
        r = await c.post("/api/v1/products/t1-sub/whitelist", content=b"# one name per line\nplain-1\nplain-2\n")
        assert [d["name"] for d in r.json()["created"]] == ["plain-1", "plain-2"]
        r = await c.post("/api/v1/products/t1-sub/whitelist", content=b"   \n")
        assert r.status_code == 400
        r = await c.post("/api/v1/products/t1-sub/whitelist", content=b"\xff\xfe")
        assert r.status_code == 400
        assert (await viewer.post("/api/v1/products/t1-sub/whitelist", content=b"v-1\n")).status_code == 403
        assert (await other.post("/api/v1/products/t1-sub/whitelist", content=b"v-1\n")).status_code == 404
        assert await st.devices.find_by_name("t1", "v-1") is None


async def test_topology_tree_presence_and_secret_reset(hub: RunningHub) -> None:
    viewer, other = await _setup(hub)
    async with viewer, other:
        c = hub.client
        r = await c.post("/api/v1/gateways/gw/topology", json={"add": ["s0", "s1", "gw"]})
        assert r.status_code == 200, r.text
        assert r.json()["added"] == ["s0", "s1"] and r.json()["refused"][0]["reason"] == "not-sub-device"
        st = hub.node.store
        assert st is not None
        await st.devices.set_presence("t1", "gw", Presence.ONLINE)
        await st.devices.set_presence("t1", "s0", Presence.ONLINE, cascade=False)
        await st.devices.set_presence("t1", "gw", Presence.OFFLINE)
        tree = (await viewer.get("/api/v1/gateways/gw/topology")).json()
        assert tree["topologyVersion"] == 1 and tree["presence"] == "offline"
        assert [(x["id"], x["presence"]) for x in tree["children"]] == [("s0", "offline-gateway"), ("s1", "offline")]
        p = (await viewer.get("/api/v1/devices/s0/presence")).json()
        assert p["presence"] == "offline-gateway" and p["gatewayId"] == "gw" and p["gatewayPresence"] == "offline"
        r = await c.post("/api/v1/gateways/gw/topology", json={"remove": ["s1", "s2"]})
        assert r.json()["removed"] == ["s1"] and r.json()["refused"][0]["reason"] == "not-child"
        assert (await c.delete("/api/v1/gateways/gw/topology/s2")).status_code == 400
        assert (await viewer.post("/api/v1/gateways/gw/topology", json={"add": ["s2"]})).status_code == 403
        assert (await other.get("/api/v1/gateways/gw/topology")).status_code == 404
        assert (await c.post("/api/v1/gateways/s0/topology", json={"add": ["s2"]})).status_code in (400, 404)
        assert (await c.post("/api/v1/gateways/gw/topology", json={})).status_code == 400
        # secret reset
        before = (await st.devices.get("t1", "s2")).secret
        await st.devices.update("t1", "s2", secret_delivered=True)
        r = await c.post("/api/v1/devices/s2/secret/reset", json={"secret": "chosen-secret"})
        assert r.status_code == 200 and r.json()["secret"] == "chosen-secret"
        s2 = await st.devices.get("t1", "s2")
        assert s2.secret == "chosen-secret" != before and not s2.secret_delivered
        assert (await c.post("/api/v1/devices/s2/secret/reset", json={"secret": "short"})).status_code == 400
        assert (await viewer.post("/api/v1/devices/s2/secret/reset")).status_code == 403
        assert (await other.post("/api/v1/devices/s2/secret/reset")).status_code == 404
        events = (await c.get("/api/v1/events?tenantId=t1&type=topology")).json()["items"]
        assert [e["body"]["version"] for e in events] == [2, 1]


async def test_cli(tmp_path: Path) -> None:
    from tests.integration.test_cli import Cli

    cli = Cli(tmp_path / "var")
    await cli.run("tenant", "create", "t1")
    await cli.run("product", "create", "gwp", "-t", "t1", "--node-type", "gateway")
    await cli.run("product", "create", "subp", "-t", "t1", "--node-type", "sub-device", "--dynamic-register")
    await cli.run("gateway", "create", "gw", "-t", "t1", "-p", "gwp", "--id", "gw")
    model = tmp_path / "model.json"
    model.write_bytes(orjson.dumps(MODEL))
    out = await cli.run("product", "model-import", "subp", str(model), "-t", "t1")
    assert "1 properties, 1 events, 1 services" in out.out
    exported = await cli.run("product", "model-export", "subp", "-t", "t1")
    assert orjson.loads(exported.out) == MODEL
    broken = tmp_path / "broken.json"
    broken.write_text('{"services": [{"identifier": "x", "callType": "never"}]}')
    bad = await cli.run("product", "model-import", "subp", str(broken), "-t", "t1", code=2)
    assert "callType" in bad.err
    wl = tmp_path / "wl.csv"
    wl.write_text("deviceName,deviceId\nc-1,c-1\nc-2,c-2\nc-1,dup\n")
    res = (await cli.run("product", "whitelist", "subp", str(wl), "-t", "t1", "--json")).json()
    assert res["created"] == ["c-1", "c-2"] and res["errors"][0]["line"] == 4
    att = (await cli.run("gateway", "attach", "gw", "c-1", "c-2", "-t", "t1", "--json")).json()
    assert att["added"] == ["c-1", "c-2"] and att["topologyVersion"] == 1
    tree = (await cli.run("gateway", "topology", "gw", "-t", "t1", "--json")).json()
    assert [c["id"] for c in tree["children"]] == ["c-1", "c-2"]
    shown = await cli.run("gateway", "topology", "gw", "-t", "t1")
    assert "c-1" in shown.out and "version 1" in shown.out
    det = await cli.run("gateway", "detach", "gw", "c-2", "nope", "-t", "t1", "--json", code=2)
    assert orjson.loads(det.out)["removed"] == ["c-2"]
    pres = (await cli.run("device", "presence", "c-1", "-t", "t1", "--json")).json()
    assert pres == {
        "deviceId": "c-1",
        "presence": "offline",
        "lastSeen": None,
        "gatewayId": "gw",
        "gatewayPresence": "offline",
    }
    reset = (await cli.run("device", "secret-reset", "c-1", "-t", "t1", "--json")).json()
    assert reset["secretDelivered"] is False and len(reset["secret"]) == 32
