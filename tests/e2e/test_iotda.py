"""The IoTDA-compatible HTTPS device API of a ``gatehub serve`` process, with curl-like requests
(httpx trusting the hub CA): device auth, a property report, the stored data read back."""

from __future__ import annotations

import datetime as dt

import httpx

from gatehub.protocols import iotda
from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess


def test_iotda_auth_report_and_read_back(e2e_hub: HubProcess) -> None:
    tenant = unique("iotda")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-dp", "direct")
    device_id, secret = f"{tenant}-dev1", "s3cret-of-dev1"
    e2e_hub.device(tenant, device_id, f"{tenant}-dp", secret=secret)
    ts = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H")
    base = f"https://127.0.0.1:{e2e_hub.ports.iotda}"
    with httpx.Client(base_url=base, verify=e2e_hub.client_tls(), timeout=30) as c:
        r = c.post(
            "/v5/device-auth",
            json={"device_id": device_id, "sign_type": 0, "timestamp": ts, "password": iotda.password(secret, ts)},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        token = body["access_token"]
        assert isinstance(token, str) and token and body["expires_in"] > 0, body
        report = {
            "services": [
                {"service_id": "motor", "properties": {"Height": 124, "Speed": 23.24}, "event_time": "20210813T101010Z"}
            ]
        }
        r = c.post(f"/v5/devices/{device_id}/sys/properties/report", headers={"access_token": token}, json=report)
        assert r.status_code == 200 and r.content == b"", r.text
        r = c.post(f"/v5/devices/{device_id}/sys/properties/report", headers={"access_token": "nope"}, json=report)
        assert r.status_code == 403 and r.json()["error_code"] == "IOTDA.000004", r.text
        r = c.post(
            "/v5/device-auth",
            json={"device_id": device_id, "sign_type": 0, "timestamp": ts, "password": iotda.password("wrong", ts)},
        )
        assert r.status_code == 401 and r.json()["error_code"] == "IOTDA.000002", r.text
    when = int(dt.datetime(2021, 8, 13, 10, 10, 10, tzinfo=dt.UTC).timestamp() * 1000)
    pts = e2e_hub.telemetry(device_id, "motor.Height,motor.Speed")
    assert pts == {"motor.Height": [{"ts": when, "value": 124}], "motor.Speed": [{"ts": when, "value": 23.24}]}, pts
