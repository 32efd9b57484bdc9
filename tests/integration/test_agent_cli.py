"""`gatehub agent run`, `gatehub agent lists` and `gatehub demo` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehub.domain.model import Presence
from tests.integration.agent_helpers import until
from tests.interop.tbhub import GW_TOKEN, TENANT, TbHub, tb_hub

GATEHUB = str(Path(sys.executable).parent / "gatehub")


def _spawn(*cmd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run(*cmd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=60)


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


AGENT_TOML = """
log_level = "info"

[hub]
host = "127.0.0.1"
port = {port}
access_token = "{token}"

[state]
path = "state/agent.db"

[outbox]
flush_interval = 0.1

[credentials.models.th]
product_key = "thermo"

[[drivers]]
type = "simulator"
poll_interval = 0.2

[[drivers.devices]]
uid = "th-1"
model = "th"
keys = {{ temperature = {{ kind = "walk", min = 18, max = 26 }} }}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_agent_run_and_lists(h: TbHub, tmp_path: Path) -> None:
    from gatehub.domain.model import NodeType

    await h.store.catalog.create_product(TENANT, "thermo", "thermo", NodeType.SUBDEVICE)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(AGENT_TOML.format(port=h.port, token=GW_TOKEN))
    proc = _spawn(GATEHUB, "agent", "run", "--config", str(cfg))
    try:

        async def online() -> bool:
            d = await h.store.devices.find_by_name(TENANT, "th-1")
            return d is not None and d.presence is Presence.ONLINE and bool((await h.points(d.id)).get("temperature"))

        await until(online, timeout=30, what="th-1 online with data")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "agent stopped" in out and "reconciled with the hub" in out
    assert (tmp_path / "state" / "agent.db").exists()  # relative to the config file
    r = _run(GATEHUB, "agent", "lists", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    lists = json.loads(r.stdout)
    assert [e["name"] for e in lists["LocalTopoList"]] == ["th-1"] and lists["RemovedDevList"] == []
    assert lists["LocalTopoList"][0]["productKey"] == "thermo"


def test_agent_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[hub]\nhost = "127.0.0.1"\n')
    r = subprocess.run([GATEHUB, "agent", "run", "-c", str(cfg)], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"access_token or cert" in b" ".join(r.stderr.split())
    r = subprocess.run([GATEHUB, "agent", "run", "-c", str(tmp_path / "none.toml")], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"does not exist" in b" ".join(r.stderr.split())


def test_demo_shows_data_presence_and_rpc(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run(
        [GATEHUB, "demo", "--http-port", "0", "--mqtt-port", "0", "--data-dir", str(tmp_path / "d"), "--duration", "3"],
        capture_output=True,
        timeout=120,
        env=env,
    )
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "LocalTopoList: em-01, th-01, valve-01" in out
    assert 'reply {"position":75}' in out
    assert "hub says th-01 is offline" in out and "and back: online" in out
    assert "temperature=" in out and "energy_kwh=" in out and "position=75" in out
    assert "demo stopped" in out
