"""Hostile input and overload on a running node's MQTT listener (in process, both loops):
a first packet that is not a CONNECT is closed on its header, unauthenticated connections share
one budget per listener, and a subscriber that never reads holds a bounded window and queue
(policy ``disconnect`` or ``drop_oldest``) while the publisher and a good subscriber go on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gatehub.protocols.mqtt import (
    ConnackPacket,
    ConnectPacket,
    Properties,
    PubAckPacket,
    PublishPacket,
    SubackPacket,
    SubscribePacket,
    Subscription,
    encode_packet,
)
from tests.integration.mqtt_helpers import MqttNode, RawClient, eventually, mqtt_node
from tests.unit.mqtt.test_hostile import _remaining


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_first_publish_is_closed_on_its_header(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as n:
        reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
        # 3.8 MB announced, 16 KB sent, the rest never: closed at once, not after the body or
        # the CONNECT timeout (10 s)
        writer.write(b"\x30" + _remaining(3_800_000) + b"\x00\x01t" + bytes(16_000))
        assert await _closed_by_server(reader, 3.0)
        writer.close()
        assert n.hub.preauth["tcp"].total == 0


async def test_unauthenticated_bytes_share_one_budget_per_listener(tmp_path: Path, db_url: str) -> None:
    limit = 512 * 1024
    async with mqtt_node(tmp_path, db_url, mqtt_max_connect_size=256 * 1024, mqtt_preauth_buffer_limit=limit) as n:
        budget = n.hub.preauth_budget("tcp")
        conns = [await asyncio.open_connection("127.0.0.1", n.port) for _ in range(10)]
        # each: a CONNECT of 250 KB (within mqtt_max_connect_size), 200 KB of it sent, never finished
        head = b"\x10" + _remaining(250_000) + b"\x00\x04MQTT\x04\x02\x00\x3c"
        for _r, w in conns:
            w.write(head + bytes(200_000))
        closed = await asyncio.gather(*(_closed_by_server(r, 2.0) for r, _w in conns))
        # at most two such holders fit the budget: the largest are closed until the sum is within it
        assert sum(closed) >= 8, closed
        assert budget.total <= limit and budget.evicted >= 8
        # a client with a small CONNECT still gets in and works
        c = await RawClient.open(n.port, 4)
        assert (await c.connect("good")).reason_code == 0
        c.send(PublishPacket("t/good", b"x", 1, packet_id=1))
        assert isinstance(await c.recv(), PubAckPacket)
        await c.close()
        for _r, w in conns:
            w.close()
        await eventually(lambda: budget.total == 0)


async def _slow_subscriber(port: int, version: int, topic: str, **props: int) -> asyncio.StreamWriter:
    """CONNECT + SUBSCRIBE QoS 1 on a socket with a small receive buffer, then never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    c = RawClient(reader, writer, version)
    assert (await c.connect("slow", properties=Properties(**props))).reason_code == 0
    c.send(SubscribePacket(1, [Subscription(topic, 1)]))
    assert isinstance(await c.recv(), SubackPacket)
    writer.transport.pause_reading()
    return writer


async def _good_subscriber(port: int, topic: str, got: set[int], ready: asyncio.Event) -> None:
    c = await RawClient.open(port, 4)
    await c.connect("good")
    c.send(SubscribePacket(1, [Subscription(topic, 1)]))
    assert isinstance(await c.recv(), SubackPacket)
    ready.set()
    while True:
        pkt = await c.recv(30)
        if pkt is None:
            return
        assert isinstance(pkt, PublishPacket), pkt
        got.add(int.from_bytes(pkt.payload[:4], "big"))
        c.send(PubAckPacket(pkt.packet_id))


