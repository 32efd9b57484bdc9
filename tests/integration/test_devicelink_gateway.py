"""Device links through a gateway: the hub's tunnel dialect and the agent's relay module
(``gatehub.agent.devicelink``) on a real aiomqtt connection, relaying to real local TCP and UDP
devices; flow control with a slow client and a slow device; links closing with the gateway."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiomqtt
import pytest

from gatehub.protocols import devicelink as proto
from gatehub.transports.devicelink.tcp import WRITE_HIGH
from tests.integration.devicelink_agent import agent_relay
from tests.integration.devicelink_helpers import (
    eventually,
    link_node,
    read_exactly,
    tcp_client,
    tcp_echo,
    udp_client,
    udp_echo,
    write_until_held_back,
)

GW_TOKEN = "tok-gw-1"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


def local(device_id: str, device_name: str) -> str | None:
    return "127.0.0.1" if device_id.startswith("meter") else None


async def test_tcp_echo_through_gateway(tmp_path: Path, db_url: str) -> None:
    async with link_node(tmp_path, db_url) as h, tcp_echo(banner=b"ready\n") as (dev_port, rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        r = await h.api.post("/api/v1/devicelink/meter-1", json={"protocol": "tcp", "devicePort": dev_port})
        assert r.status_code == 409 and r.json()["error"]["code"] == "gateway_offline"
        # a gateway connected without the tunnel extension: refused with its own code
        async with aiomqtt.Client("127.0.0.1", h.mqtt_port, username=GW_TOKEN, identifier="plain-gw"):
            await eventually(lambda: h.node.mqtt.session_for_device("gw-1") is not None)
            r = await h.api.post("/api/v1/devicelink/meter-1", json={"protocol": "tcp", "devicePort": dev_port})
            assert r.status_code == 409 and r.json()["error"]["code"] == "gateway_unsupported"
        await eventually(lambda: h.node.mqtt.session_for_device("gw-1") is None)
        async with agent_relay(h.mqtt_port, GW_TOKEN, local) as relay:
            link = await h.create("METER-1", {"protocol": "tcp", "devicePort": dev_port})
            assert link["mode"] == "gateway" and link["gatewayId"] == "gw-1"
            for round_ in range(2):  # two client connections in turn: a channel each
                reader, writer = await tcp_client(link["port"])
                assert await read_exactly(reader, 6) == b"ready\n"
                payload = hashlib.sha256(str(round_).encode()).digest() * 40_000  # 1.25 MiB
                writer.write(payload)
                assert await read_exactly(reader, len(payload)) == payload
                writer.close()
                await eventually(lambda: not relay.channels and h.links.get(link["token"], None).client is None)
            assert rec.connections == 2
            lk = h.links.get(link["token"], None)
            assert lk.bytes_in == 2 * len(payload) and lk.bytes_out == 2 * (len(payload) + 6)
        # the gateway went away: its links close
        await eventually(lambda: link["token"] not in h.links.links)
        closed = await eventually(lambda: h.events("acme", "devicelink.closed"))
        assert closed[0]["body"]["reason"] == "gateway gw-1 disconnected"


async def test_udp_echo_through_gateway(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, udp_echo() as (dev_port, rec, _t):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-u")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local) as relay:
            link = await h.create("meter-u", {"protocol": "udp", "devicePort": dev_port})
            assert len(relay.channels) == 1  # opened with the link
            async with udp_client(link["port"]) as (t, c):
                for i in range(50):
                    t.sendto(b"d%d" % i)
                    assert await c.get() == b"echo:d%d" % i
            assert rec.datagrams == [b"d%d" % i for i in range(50)]
            assert (await h.api.delete(f"/api/v1/devicelink/{link['token']}")).status_code == 204
            await eventually(lambda: not relay.channels)


async def test_gateway_cannot_reach_device(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "unknown-1")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local):
            r = await h.api.post("/api/v1/devicelink/unknown-1", json={"protocol": "udp", "devicePort": dev_port})
            assert r.status_code == 409 and r.json()["error"]["code"] == "device_unreachable"
            assert "does not know the address" in r.json()["error"]["message"]
            link = await h.create("unknown-1", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed: the agent could not connect
            writer.close()
            assert link["token"] in h.links.links  # the link stays for the next client
            # an operator-set address is sent to the agent, which uses it
            await h.api.post("/api/v1/devices/unknown-1/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
            link2 = await h.create("unknown-1", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link2["port"])
            writer.write(b"ok")
            assert await read_exactly(reader, 2) == b"ok"
            writer.close()
            assert rec.connections == 1


async def test_link_closes_when_device_leaves_gateway(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-m")
        await h.store.devices.create("acme", "gw 2", "acme-gw", device_id="gw-2")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local):
            link = await h.create("meter-m", {"protocol": "tcp", "devicePort": dev_port})
            r = await h.api.patch("/api/v1/devices/meter-m", json={"parentId": "gw-2"})
            assert r.status_code == 200, r.text
            await eventually(lambda: link["token"] not in h.links.links)


class _SlowDevice(asyncio.Protocol):
    """Sends ``total`` bytes as fast as its socket takes them, then closes; reads nothing
    until told, then counts what it read."""

    def __init__(self, total: int, read: asyncio.Event) -> None:
        self.total = total
        self.sent = 0
        self.got = 0
        self.read = read
        self.chunk = bytes(range(256)) * 256  # 64 KiB

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.t.pause_reading()
        self.paused = False
        self._pump()
        asyncio.get_running_loop().create_task(self._read_later())

    async def _read_later(self) -> None:
        await self.read.wait()
        self.t.resume_reading()

    def _pump(self) -> None:
        while self.sent < self.total and not self.paused:
            self.t.write(self.chunk)
            self.sent += len(self.chunk)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if not self.read.is_set():  # uvloop reads once connection_made returned, paused or not
            self.t.pause_reading()


async def test_flow_control_bounds_memory_both_ways(tmp_path: Path, sqlite_url: str) -> None:
    total = 32 * 1024 * 1024
    window = 128 * 1024
    read = asyncio.Event()
    devices: list[_SlowDevice] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: devices.append(_SlowDevice(total, read)) or devices[-1], "127.0.0.1", 0)
    dev_port = server.sockets[0].getsockname()[1]
    async with link_node(tmp_path, sqlite_url, devicelink_tunnel_window=window) as h:
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-s")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, window=window) as relay:
            link = await h.create("meter-s", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            # the client reads nothing and writes 16 MiB the device does not read
            sent = await write_until_held_back(writer)
            await asyncio.sleep(1.0)
            lk = h.links.get(link["token"], None)
            client = lk.client
            (ch,) = relay.channels.values()
            dev = devices[0]
            bound = WRITE_HIGH + window + proto.MAX_DATA  # socket buffer limit + one window + one frame
            # device -> client: the hub holds at most about one window for the client, the agent
            # stopped reading the device, and the device is held back by TCP, not by our memory
            assert client.transport.get_write_buffer_size() <= bound
            assert ch.reading_paused and len(ch.sender.pending) <= 256 * 1024
            assert relay._queue.qsize() < 64
            assert dev.sent < total
            # client -> device: the agent's buffer towards the device is bounded, the hub stopped reading
            assert ch.transport.get_write_buffer_size() <= bound
            assert client._pause  # the client socket is not being read
            assert sent < total
            assert h.node.mqtt.session_for_device("gw-1").conn.session.queue.__len__() < 64
            # now both read: everything arrives, intact and in order
            read.set()
            expected = (bytes(range(256)) * 256) * (total // 65536)
            got = await asyncio.wait_for(reader.readexactly(total), 60)
            assert got == expected
            writer.close()
            await eventually(lambda: dev.got == sent, timeout=30)
    server.close()


async def test_bad_frames_from_a_gateway_change_nothing(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-b")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local):
            link = await h.create("meter-b", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            writer.write(b"x")
            assert await read_exactly(reader, 1) == b"x"
            # garbage, unknown channels and frames of another version on the gateway's own session
            tunnel = h.links.tunnels.tunnel_for("gw-1")
            for payload in (
                b"",
                b"\x01",
                b"\x09\x04\x00\x00\x00\x01abc",
                proto.encode(proto.FrameType.DATA, 999, b"z"),
            ):
                h.links.tunnels.on_publish(tunnel.session, _publish(payload))
            writer.write(b"y")
            assert await read_exactly(reader, 1) == b"y"
            writer.close()


def _publish(payload: bytes) -> object:
    from gatehub.protocols.mqtt import Publish

    return Publish(topic=proto.TOPIC_UP, payload=payload, qos=0)
