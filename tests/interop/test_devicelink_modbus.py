"""A Modbus TCP exchange through a via-gateway device link: ``pymodbus``'s client (its own
virtualenv, a subprocess) -> the hub's link port -> the tunnel over the gateway's MQTT session ->
the agent's relay module (``gatehub.agent.devicelink`` on a real aiomqtt connection, the harness
standing in for the agent daemon) -> a ``pymodbus`` server on the gateway's local network."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.devicelink_agent import agent_relay
from tests.integration.devicelink_helpers import link_node
from tests.interop.venvs import ensure_venv, start_script

pytestmark = pytest.mark.slow

# pymodbus's StartAsyncTcpServer does not report an ephemeral port: the test passes a free one
SERVER = r"""
import asyncio, json, sys
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer

port = int(sys.argv[1])
hr = ModbusSequentialDataBlock(0, list(range(100, 200)))
slave = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 100), co=ModbusSequentialDataBlock(0, [0] * 100),
    ir=ModbusSequentialDataBlock(0, [7] * 100), hr=hr,
)
print(json.dumps({"listening": port}), flush=True)
asyncio.run(StartAsyncTcpServer(context=ModbusServerContext(slaves=slave, single=True), address=("127.0.0.1", port)))
"""

CLIENT = r"""
import json, sys, time
from pymodbus.client import ModbusTcpClient

port = int(sys.argv[1])
c = ModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=1)
assert c.connect(), "no connection"
out = {}
rr = c.read_holding_registers(0, count=10, slave=1)
out["before"] = rr.registers
wr = c.write_registers(3, [4242, 4343], slave=1)
out["write_error"] = wr.isError()
out["after"] = c.read_holding_registers(0, count=10, slave=1).registers
t0 = time.perf_counter()
for _ in range(200):
    c.read_input_registers(0, count=4, slave=1)
out["ms_per_request"] = (time.perf_counter() - t0) * 1000 / 200
c.close()
print(json.dumps(out), flush=True)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _wait_file(path: Path, text: str, timeout: float = 30) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} within {timeout} s")


async def test_pymodbus_through_a_via_gateway_link(tmp_path: Path) -> None:
    await asyncio.to_thread(ensure_venv, "pymodbus")
    mport = _free_port()
    server = start_script("pymodbus", SERVER, [str(mport)], tmp_path / "server")
    try:
        await _wait_file(tmp_path / "server" / "stdout.txt", "listening")
        await asyncio.sleep(0.5)
        db = f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"
        async with link_node(tmp_path, db) as h:
            await h.gateway_with_child("plant", "edge-1", "tok-edge-1", "Modbus-Meter")
            # the agent knows where its sub-device is on the local network
            addresses = {"Modbus-Meter": "127.0.0.1"}
            async with agent_relay(h.mqtt_port, "tok-edge-1", lambda dev_id, _name: addresses.get(dev_id)):
                link = await h.create("MODBUS-METER", {"protocol": "tcp", "devicePort": mport})
                assert link["mode"] == "gateway"
                client = start_script("pymodbus", CLIENT, [str(link["port"])], tmp_path / "client")
                code = await asyncio.to_thread(client.wait, 120)
                out = (tmp_path / "client" / "stdout.txt").read_text()
                err = (tmp_path / "client" / "stderr.txt").read_text()
                assert code == 0, err[-2000:]
                result = json.loads(out.strip().splitlines()[-1])
                # pymodbus 3.9's datastore: Modbus address a is block index a + 1
                assert result["before"] == list(range(101, 111))
                assert result["write_error"] is False
                assert result["after"] == [101, 102, 103, 4242, 4343, 106, 107, 108, 109, 110]
                print(f"Modbus request through the via-gateway link: {result['ms_per_request']:.2f} ms")
                lk = h.links.get(link["token"], None)
                assert lk.bytes_in > 200 * 12 and lk.bytes_out > 200 * 9
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