async def _publish(port: int, topic: str, total: int, got: set[int] | None = None, window: int = 100) -> int:
    """QoS 1 messages of 1 KB, ``window`` unacknowledged at most; the PUBACKs counted. With
    ``got`` (what a good subscriber received) it stays at most 100 messages ahead of that one, so
    that the good subscriber is never over its own bounds; the slow one is left behind at once."""
    c = await RawClient.open(port, 4)
    await c.connect("pub")
    acked = sent = 0
    while acked < total:
        while sent < total and sent - acked < window and (got is None or sent - len(got) < 100):
            c.send(PublishPacket(topic, sent.to_bytes(4, "big") + bytes(1020), 1, packet_id=sent % 60000 + 1))
            sent += 1
        if sent == acked:  # waiting for the good subscriber
            await asyncio.sleep(0.001)
            continue
        pkt = await c.recv(10)
        assert isinstance(pkt, PubAckPacket), pkt
        acked += 1
    await c.close()
    return acked


def _gauge(n: MqttNode, name: str) -> float:
    services = n.node.services
    assert services is not None
    return services.metrics.gauges[name]()


@pytest.mark.parametrize("policy", ["disconnect", "drop_oldest"])
async def test_a_subscriber_that_never_reads_is_bounded(tmp_path: Path, db_url: str, policy: str) -> None:
    total, queued = 3000, 200
    async with mqtt_node(tmp_path, db_url, mqtt_max_queued_messages=queued, mqtt_queue_overflow=policy) as n:
        slow = await _slow_subscriber(n.port, 4, "load/t")
        session = next(s for s in n.hub.connections if s.client_id == "slow")
        got: set[int] = set()
        ready = asyncio.Event()
        good = asyncio.create_task(_good_subscriber(n.port, "load/t", got, ready))
        await ready.wait()
        assert await _publish(n.port, "load/t", total, got) == total  # ingest is not held back by it
        await eventually(lambda: len(got) == total, timeout=10)  # the good subscriber loses nothing
        state = session.conn.session
        assert state is not None
        if policy == "disconnect":
            await eventually(lambda: session.closed)
            # the message beyond the bound, and the 20 in flight + 200 queued of its clean session
            assert _gauge(n, "gatehub_mqtt_dropped_qos1") == 1 + 20 + queued
        else:
            assert not session.closed
            assert len(state.inflight) == 20 and len(state.queue) == queued
            assert [int.from_bytes(m.payload[:4], "big") for m in state.queue][-1] == total - 1  # the newest kept
            assert _gauge(n, "gatehub_mqtt_dropped_qos1") == total - 20 - queued
            assert _gauge(n, "gatehub_mqtt_queued_messages") == queued
            assert _gauge(n, "gatehub_mqtt_queued_bytes") == queued * (1024 + len("load/t"))
            assert _gauge(n, "gatehub_mqtt_inflight_messages") == 20
        assert not good.done()
        good.cancel()
        slow.close()


async def test_mqtt5_receive_maximum_is_the_window(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_queue_overflow="drop_oldest") as n:
        slow = await _slow_subscriber(n.port, 5, "v5/t", receive_maximum=5)
        session = next(s for s in n.hub.connections if s.client_id == "slow")
        assert await _publish(n.port, "v5/t", 50) == 50
        state = session.conn.session
        assert state is not None and len(state.inflight) == 5 and len(state.queue) == 45
        slow.close()


async def test_wildcard_response_topic_gets_disconnect_0x82(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as n:
        c = await RawClient.open(n.port, 5)
        assert isinstance(await c.connect("rt"), ConnackPacket)
        c.send(PublishPacket("req/1", b"x", 1, packet_id=1, properties=Properties(response_topic="reply/#")))
        packets = await c.closed()
        assert [(type(p).__name__, getattr(p, "reason_code", None)) for p in packets] == [("DisconnectPacket", 0x82)]
        # CONNECT is unaffected on other connections
        ok = await RawClient.open(n.port, 5)
        ok.send_raw(encode_packet(ConnectPacket("rt2", 5), 5))
        assert isinstance(await ok.recv(), ConnackPacket)
        await ok.close()
