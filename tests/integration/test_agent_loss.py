"""Nothing lost, nothing stored twice: the agent sends continuously while its hub (a real
``gatehub serve`` child process) is killed with SIGKILL and restarted on the same ports and data,
and while the network to the hub is cut (a loopback TCP relay between them stops listening and
drops its connections). Afterwards the hub holds every reading exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehub.agent import Agent
from gatehub.agent.drivers.base import Driver, Readings, SubDeviceInfo
from gatehub.store import Database, Store
from tests.integration.agent_helpers import agent_cfg, until

pytestmark = pytest.mark.slow
GATEHUB = str(Path(sys.executable).parent / "gatehub")
BASE_TS = 1_700_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """A ``gatehub serve`` child on fixed ports and one data folder."""

    def __init__(self, data: Path, db_url: str) -> None:
        self.data, self.db_url = data, db_url
        self.http, self.mqtt = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        env = {
            **os.environ,
            "GATEHUB_DATA_DIR": str(self.data),
            "GATEHUB_DATABASE_URL": self.db_url,
            "GATEHUB_LOG_LEVEL": "warning",
            "GATEHUB_MQTT_PORT": str(self.mqtt),
            **{f"GATEHUB_{p}": "-1" for p in ("IOTDA_PORT", "MQTTS_PORT", "MQTT_WS_PORT", "GRPC_PORT")},
        }
        cmd = [GATEHUB, "serve", "--http-port", str(self.http), "--bind-host", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            seen.append(line)
            if line.startswith("READY "):
                return
        self.proc.kill()
        raise AssertionError("gatehub serve did not start:\n" + "".join(seen))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Relay:
    """The network between the gateway and the hub: a loopback TCP relay that can be cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()
        await self.server.wait_closed()
        self.server = None
        self.cuts += 1

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.transport.abort()
            return
        self.conns.update((w, uw))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        self.conns.discard(w)
        self.conns.discard(uw)


class Counter(Driver):
    """Sub-devices that push numbered readings (unique timestamps) at a steady rate."""

    name = "counter"
    poll_interval = None

    def __init__(self, uids: list[str], rate: float) -> None:
        self.uids, self.rate = uids, rate
        self.sent: dict[str, int] = dict.fromkeys(uids, 0)
        self._task: asyncio.Task[None] | None = None

    async def discover(self) -> list[SubDeviceInfo]:
        return [SubDeviceInfo(u, "counter") for u in self.uids]

    async def read(self, uid: str) -> dict[str, Any]:
        return {"i": self.sent[uid]}

    async def write(self, uid: str, method: str, params: Any) -> Any:
        return None

    def go(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def halt(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        period = 1 / self.rate
        while True:
            for u in self.uids:
                n = self.sent[u] = self.sent[u] + 1
                self.events.on_event(Readings(u, {"i": n, "v": n * 0.5}, BASE_TS + n))
            await asyncio.sleep(period)


async def _setup(hub: Hub) -> None:
    key = (hub.data / "admin.key").read_text().strip()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{hub.http}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        assert (await c.post("/api/v1/tenants", json={"id": "acme"})).status_code == 201
        r = await c.post("/api/v1/products?tenantId=acme", json={"id": "gwp", "nodeType": "gateway"})
        assert r.status_code == 201
        body = {"name": "gw", "productId": "gwp", "id": "gw", "accessToken": "gw-token"}
        assert (await c.post("/api/v1/gateways?tenantId=acme", json=body)).status_code == 201


async def test_hub_killed_and_network_cut_loses_nothing_stores_nothing_twice(tmp_path: Path, db_url: str) -> None:
    hub = Hub(tmp_path / "var", db_url)
    hub.start()
    relay = Relay(hub.mqtt)
    await relay.up()
    drv = Counter(["c-1", "c-2", "c-3"], rate=100)  # 300 readings/s
    cfg = agent_cfg(relay.port, tmp_path / "agent.db", token="gw-token", outbox={"batch_readings": 200, "window": 8})
    agent = Agent(cfg, [drv])
    try:
        await _setup(hub)
        async with agent:
            await asyncio.wait_for(agent.reconciled.wait(), 30)
            drv.go()
            for _ in range(3):  # bounded: three rounds of a kill and a cut, each ended by a reconnect
                await asyncio.sleep(2.0)
                before = agent.connections
                hub.kill()
                await asyncio.sleep(1.0)
                hub.start()
                await until(lambda b=before: agent.connections > b, timeout=60, what="reconnected after the kill")
                await asyncio.sleep(1.0)
                before = agent.connections
                await relay.cut()
                await asyncio.sleep(1.5)
                await relay.up()
                await until(lambda b=before: agent.connections > b, timeout=60, what="reconnected after the cut")
            await asyncio.sleep(1.0)
            await drv.halt()
            await agent.outbox.flush()
            await until(_empty(agent), timeout=90, what="the outbox drained")
            connections = agent.connections
        hub.stop()
    finally:
        hub.stop()
        if relay.server is not None:
            await relay.cut()
    assert hub.kills == 3 and relay.cuts >= 3 and connections >= 7  # it really reconnected after every outage
    total = sum(drv.sent.values())
    assert total >= 3 * 100 * 15  # readings flowed through the whole run

    db = Database.open(db_url)
    try:
        store = Store(db)
        for uid, n in drv.sent.items():
            dev = await store.devices.find_by_name("acme", uid)
            assert dev is not None and dev.parent_id == "gw"
            got = await store.data.telemetry(dev.id, ["i"], 0, 2**62, limit=10_000_000)
            values = [p["value"] for p in got.get("i", [])]
            assert len(values) == n, f"{uid}: {n} readings sent, {len(values)} stored"
            assert sorted(values) == list(range(1, n + 1)), f"{uid}: readings missing or twice"
            assert all(p["ts"] == BASE_TS + p["value"] for p in got["i"])
    finally:
        await db.close()


def _empty(agent: Agent) -> Any:
    async def check() -> bool:
        batches, _readings = await agent.state.backlog()
        return batches == 0

    return check
