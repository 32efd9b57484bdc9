"""Gateway agent: replay of an outbox backlog to a hub (readings/s) and the agent's memory meanwhile.

The hub runs in its own process (SQLite, ThingsBoard rate limits off: the agent paces itself).
The agent runs in another: it first fills its outbox with the backlog (1,000,000 readings:
1,000 batches of 20 sub-devices x 10 samples x 5 keys; ``--quick``: 100,000), as an outage
would have left it, then connects and replays it through ``v1/gateway/batch`` until the outbox
is empty, sampling its resident memory every 0.25 s. Every reading is then counted in the hub's
database. Reference: the issue's target of 50,000 readings/s (no published figure exists for
this); memory is reported as the growth of RSS during the replay over RSS when it began.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.harness import Report

TARGET = 50_000.0
DEVICES, SAMPLES, KEYS = 20, 10, 5  # one batch = 1,000 readings

HUB = r"""
import asyncio, sys
from pathlib import Path
from gatehub.config import Settings
from gatehub.domain.model import NodeType
from gatehub.app.node import Node, run_loop

async def main(data_dir, url):
    s = Settings(data_dir=Path(data_dir), database_url=url, bind_host="127.0.0.1", http_port=-1, iotda_port=-1,
                 mqtt_port=0, mqtts_port=-1, grpc_port=-1, log_level="warning", tb_rate_per_device=0,
                 tb_rate_per_tenant=0)
    async with Node(s) as node:
        st = node.store
        await st.accounts.create_tenant("bench")
        await st.catalog.create_product("bench", "gwp", "gateway", NodeType.GATEWAY)
        await st.devices.create("bench", "gw", "gwp", device_id="gw", access_token="tok")
        await st.catalog.create_product("bench", "sub", "sub", NodeType.SUBDEVICE)
        for d in range(int(sys.argv[3])):  # the sub-devices the gateway proxied before its outage
            await st.devices.create("bench", f"dev-{d}", "sub", parent_id="gw")
        print("READY", node.endpoints.extra["mqtt_tcp"], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

run_loop(main(sys.argv[1], sys.argv[2]))
"""

AGENT = r"""
import asyncio, json, logging, sys, time
from pathlib import Path
import orjson
from gatehub.agent import Agent, agent_config
from gatehub.agent.state import LocalState

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

async def main(port, state, batches, devices, samples, keys):
    st = await LocalState.open(Path(state))
    for d in range(devices):  # proxied before the outage: in LocalTopoList
        await st.add_topo(f"dev-{d}", f"dev-{d}", "sub", "sub", None)
    t0 = time.perf_counter()
    ts = 1_700_000_000_000
    await st.conn.execute("BEGIN")
    for b in range(batches):
        tele = {}
        for d in range(devices):
            tele[f"dev-{d}"] = [{"ts": ts + b * samples + i, "values": {f"k{k}": (b * samples + i) * 0.5 + k
                                 for k in range(keys)}} for i in range(samples)]
        await st.append(orjson.dumps({"telemetry": tele}), {f"dev-{d}": samples * keys for d in range(devices)},
                        devices * samples * keys)
    await st.conn.execute("COMMIT")
    fill = time.perf_counter() - t0
    await st.close()
    cfg = agent_config({"hub": {"port": port, "access_token": "tok"}, "state": {"path": state},
                        "outbox": {"replay_rate": 0, "window": 32, "progress_interval": 2.0}, "log_level": "info"})
    agent = Agent(cfg, [])
    samples_mb = []
    async with agent:
        await asyncio.wait_for(agent.reconciled.wait(), 60)
        start = time.perf_counter()
        base = rss_mb()
        while True:
            n, _r = await agent.state.backlog()
            samples_mb.append(rss_mb())
            if n == 0:
                break
            await asyncio.sleep(0.25)
        took = time.perf_counter() - start
    print("RESULT " + json.dumps({"fill_s": fill, "replay_s": took, "rss_start": base, "rss_peak": max(samples_mb),
                                  "rss_end": samples_mb[-1], "samples": len(samples_mb)}), flush=True)

logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
asyncio.run(main(int(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:])))
"""


async def _count(url: str) -> int:
    from gatehub.store import Database
    from gatehub.store.tables import telemetry

    db = Database.open(url)
    try:
        from sqlalchemy import func, select

        async with db.connect() as c:
            return int((await c.execute(select(func.count()).select_from(telemetry))).scalar_one())
    finally:
        await db.close()


def _start_hub(tmp: str, url: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", HUB, f"{tmp}/var", url, str(DEVICES)]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def run(report: Report, quick: bool) -> None:
    batches = 100 if quick else 1000
    readings = batches * DEVICES * SAMPLES * KEYS
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-agent-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/hub.db"
        hub = _start_hub(tmp, url)
        try:
            assert hub.stdout is not None
            line = hub.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"the hub did not start: {line!r}")
            port = line.split()[1]
            env = {**os.environ}
            args = [str(batches), str(DEVICES), str(SAMPLES), str(KEYS)]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                AGENT,
                port,
                str(Path(tmp) / "agent.db"),
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
            assert proc.stdout is not None
            result: dict[str, Any] | None = None
            async for raw in proc.stdout:
                text = raw.decode().rstrip()
                if text.startswith("RESULT "):
                    result = orjson.loads(text[7:])
                elif "replay" in text or "backlog" in text:
                    print(f"  agent: {text}", flush=True)
            await proc.wait()
            if result is None:
                raise RuntimeError("the agent process gave no result")
        finally:
            if hub.stdin is not None:
                hub.stdin.close()
            try:
                hub.wait(60)
            except subprocess.TimeoutExpired:
                hub.kill()
        stored = await _count(url)
    rate = readings / result["replay_s"]
    note = f"{readings:,} readings, {stored:,} stored (every one)" if stored == readings else f"STORED {stored:,}"
    report.add("agent", "backlog replay to the hub", rate, "readings/s", reference=TARGET, target_ratio=1.0, notes=note)
    growth = result["rss_peak"] - result["rss_start"]
    report.add(
        "agent",
        "agent memory growth during the replay",
        growth,
        "MB",
        notes=f"RSS {result['rss_start']:.1f} MB at start, peak {result['rss_peak']:.1f}, end {result['rss_end']:.1f}",
    )
    report.add("agent", "outbox fill (writing the backlog)", readings / result["fill_s"], "readings/s")
