"""Acknowledged means durable: SIGKILL a `gatehub serve` child mid-stream, then check that every
point it acknowledged (HTTP 200 after commit) is in the database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from gatehub.store import Database, Store

GATEHUB = str(Path(sys.executable).parent / "gatehub")
SILENT_PORTS = {f"GATEHUB_{p}": "-1" for p in ("IOTDA_PORT", "MQTT_PORT", "MQTTS_PORT", "MQTT_WS_PORT", "GRPC_PORT")}


def start_serve(data_dir: Path, db_url: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        **SILENT_PORTS,
        "GATEHUB_DATA_DIR": str(data_dir),
        "GATEHUB_DATABASE_URL": db_url,
        "GATEHUB_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [GATEHUB, "serve", "--http-port", "0", "--bind-host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        seen.append(line)
        if line.startswith("READY "):
            return proc, int(orjson.loads(line[6:])["http"])
    proc.kill()
    raise AssertionError("gatehub serve did not start:\n" + "".join(seen))


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "var"
    proc, port = start_serve(data, db_url)
    acked: list[int] = []
    try:
        key = (data / "admin.key").read_text().strip()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"Authorization": f"Bearer {key}"}
        ) as c:
            assert (await c.post("/api/v1/tenants", json={"id": "acme"})).status_code == 201
            r = await c.post("/api/v1/products?tenantId=acme", json={"id": "meter"})
            assert r.status_code == 201
            r = await c.post("/api/v1/devices?tenantId=acme", json={"name": "m1", "productId": "meter", "id": "m1"})
            assert r.status_code == 201

            counter = iter(range(1, 10_000_000))
            base_ts = 1_700_000_000_000
            stop_at = time.monotonic() + 20  # bounded in time ...
            killed = asyncio.Event()

            async def sender() -> None:
                while not killed.is_set() and time.monotonic() < stop_at and len(acked) < 50_000:  # ... and count
                    n = next(counter)
                    body = {"ts": base_ts + n, "values": {"seq": n, "w": n * 0.5}}
                    try:
                        resp = await c.post("/api/v1/devices/m1/telemetry", json=body)
                    except httpx.HTTPError:
                        return  # the server died under us: this point was never acknowledged
                    if resp.status_code == 200:
                        acked.append(n)

            async def killer() -> None:
                while len(acked) < 800 and time.monotonic() < stop_at:
                    await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGKILL)
                killed.set()

            await asyncio.gather(killer(), *(sender() for _ in range(16)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 800

    db = Database.open(db_url)
    try:
        store = Store(db)
        stored = await store.data.telemetry("m1", ["seq"], 0, 2**62, limit=10_000_000)
    finally:
        await db.close()
    have = {p["value"] for p in stored.get("seq", [])}
    missing = sorted(set(acked) - have)
    assert not missing, f"{len(missing)} acknowledged points lost, e.g. {missing[:10]}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_serve_restarts_on_same_data(tmp_path: Path, db_url: str) -> None:
    """A second start keeps the admin key and the data (no second first-start)."""
    data = tmp_path / "var"
    proc, _port = start_serve(data, db_url)
    key1 = (data / "admin.key").read_text()
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "stopped" in out
    proc, port = start_serve(data, db_url)
    try:
        assert (data / "admin.key").read_text() == key1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.get("/api/v1/tenants", headers={"Authorization": f"Bearer {key1.strip()}"})
            assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
