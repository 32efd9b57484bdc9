"""The real PyPI ``tb-mqtt-client`` gateway (its own interop virtualenv, tests/interop/venvs.py)
against a ``gatehub serve`` process: connect a sub-device, telemetry, a REST RPC it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess
from tests.interop.test_tb_mqtt_client import GATEWAY_SCRIPT, Client
from tests.interop.venvs import ensure_venv, start_script


async def test_tb_mqtt_client_gateway(e2e_hub: HubProcess, tmp_path: Path) -> None:
    await asyncio.to_thread(ensure_venv, "tb-mqtt-client")
    tenant = unique("tbc")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-gw", "gateway")
    token, gateway = f"tok-{tenant}", f"{tenant}-gw1"
    e2e_hub.gateway(tenant, gateway, f"{tenant}-gw", token)
    cwd = tmp_path / "client"
    c = Client(
        start_script("tb-mqtt-client", GATEWAY_SCRIPT, [str(e2e_hub.ports.mqtt), token, str(cwd / "stop")], cwd), cwd
    )
    try:
        await c.wait("ready")
        dev = e2e_hub.find_device(tenant, "Sensor 1")
        assert dev is not None and dev["parentId"] == gateway, dev
        assert e2e_hub.telemetry(dev["id"], "t")["t"] == [{"ts": 1_700_000_000_000, "value": 21.5}]
        async with e2e_hub.async_rest() as api:
            r = await api.post(f"/devices/{dev['id']}/rpc", json={"method": "ping", "params": {"n": 1}})
        assert r.status_code == 200 and r.json() == {"echo": {"n": 1}}, r.text
        await c.stop()
        await c.wait("stopped", 10)
    finally:
        await c.stop()
