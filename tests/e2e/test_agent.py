"""The gateway agent (``gatehub agent run --config agent.toml``, docs/agent.md) as a process of
its own against a ``gatehub serve`` process, with the simulator driver: its sub-devices appear
under the gateway, online, and their telemetry is stored."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.e2e.conftest import unique
from tests.e2e.hub_process import GATEHUB, HubProcess, wait_until

AGENT_TOML = """\
log_level = "info"

[hub]
host = "127.0.0.1"
port = {port}
access_token = "{token}"
reconnect_min = 0.2
reconnect_max = 2

[state]
path = "agent-state.db"

[outbox]
flush_interval = 0.1

[[drivers]]
type = "simulator"
poll_interval = 0.2

[[drivers.devices]]
uid = "th-01"
model = "thermo"
keys = {{ temp = {{ kind = "walk", min = 15, max = 25, step = 0.5 }} }}

[[drivers.devices]]
uid = "em-01"
model = "meter"
keys = {{ kwh = {{ kind = "counter", step = 1 }} }}
"""


def test_agent_subdevices_online_and_telemetry_stored(e2e_hub: HubProcess, tmp_path: Path) -> None:
    tenant = unique("agent")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-gw", "gateway")
    token, gateway = f"tok-{tenant}", f"{tenant}-agent-gw"
    e2e_hub.gateway(tenant, gateway, f"{tenant}-gw", token)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(AGENT_TOML.format(port=e2e_hub.ports.mqtt, token=token), encoding="utf-8")
    out, err = tmp_path / "agent.stdout", tmp_path / "agent.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([str(GATEHUB), "agent", "run", "--config", str(cfg)], stdout=o, stderr=e, cwd=tmp_path)
    try:

        def online() -> list[dict[str, object]] | None:
            items = e2e_hub.api("GET", f"/gateways/{gateway}/devices", params={"tenantId": tenant})["items"]
            names = sorted(str(d["name"]) for d in items if d["presence"] == "online")
            return items if names == ["em-01", "th-01"] else None

        subs = wait_until(online, timeout=30, what="both sub-devices online under the gateway")
        ids = {str(d["name"]): str(d["id"]) for d in subs}
        wait_until(lambda: e2e_hub.telemetry(ids["th-01"], "temp").get("temp"), timeout=30, what="th-01 telemetry")
        pts = wait_until(
            lambda: (
                len(e2e_hub.telemetry(ids["em-01"], "kwh").get("kwh", [])) >= 2
                and e2e_hub.telemetry(ids["em-01"], "kwh")
            ),
            timeout=30,
            what="em-01 telemetry",
        )
        values = [p["value"] for p in pts["kwh"]]
        assert values == sorted(values), values  # a counter: rising
        assert 15 <= e2e_hub.telemetry(ids["th-01"], "temp")["temp"][-1]["value"] <= 25
        gw = e2e_hub.api("GET", f"/gateways/{gateway}", params={"tenantId": tenant})
        assert gw["presence"] == "online", gw
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    log = err.read_text(errors="replace") + out.read_text(errors="replace")
    assert proc.returncode == 0, log[-4000:]
    assert "Traceback" not in log, log[-8000:]
    # the agent's session ended: the hub marks its sub-devices offline because of the gateway
    wait_until(
        lambda: all(
            d["presence"] != "online"
            for d in e2e_hub.api("GET", f"/gateways/{gateway}/devices", params={"tenantId": tenant})["items"]
        ),
        timeout=15,
        what="sub-devices offline after the agent stopped",
    )
