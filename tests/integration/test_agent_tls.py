"""The agent authenticated by a gateway certificate issued by the hub CA, on the mTLS listener;
a revoked certificate is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gatehub.agent import Agent, agent_config
from gatehub.agent.drivers.simulator import SimulatorDriver
from gatehub.domain.model import Presence
from tests.integration.agent_helpers import device, names, synced, until
from tests.interop.tbhub import TENANT, TbHub, tb_hub

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_agent_over_mtls_with_a_hub_issued_certificate(tmp_path: Path, db_url: str) -> None:
    async with tb_hub(tmp_path, db_url, mqtts_port=0) as h:
        r = await h.http.post("/api/v1/gateways/gw1/certificates", json={"subject": {"commonName": "gateway 1"}})
        assert r.status_code == 201, r.text
        issued = r.json()
        (tmp_path / "gw1.crt").write_text(issued["gatewayCert"])
        (tmp_path / "gw1.key").write_text(issued["gatewayKey"])
        (tmp_path / "ca.crt").write_text(issued["caCert"])
        port = h.node.endpoints.extra["mqtt_tls"]
        raw = {
            "hub": {"port": port, "cert": "gw1.crt", "key": "gw1.key", "ca": "ca.crt", "reconnect_max": 1.0},
            "state": {"path": "agent.db"},
            "outbox": {"flush_interval": 0.05},
        }
        cfg = agent_config(raw, tmp_path)
        async with Agent(cfg, [SimulatorDriver([device("th-1")], 0.1)]) as agent:
            await synced(agent)
            assert names(agent, "LocalTopoList") == ["th-1"]
            th = await h.device("th-1")
            assert th.parent_id == "gw1"
            await until(lambda: _online_with_data(h, th.id), what="th-1 data over mTLS")
            gw = await h.store.devices.find_by_name(TENANT, "Gateway 1")
            assert gw is not None and gw.presence is Presence.ONLINE

            # revoking the certificate ends the session and refuses the next handshake
            serial = issued["serialNO"]
            assert (await h.http.put(f"/api/v1/certificates/{serial}/blacklist")).status_code == 200
            await until(lambda: agent.link is None, what="session closed on revocation")
            connections = agent.connections
            await until(lambda: _gateway_offline(h), what="gateway offline")
            await asyncio.sleep(2.5)  # it keeps trying; the handshake is refused every time
            assert agent.connections == connections and agent.link is None


async def _online_with_data(h: TbHub, device_id: str) -> bool:
    return bool((await h.points(device_id)).get("t"))


async def _gateway_offline(h: TbHub) -> bool:
    return (await h.store.devices.get(TENANT, "gw1")).presence is not Presence.ONLINE
