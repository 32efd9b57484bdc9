"""The agent's extension hook: an extension's topic filters are subscribed, it gets their messages,
publishes through the agent, sees connection changes and the sub-devices' local addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gatehub.agent import Agent, AgentExtension, ExtensionContext
from gatehub.agent.drivers.simulator import SimulatorDriver
from tests.integration.agent_helpers import agent_cfg, synced, until
from tests.interop.tbhub import GW2_TOKEN, Paho, TbHub, tb_hub

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
async def h(tmp_path: Path, db_url: str) -> AsyncIterator[TbHub]:
    async with tb_hub(tmp_path, db_url) as hub:
        yield hub


class Lookup(AgentExtension):
    """Answers "where is sub-device X" with its local address, as a device-link relay needs."""

    name = "lookup"
    topic_filters = ("ext/lookup/request",)

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self, ctx: ExtensionContext) -> None:
        await super().start(ctx)
        self.events.append("start")

    async def on_connected(self) -> None:
        self.events.append("up")

    async def on_disconnected(self) -> None:
        self.events.append("down")

    async def on_message(self, topic: str, payload: bytes) -> None:
        name = orjson.loads(payload)["device"]
        dev = self.ctx.subdevice(name)
        driver = self.ctx.driver_for(name)
        answer = {
            "device": name,
            "address": dev.address if dev else None,
            "proxied": dev.proxied if dev else False,
            "driver": driver.name if driver else None,
            "all": sorted(v.name for v in self.ctx.subdevices()),
        }
        assert await self.ctx.publish("ext/lookup/response", orjson.dumps(answer)) == 0


async def test_extension_gets_its_topics_publishes_and_sees_the_connection(h: TbHub, tmp_path: Path) -> None:
    sim = SimulatorDriver([{"uid": "cam-1", "model": "cam", "address": "127.0.0.1:8554"}], poll_interval=0.2)
    ext = Lookup()
    agent = Agent(agent_cfg(h.port, tmp_path / "a.db"), [sim])
    agent.add_extension(ext)
    async with agent:
        await synced(agent)
        await until(lambda: "up" in ext.events, what="on_connected")
        other = await Paho(h.port, GW2_TOKEN, "watcher").connect()
        try:
            await other.subscribe("ext/lookup/response")
            assert await other.publish("ext/lookup/request", {"device": "cam-1"}) == 0
            got = await other.expect("ext/lookup/response")
            assert got == {
                "device": "cam-1",
                "address": "127.0.0.1:8554",
                "proxied": True,
                "driver": "simulator",
                "all": ["cam-1"],
            }
        finally:
            await other.close()
        await h.node.mqtt.stop_listener("tcp", close_sessions=True)
        await until(lambda: "down" in ext.events, what="on_disconnected")
        await h.node.mqtt.start_listener("tcp")
        await until(lambda: ext.events.count("up") == 2, what="on_connected again")
        with pytest.raises(RuntimeError):
            agent.add_extension(Lookup())  # only before start
