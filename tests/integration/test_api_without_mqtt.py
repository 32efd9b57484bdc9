"""The REST routes whose work goes through a dialect exist whatever listeners are on: with MQTT
off, RPC and thing-model service calls answer a clear 503 (not a 404), the recorded calls stay
readable, and claiming is refused like any claim outside a claim window."""

from __future__ import annotations

from typing import Any

from gatehub.domain.model import NodeType
from tests.conftest import RunningHub

MODEL: dict[str, Any] = {
    "properties": [{"identifier": "t", "accessMode": "rw", "dataType": {"type": "float", "specs": {}}}],
    "events": [],
    "services": [{"identifier": "reboot", "callType": "async", "inputData": [], "outputData": []}],
}


async def test_rpc_and_services_answer_503_when_mqtt_is_off(hub: RunningHub) -> None:
    st = hub.node.store
    assert st is not None and hub.node.settings.mqtt_port < 0
    await st.accounts.create_tenant("t1")
    await st.catalog.create_product("t1", "meter", node_type=NodeType.DIRECT, thing_model=MODEL)
    await st.devices.create("t1", "m1", "meter", device_id="m1")
    c = hub.client

    r = await c.post("/api/v1/devices/m1/rpc", json={"method": "reboot", "params": {}})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "unavailable" and "MQTT" in err["message"]
    r = await c.post("/api/v1/devices/m1/rpc", json={"method": "reboot", "persistent": True})
    assert r.status_code == 503, r.text  # not queued for a listener that is not there

    for path in ("/api/v1/devices/m1/services/reboot", "/api/v1/devices/m1/properties/set"):
        r = await c.post(path, json={"params": {}})
        assert r.status_code == 503, (path, r.text)
        assert r.json()["error"]["code"] == "unavailable"

    # nothing was recorded, and reading the calls works without MQTT
    r = await c.get("/api/v1/devices/m1/rpc")
    assert r.status_code == 200 and r.json()["total"] == 0, r.text
    # an unknown device is still a 404 of the device, checked before the transport
    r = await c.post("/api/v1/devices/nope/rpc", json={"method": "x"})
    assert r.status_code == 404

    # claiming: no window was ever opened, so the claim is refused by its rules (not a 404/503)
    cust = await st.accounts.create_customer("t1", "acme")
    r = await c.post("/api/v1/devices/m1/claim", json={"secretKey": "s", "customerId": cust.id})
    assert r.status_code not in (404, 503) and r.status_code >= 400, r.text
