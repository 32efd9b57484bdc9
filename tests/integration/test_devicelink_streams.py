"""Stream channels of via-gateway TCP links (``gatehub.transports.devicelink.streams``): the agent's relay
carries a channel's bytes on a TCP connection of its own to the hub's stream port instead of
framing them over MQTT. Real sockets throughout: the hub, the relay on a real aiomqtt session
(``tests.integration.devicelink_agent``), echo and slow devices, plain TCP clients."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest

from gatehub import splice
from gatehub.agent.devicelink import _StreamChannel, _TcpChannel
from gatehub.transports.devicelink.streams import MAGIC, PREAMBLE_SIZE, StreamListener
from gatehub.transports.devicelink.tcp import WRITE_HIGH
from tests.integration.devicelink_agent import agent_relay
from tests.integration.devicelink_helpers import (
    LinkNode,
    eventually,
    link_node,
    read_exactly,
    tcp_client,
    tcp_echo,
    write_until_held_back,
)
from tests.integration.test_devicelink_gateway import _SlowDevice

GW_TOKEN = "tok-gw-1"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


# the agent relays a stream with splice(2) on Linux, with asyncio transports elsewhere: both tested
RELAYS = [
    pytest.param(True, id="splice", marks=pytest.mark.skipif(not splice.available(), reason="no splice(2) here")),
    pytest.param(False, id="transports"),
]


def relaying(ch: object) -> bool:
    """The channel relays over its stream (by the kernel or by transports)."""
    return type(ch) is _StreamChannel and (ch.stream is not None or ch.spliced is not None)


def local(device_id: str, device_name: str) -> str | None:
    return "127.0.0.1" if device_id.startswith("meter") else None


def listener(h: LinkNode) -> StreamListener:
    streams = h.links.tunnels.streams if h.links.tunnels is not None else None
    assert streams is not None
    return streams


def tunnel_of(h: LinkNode, gw: str) -> Any:
    assert h.links.tunnels is not None
    t = h.links.tunnels.tunnel_for(gw)
    assert t is not None
    return t


@pytest.mark.parametrize("use_splice", RELAYS)
async def test_tcp_echo_over_a_stream_channel(tmp_path: Path, db_url: str, use_splice: bool) -> None:
    async with link_node(tmp_path, db_url) as h, tcp_echo(banner=b"ready\n") as (dev_port, rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, stream_host="127.0.0.1", use_splice=use_splice) as relay:
            assert relay.stream_port == listener(h).port  # told in the hub's HELLO
            link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
            frames_before = tunnel_of(h, "gw-1").frames_out
            for round_ in range(2):  # a stream per client connection
                reader, writer = await tcp_client(link["port"])
                # the device speaks first: its banner waits for the stream, then comes through it
                assert await read_exactly(reader, 6) == b"ready\n"
                (ch,) = relay.channels.values()
                assert relaying(ch) and (ch.spliced is not None) == use_splice
                payload = hashlib.sha256(str(round_).encode()).digest() * 80_000  # 2.5 MiB
                writer.write(payload)
                assert await read_exactly(reader, len(payload)) == payload
                writer.close()
                await eventually(lambda: not relay.channels and h.links.get(link["token"], None).client is None)
            assert listener(h).attached == 2 and not listener(h).pending
            # the data did not go through the tunnel: only the two OPENs went down it
            assert tunnel_of(h, "gw-1").frames_out - frames_before == 2
            lk = h.links.get(link["token"], None)
            assert lk.bytes_in == 2 * len(payload) and lk.bytes_out == 2 * (len(payload) + 6)
            assert rec.connections == 2


@pytest.mark.parametrize("use_splice", RELAYS)
async def test_half_close_and_close_pass_through_a_stream(tmp_path: Path, sqlite_url: str, use_splice: bool) -> None:
    """The client finishes sending (EOF); the device answers, then closes: the client reads the
    answer and then EOF."""
    got: list[bytes] = []

    class Answering(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data

        def eof_received(self) -> bool:
            got.append(self.buf)
            self.t.write(b"you said " + self.buf)
            self.t.close()
            return True

    server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0)
    dev_port = server.sockets[0].getsockname()[1]
    try:
        async with link_node(tmp_path, sqlite_url) as h:
            await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
            kw = {"stream_host": "127.0.0.1", "use_splice": use_splice}
            async with agent_relay(h.mqtt_port, GW_TOKEN, local, **kw) as relay:
                link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
                reader, writer = await tcp_client(link["port"])
                writer.write(b"hello")
                await eventually(lambda: relay.channels and relaying(next(iter(relay.channels.values()))))
                writer.write_eof()
                answer = await asyncio.wait_for(reader.read(), 10)  # up to EOF
                assert answer == b"you said hello" and got == [b"hello"]
                writer.close()
                await eventually(lambda: not relay.channels)
    finally:
        server.close()


@pytest.mark.parametrize("use_splice", RELAYS)
async def test_flow_control_over_a_stream_bounds_memory(tmp_path: Path, sqlite_url: str, use_splice: bool) -> None:
    total = 32 * 1024 * 1024
    read = asyncio.Event()
    devices: list[_SlowDevice] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: devices.append(_SlowDevice(total, read)) or devices[-1], "127.0.0.1", 0)
    dev_port = server.sockets[0].getsockname()[1]
    async with link_node(tmp_path, sqlite_url) as h:
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-s")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, stream_host="127.0.0.1", use_splice=use_splice) as relay:
            link = await h.create("meter-s", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            # the client reads nothing and writes what the device does not read
            sent = await write_until_held_back(writer)
            await asyncio.sleep(1.0)
            client = h.links.get(link["token"], None).client
            (ch,) = relay.channels.values()
            assert relaying(ch)
            hub_stream = client.device
            dev = devices[0]
            bound = WRITE_HIGH + 256 * 1024  # a transport's buffer limit plus one read
            # every buffer on the way is bounded; the ends are held back by TCP, not by our memory
            assert client.transport.get_write_buffer_size() <= bound  # hub -> client
            assert hub_stream.transport.get_write_buffer_size() <= bound  # hub -> agent
            if use_splice:  # the agent holds nothing itself: at most a pipe per direction in the kernel
                assert ch.spliced is not None and ch.spliced.buffered <= 2 * splice.PIPE_SIZE
                assert ch.spliced.ab.writing or ch.spliced.ba.writing  # a destination is full: waiting
            else:
                assert ch.stream is not None and ch.stream.transport is not None
                assert ch.stream.transport.get_write_buffer_size() <= bound  # agent -> hub
                assert ch.transport.get_write_buffer_size() <= bound  # agent -> device
            assert dev.sent < total and sent < total
            # now both read: everything arrives, intact and in order
            read.set()
            expected = (bytes(range(256)) * 256) * (total // 65536)
            got = await asyncio.wait_for(reader.readexactly(total), 60)
            assert got == expected
            writer.close()
            await eventually(lambda: dev.got == sent, timeout=30)
    server.close()


@pytest.mark.parametrize("use_splice", RELAYS)
async def test_unreachable_stream_port_falls_back_to_the_tunnel(
    tmp_path: Path, sqlite_url: str, use_splice: bool
) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo(banner=b"hi\n") as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, stream_host="127.0.0.1", use_splice=use_splice) as relay:
            link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
            streams = listener(h)
            assert streams.server is not None
            streams.server.close()  # a firewall between gateway and hub, say
            await streams.server.wait_closed()
            reader, writer = await tcp_client(link["port"])
            assert await read_exactly(reader, 3) == b"hi\n"
            (ch,) = relay.channels.values()
            assert type(ch) is _StreamChannel and ch.framed and ch.stream is None
            payload = b"\x5a" * 300_000
            writer.write(payload)
            assert await read_exactly(reader, len(payload)) == payload
            assert not streams.pending  # the token of the framed channel is gone
            writer.close()
            await eventually(lambda: not relay.channels)


async def test_relay_without_streams_is_framed(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local) as relay:  # offers no streams
            assert relay.stream_port is None and tunnel_of(h, "gw-1").streams is None
            link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            writer.write(b"ping")
            assert await read_exactly(reader, 4) == b"ping"
            (ch,) = relay.channels.values()
            assert type(ch) is _TcpChannel
            writer.close()
    # and a hub with the stream port off offers none to a relay that asks
    off_db = f"sqlite+aiosqlite:///{tmp_path / 'off.db'}"
    async with link_node(tmp_path / "off", off_db, devicelink_stream_port=-1) as h2:
        await h2.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        async with agent_relay(h2.mqtt_port, GW_TOKEN, local, stream_host="127.0.0.1") as relay:
            assert relay.stream_port is None


async def test_stream_port_refuses_strangers(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h:
        streams = listener(h)
        for preamble in (b"GET / HTTP/1.1\r\n" + b"x" * PREAMBLE_SIZE, MAGIC + b"0" * 32 + b"\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", streams.port)
            writer.write(preamble)
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without an answer
            writer.close()
        assert streams.refused == 2 and streams.attached == 0


@pytest.mark.parametrize("use_splice", RELAYS)
async def test_streams_close_when_the_gateway_goes_away(tmp_path: Path, sqlite_url: str, use_splice: bool) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, stream_host="127.0.0.1", use_splice=use_splice):
            link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            writer.write(b"x")
            assert await read_exactly(reader, 1) == b"x"
        # the agent's session ended: the client's connection ends, the link closes
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await eventually(lambda: link["token"] not in h.links.links)
        writer.close()


async def test_a_tls_session_gets_stream_channels_over_tls(tmp_path: Path, sqlite_url: str) -> None:
    """A gateway on the mTLS listener is offered the TLS stream port: its links' data stays in TLS
    (the plain port is never named to it), and a relay asking from a plain session gets the plain
    one."""
    async with link_node(tmp_path, sqlite_url, mqtts_port=0) as h, tcp_echo(banner=b"tls\n") as (dev_port, _rec):
        await h.gateway_with_child("acme", "gw-1", GW_TOKEN, "meter-1")
        body = {"subject": {"commonName": "gw 1"}}
        r = await h.api.post("/api/v1/gateways/gw-1/certificates?tenantId=acme", json=body)
        assert r.status_code == 201, r.text
        issued = r.json()
        for name, field in (("gw.crt", "gatewayCert"), ("gw.key", "gatewayKey"), ("ca.crt", "caCert")):
            (tmp_path / name).write_text(issued[field])
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tmp_path / "ca.crt"))
        ctx.load_cert_chain(str(tmp_path / "gw.crt"), str(tmp_path / "gw.key"))
        assert h.links.tunnels is not None and h.links.tunnels.streams_tls is not None
        tls_port = h.links.tunnels.streams_tls.port
        mqtts = h.node.endpoints.extra["mqtt_tls"]
        kw = {"stream_host": "127.0.0.1", "stream_tls": ctx}
        async with agent_relay(mqtts, None, local, tls=ctx, **kw) as relay:
            assert relay.stream_port == tls_port != listener(h).port
            link = await h.create("meter-1", {"protocol": "tcp", "devicePort": dev_port})
            reader, writer = await tcp_client(link["port"])
            assert await read_exactly(reader, 4) == b"tls\n"
            (ch,) = relay.channels.values()
            assert relaying(ch) and ch.spliced is None  # TLS is relayed by transports, never spliced
            assert ch.stream is not None and ch.stream.transport is not None
            assert ch.stream.transport.get_extra_info("ssl_object") is not None
            payload = b"\x42" * 1_000_000
            writer.write(payload)
            assert await read_exactly(reader, len(payload)) == payload
            # TLS has no half close: the EOF goes through the tunnel, counted, and never overtakes
            # the data before it (the echo device closes on EOF, after echoing everything)
            tail = hashlib.sha256(b"tail").digest() * 20_000
            writer.write(tail)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == tail  # all of it, then EOF
            writer.close()
            await eventually(lambda: not relay.channels)
            assert h.links.tunnels.streams_tls.attached == 1 and listener(h).attached == 0
        # a plain relay that expects TLS streams ignores a plain offer, and vice versa: framed
        async with agent_relay(h.mqtt_port, GW_TOKEN, local, **kw) as relay:
            assert relay.stream_port is None
