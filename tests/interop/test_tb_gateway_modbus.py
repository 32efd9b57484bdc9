"""The real ThingsBoard IoT Gateway (PyPI ``thingsboard-gateway``, unmodified, in its own virtualenv)
with its Modbus TCP connector against a ``pymodbus`` simulator: polled values arrive in the
hub's store, and an RPC sent through the hub's REST API writes a Modbus register."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.interop.tbhub import GW_TOKEN, TbHub, tb_hub
from tests.interop.venvs import closed_port, ensure_venv, start_script

pytestmark = pytest.mark.slow

DEVICE = "Modbus Sim"
BASE = 215  # every register starts here; the connector reads "temperature" from address 0

SIMULATOR = r"""
import asyncio, json, sys
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer

port, base = int(sys.argv[1]), int(sys.argv[2])

async def watch(block):
    seen = {}
    while True:
        values = block.getValues(1, 20)  # Modbus address a is block index a + 1
        changed = {i: v for i, v in enumerate(values) if v != base}
        if changed != seen:
            seen = changed
            print(json.dumps({"changed": changed}), flush=True)
        await asyncio.sleep(0.1)

async def main():
    block = ModbusSequentialDataBlock(0, [base] * 100)
    # pymodbus 3.9.2 uses the given blocks only when di is given too
    slave = ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, [0] * 100),
        co=ModbusSequentialDataBlock(0, [0] * 100),
        ir=ModbusSequentialDataBlock(0, [base] * 100),
        hr=block,
    )
    context = ModbusServerContext(slaves=slave, single=True)
    asyncio.create_task(watch(block))
    print(json.dumps({"listening": port}), flush=True)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))

