"""The agent's Modbus TCP driver against pymodbus's simulator (SimDevice): registers polled into
the hub, an RPC through the hub's REST API writes a register, a shared attribute writes a coil,
and a device that stops answering goes offline and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gatehub.agent.drivers.modbus import ModbusDriver
from gatehub.domain.model import Presence
from tests.integration.agent_helpers import agent_cfg, names, running_agent, synced, until
from tests.interop.tbhub import TENANT, TbHub, tb_hub

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


class Plc:
    """A pymodbus simulator device: holding 0 = voltage x10 (rises on every read), holding 4 =
    setpoint, input 10-11 = power (float32), coil 0 = relay."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, list[Any]]] = []
        holding = [SimData(0, count=20, values=2300, datatype=DataType.REGISTERS)]
        inputs = [
            SimData(0, count=10, values=0, datatype=DataType.REGISTERS),
            SimData(10, values=1234.5, datatype=DataType.FLOAT32),
        ]
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        self.device = SimDevice(id=1, simdata=(bits, bits, holding, inputs), action=self.action)
        self.server: ModbusTcpServer | None = None
        self.port = 0

    async def action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: list[Any] | None
    ) -> None:
        if values is not None:
            self.writes.append((fc, address, list(values)))
        elif fc == 3 and address == 0:
            regs[0] += 1  # the voltage changes between polls

    async def start(self, port: int = 0) -> None:
        self.server = ModbusTcpServer(self.device, address=("127.0.0.1", port))
        await self.server.listen()
        assert self.server.transport is not None
        self.port = self.server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.wait_for(server.shutdown(), 10)


async def test_modbus_values_polled_rpc_writes_a_register(h: TbHub, tmp_path: Path) -> None:
    plc = Plc()
    await plc.start()
    regs = [
        {"key": "voltage", "table": "holding", "address": 0, "scale": 0.1},
        {"key": "setpoint", "table": "holding", "address": 4, "type": "int16", "writable": True},
        {"key": "power", "table": "input", "address": 10, "type": "float32"},
        {"key": "relay", "table": "coil", "address": 0, "writable": True},
    ]
    drv = ModbusDriver(
        [{"uid": "plc-1", "model": "pm", "host": "127.0.0.1", "port": plc.port, "unit": 1, "registers": regs}],
        poll_interval=0.2,
        timeout=1.0,
    )
    try:
        async with running_agent(agent_cfg(h.port, tmp_path / "a.db"), drv) as agent:  # type: ignore[arg-type]
            await synced(agent)
            assert names(agent, "LocalTopoList") == ["plc-1"]
            dev = await h.device("plc-1")
            assert dev.parent_id == "gw1"

            # polled values reach the hub, scaled and typed
            async def polled() -> dict[str, Any] | None:
                latest = await h.store.data.latest(dev.id)
                return latest if {"voltage", "setpoint", "power", "relay"} <= latest.keys() else None

            latest = await until(polled, what="Modbus values on the hub")
            assert 230.0 < latest["voltage"]["value"] < 240.0
            assert latest["setpoint"]["value"] == 2300 and latest["power"]["value"] == pytest.approx(1234.5)
            assert latest["relay"]["value"] is False
            volts = await until(lambda: _several(h, dev.id), what="voltage changing")
            assert len(set(volts)) > 1

            # an RPC through the REST API writes the holding register
            r = await h.http.post(
                f"/api/v1/devices/{dev.id}/rpc", json={"method": "set", "params": {"setpoint": -7}, "timeout": 10000}
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"setpoint": -7}
            assert (6, 4, [0xFFF9]) in plc.writes  # FC 6, address 4, -7 as int16
            await until(lambda: _latest(h, dev.id, "setpoint", -7), what="the written value polled")
            r = await h.http.post(
                f"/api/v1/devices/{dev.id}/rpc", json={"method": "set", "params": {"voltage": 1}, "timeout": 10000}
            )
            assert "not a writable register" in r.json()["error"]

            # a shared attribute update writes the coil
            assert (await h.http.post(f"/api/v1/devices/{dev.id}/attributes/shared", json={"relay": True})).is_success
            await until(lambda: (5, 0, [True]) in plc.writes, what="coil written")
            await until(lambda: _latest(h, dev.id, "relay", True), what="relay polled on")

            # the device stops answering: offline; back: online
            port = plc.port
            await plc.stop()
            await until(lambda: _presence(h, "plc-1", Presence.OFFLINE), what="offline")
            await plc.start(port)
            await until(lambda: _presence(h, "plc-1", Presence.ONLINE), what="online again")
    finally:
        await plc.stop()


async def _several(h: TbHub, device_id: str) -> list[float] | None:
    pts = (await h.points(device_id)).get("voltage", [])
    return [p["value"] for p in pts] if len(pts) >= 3 else None


async def _latest(h: TbHub, device_id: str, key: str, value: Any) -> bool:
    got = (await h.store.data.latest(device_id, [key])).get(key)
    return got is not None and got["value"] == value


async def _presence(h: TbHub, name: str, want: Presence) -> bool:
    d = await h.store.devices.find_by_name(TENANT, name)
    return d is not None and d.presence is want
