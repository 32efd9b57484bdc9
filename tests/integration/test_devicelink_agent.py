"""Device links through the real gateway agent (``gatehub agent``, its Modbus TCP driver, the
device-link relay it plugs in by itself): ``pymodbus``'s client -> the hub's link port -> a
stream channel (or the tunnel over the agent's MQTT session) -> the agent -> a ``pymodbus``
server on the gateway's network, found there by the agent's driver. Also: a link closes when the agent goes away, and an
agent with device links switched off gets none (the hub says so when the link is asked for)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gatehub.agent import Agent
from gatehub.agent.drivers.modbus import ModbusDriver
from gatehub.domain.model import NodeType
from tests.integration.agent_helpers import agent_cfg, synced, until
from tests.integration.devicelink_helpers import LinkNode, link_node
from tests.integration.test_agent_modbus import Plc

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
TENANT, GW, TOKEN = "plant", "edge-1", "tok-edge-1"


async def _gateway(h: LinkNode) -> None:
    st = h.store
    await st.accounts.create_tenant(TENANT)
    await st.catalog.create_product(TENANT, "edge", node_type=NodeType.GATEWAY)
    await st.devices.create(TENANT, "Edge 1", "edge", device_id=GW, access_token=TOKEN)


def _driver(plc: Plc) -> ModbusDriver:
    regs = [{"key": "voltage", "table": "holding", "address": 0, "scale": 0.1}]
    return ModbusDriver(
        [{"uid": "plc-1", "model": "pm", "host": "127.0.0.1", "port": plc.port, "unit": 1, "registers": regs}],
        poll_interval=0.5,
        timeout=1.0,
    )


async def _sub_id(h: LinkNode) -> str:
    async def found() -> str | None:
        dev = await h.store.devices.find_by_name(TENANT, "plc-1")
        return dev.id if dev is not None and dev.parent_id == GW else None

    dev_id: str = await until(found, what="plc-1 in the gateway's topology")
    return dev_id


@pytest.mark.parametrize("streams", [True, False], ids=["stream-channels", "framed-over-mqtt"])
async def test_pymodbus_through_the_real_agent(tmp_path: Path, db_url: str, streams: bool) -> None:
    plc = Plc()
    await plc.start()
    try:
        async with link_node(tmp_path, db_url) as h:
            await _gateway(h)
            cfg = agent_cfg(h.mqtt_port, tmp_path / "agent.db", token=TOKEN, devicelink={"streams": streams})
            async with Agent(cfg, [_driver(plc)]) as agent:
                await synced(agent)
                dev_id = await _sub_id(h)
                link = await h.create(dev_id.upper(), {"protocol": "tcp", "devicePort": plc.port})
                assert link["mode"] == "gateway" and link["deviceId"] == dev_id
                client = AsyncModbusTcpClient("127.0.0.1", port=link["port"], timeout=5, retries=1)
                assert await client.connect()
                try:
                    rr = await client.read_holding_registers(0, count=6, device_id=1)
                    assert not rr.isError() and rr.registers[1:6] == [2300] * 5
                    wr = await client.write_register(4, 4242, device_id=1)
                    assert not wr.isError()
                    assert (6, 4, [4242]) in plc.writes  # FC 6 reached the PLC through the agent
                    again = await client.read_holding_registers(4, count=1, device_id=1)
                    assert again.registers == [4242]
                    for _ in range(50):  # a steady exchange, as a SCADA poll would do
                        assert not (await client.read_holding_registers(0, count=2, device_id=1)).isError()
                finally:
                    client.close()
                lk = h.links.get(link["token"], None)
                assert lk is not None and lk.bytes_in >= 53 * 12 and lk.bytes_out >= 53 * 9
                assert h.links.tunnels is not None and h.links.tunnels.streams is not None
                assert h.links.tunnels.streams.attached == (1 if streams else 0)

                # the agent goes away: its links close, the link's port stops answering
                second = await h.create(dev_id, {"protocol": "tcp", "devicePort": plc.port})
            await until(lambda: second["token"] not in h.links.links, what="link closed with the agent")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", second["port"])
            except OSError:
                refused = True
            else:
                refused = False  # a listener left behind
                w.close()
            assert refused
    finally:
        await plc.stop()


async def test_an_agent_without_device_links_refuses_them(tmp_path: Path, db_url: str) -> None:
    plc = Plc()
    await plc.start()
    try:
        async with link_node(tmp_path, db_url) as h:
            await _gateway(h)
            cfg = agent_cfg(h.mqtt_port, tmp_path / "agent.db", token=TOKEN, devicelink={"enabled": False})
            async with Agent(cfg, [_driver(plc)]) as agent:
                await synced(agent)
                dev_id = await _sub_id(h)
                # the hub knows the gateway's agent has no relay: a clear 409, no port taken
                err = await h.create(dev_id, {"protocol": "tcp", "devicePort": plc.port}, expect=409)
                assert err["error"]["code"] == "gateway_unsupported"
                assert h.links.list(TENANT) == []
                assert plc.writes == []
    finally:
        await plc.stop()