asyncio.run(main())
"""


def gateway_config(mqtt_port: int, modbus_port: int) -> dict[str, Any]:
    return {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60,
            "handleDeviceRenaming": True,
            "security": {"type": "accessToken", "accessToken": GW_TOKEN},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }


def modbus_config(modbus_port: int) -> dict[str, Any]:
    reg = {"type": "16int", "functionCode": 3, "objectsCount": 1}
    return {
        "master": {
            "slaves": [
                {
                    "host": "127.0.0.1",
                    "port": modbus_port,
                    "type": "tcp",
                    "method": "socket",
                    "unitId": 1,
                    "deviceName": DEVICE,
                    "deviceType": "modbus-sim",
                    "timeout": 5,
                    "byteOrder": "BIG",
                    "wordOrder": "BIG",
                    "retries": 3,
                    "pollPeriod": 500,
                    "connectAttemptTimeMs": 1000,
                    "connectAttemptCount": 100,
                    "waitAfterFailedAttemptsMs": 1000,
                    "attributes": [],
                    "timeseries": [{"tag": "temperature", "address": 0, **reg}],
                    "attributeUpdates": [
                        {"tag": "setpoint", "type": "16int", "functionCode": 6, "objectsCount": 1, "address": 6}
                    ],
                    "rpc": [{"tag": "setValue", "type": "16int", "functionCode": 6, "objectsCount": 1, "address": 5}],
                }
            ]
        }
    }


class Proc:
    def __init__(self, proc: subprocess.Popen[bytes], cwd: Path) -> None:
        self.proc, self.cwd = proc, cwd

    def lines(self) -> list[dict[str, Any]]:
        path = self.cwd / "stdout.txt"
        return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")] if path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def until(check: Any, timeout: float, what: str, diag: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        res = await check()
        if res:
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; {diag() if diag else ''}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_modbus_values_arrive_and_rpc_writes_a_register(tmp_path: Path, db_url: str) -> None:
    python = await asyncio.to_thread(ensure_venv, "thingsboard-gateway")
    async with tb_hub(tmp_path, db_url) as h:
        mport = closed_port()
        sim = Proc(
            start_script("thingsboard-gateway", SIMULATOR, [str(mport), str(BASE)], tmp_path / "sim"), tmp_path / "sim"
        )
        gw_dir = tmp_path / "gw"
        conf = gw_dir / "config"
        conf.mkdir(parents=True)
        (gw_dir / "logs").mkdir()
        (conf / "tb_gateway.json").write_text(json.dumps(gateway_config(h.port, mport)))
        (conf / "modbus.json").write_text(json.dumps(modbus_config(mport)))
        pkg = next((python.parent.parent / "lib").glob("python3*/site-packages/thingsboard_gateway/config"))
        shutil.copy(pkg / "logs.json", conf / "logs.json")
        from tests.interop.venvs import client_env

        def start_gateway() -> Proc:
            out, err = (gw_dir / "stdout.txt").open("ab"), (gw_dir / "stderr.txt").open("ab")
            proc = subprocess.Popen(
                [str(python.parent / "thingsboard-gateway")],
                cwd=gw_dir,
                stdout=out,
                stderr=err,
                env=client_env({"TB_GW_CONFIG_DIR": str(conf)}),
            )
            return Proc(proc, gw_dir)

        gw = start_gateway()

        def diag() -> str:
            logs = "".join(p.read_text()[-1500:] for p in (gw_dir / "logs").glob("*.log"))
            return f"gateway stderr: {(gw_dir / 'stderr.txt').read_text()[-1500:]} logs: {logs}"

        try:
            await until(lambda: _has_value(h), 120, "no Modbus value in the store", diag)
            dev = await h.device(DEVICE)
            assert dev.parent_id == "gw1"
            pts = await h.points(dev.id)
            assert pts["temperature"][-1]["value"] == BASE, (pts, sim.lines(), diag())
            # an RPC through the REST API writes register 4 (the gateway's generic "set")
            body = {"method": "set", "params": "type=16int;functionCode=6;objectsCount=1;address=4;value=99;"}
            r = await h.http.post(f"/api/v1/devices/{dev.id}/rpc", json={**body, "timeout": 20000})
            assert r.status_code == 200, r.text
            await until(lambda: _changed(sim, "4", 99), 30, "register 4 not written", lambda: sim.lines())
            # a configured RPC method writes register 5
            r = await h.http.post(
                f"/api/v1/devices/{dev.id}/rpc", json={"method": "setValue", "params": 77, "timeout": 20000}
            )
            assert r.status_code == 200, r.text
            await until(lambda: _changed(sim, "5", 77), 30, "register 5 not written", lambda: sim.lines())
            # a shared attribute mapped in attributeUpdates writes register 6
            r = await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"setpoint": 42})
            assert r.status_code == 200, r.text
            await until(lambda: _changed(sim, "6", 42), 30, "register 6 not written", lambda: sim.lines())
            # while the gateway is down: a persistent RPC and a shared attribute update wait for it
            gw.stop()
            await until(lambda: _presence(h, "offline-gateway"), 30, "sub-device not offline-gateway")
            r = await h.http.post(
                f"/api/v1/devices/{dev.id}/rpc",
                json={"method": "setValue", "params": 55, "persistent": True, "timeout": 3000},
            )
            assert r.status_code == 200 and r.json()["status"] == "QUEUED", r.text
            rpc_id = r.json()["rpcId"]
            r = await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"setpoint": 43})
            gw = start_gateway()
            await until(lambda: _changed(sim, "5", 55), 60, "queued RPC not delivered", lambda: (sim.lines(), diag()))
            await until(lambda: _changed(sim, "6", 43), 30, "missed attribute not pushed", lambda: sim.lines())
            got = await until(lambda: _rpc_done(h, rpc_id), 30, "persistent RPC not SUCCESSFUL")
            assert got["status"] == "SUCCESSFUL"
        finally:
            gw.stop()
            sim.stop()


async def _presence(h: TbHub, want: str) -> bool:
    return (await h.device(DEVICE)).presence.value == want


async def _rpc_done(h: TbHub, rpc_id: str) -> dict[str, Any] | None:
    got: dict[str, Any] = (await h.http.get(f"/api/v1/rpc/{rpc_id}")).json()
    return got if got["status"] in ("SUCCESSFUL", "FAILED", "TIMEOUT", "EXPIRED") else None


async def _has_value(h: TbHub) -> bool:
    dev = await h.store.devices.find_by_name("acme", DEVICE)
    return dev is not None and bool((await h.points(dev.id)).get("temperature"))


async def _changed(sim: Proc, reg: str, value: int) -> bool:
    lines = sim.lines()
    return bool(lines) and lines[-1].get("changed", {}).get(reg) == value
