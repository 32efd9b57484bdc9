"""Hostile input and overload against a real ``gatehub serve``: what unauthenticated sockets and a
subscriber that never reads can make the process hold, read from its VmRSS, while a real
authenticated client beside them loses nothing.

The hub here has its own settings: ``mqtt_max_connect_size`` 1 MiB (so that 100 unfinished
CONNECTs just under it would be 100 MB) and ``mqtt_preauth_buffer_limit`` 4 MiB (what they may
hold together), an anonymous tenant for the raw sockets, and the default queue bounds (1,000
messages, 16 MiB, policy ``disconnect``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehub.protocols.mqtt import PubAckPacket, PublishPacket, SubackPacket, SubscribePacket, Subscription
from tests.e2e.hub_process import HubProcess
from tests.integration.mqtt_helpers import V311, Paho, RawClient
from tests.unit.mqtt.test_hostile import _remaining

ATTACKERS = 100
RSS_BOUND = 20 * 1024 * 1024  # growth allowed while 100 sockets attack (before the fix: 368 MB here)
SLOW_RSS_BOUND = 15 * 1024 * 1024  # growth allowed by the never-reading subscriber (before the fix: 41 MB here)
CHUNK = bytes(64 * 1024)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root: Path = tmp_path_factory.mktemp("overload")
    h = HubProcess(
        root / "hub",
        mqtt_anonymous_tenant="anon",
        mqtt_max_connect_size=1024 * 1024,
        mqtt_preauth_buffer_limit=4 * 1024 * 1024,
        log_level="warning",
    )
    h.start()
    try:
        h.tenant("anon")
        h.tenant("t-real")
        h.product("t-real", "t-real-sensor", "direct")
        h.device("t-real", "t-real-dev", "t-real-sensor", accessToken="tok-real-dev")
        yield {"hub": h, "token": "tok-real-dev"}
    finally:
        h.assert_clean_exit(h.stop())


def rss(h: HubProcess) -> int:
    assert h.proc is not None
    with open(f"/proc/{h.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssPeak:
    """The hub's VmRSS sampled every 20 ms while the block runs: its largest growth."""

    def __init__(self, h: HubProcess) -> None:
        self.h = h
        self.base = rss(h)
        self.peak = self.base
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.h))
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> RssPeak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss(self.h))

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def attacker(port: int, head: bytes, body: int, closed: list[bool]) -> None:
    """Send ``head`` and ``body`` bytes of the packet it announces (never its end), then wait a
    few seconds (3) for the server to close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        sent = 0
        while sent < body:
            if writer.transport.is_closing():  # the hub closed it (uvloop refuses a write then)
                break
            writer.write(CHUNK[: min(len(CHUNK), body - sent)])
            sent += len(CHUNK)
            await asyncio.wait_for(writer.drain(), 10)
        while await asyncio.wait_for(reader.read(65536), 3):
            pass
        closed.append(True)
    except (ConnectionResetError, BrokenPipeError):
        closed.append(True)
    except TimeoutError:
        closed.append(False)
    finally:
        writer.close()


async def real_client_round(port: int, token: str, n: int, attack: asyncio.Future[Any]) -> None:
    """An authenticated QoS 1 client publishes ``n`` messages to itself while the attack runs."""
    with Paho("real-client", V311) as c:
        assert (await c.connect(port, username=token))[0] == 0
        assert await c.subscribe("real/echo", 1) == [1]
        infos = [c.client.publish("real/echo", str(i).encode(), 1) for i in range(n)]
        await asyncio.to_thread(lambda: [i.wait_for_publish(30) for i in infos])
        assert all(i.is_published() for i in infos)  # every PUBACK came
        msgs = await c.expect(n, timeout=30)
        assert sorted(int(m.payload) for m in msgs) == list(range(n))
        await c.disconnect()
    await attack


@pytest.mark.parametrize(
    "kind",
    ["publish-first", "connect-under-max"],
)
async def test_unauthenticated_sockets_pin_bounded_memory(hub: dict[str, Any], kind: str) -> None:
    h: HubProcess = hub["hub"]
    port = h.ports.mqtt
    if kind == "publish-first":
        # a 3.8 MB PUBLISH as the first packet, 3.7 MB of it sent: refused on its header
        head, body = b"\x30" + _remaining(3_800_000) + b"\x00\x01t", 3_700_000
    else:
        # a CONNECT just under mqtt_max_connect_size (1 MiB), 1,000,000 bytes of it sent: each
        # is allowed, 100 together are not (mqtt_preauth_buffer_limit 4 MiB)
        head, body = b"\x10" + _remaining(1_040_000) + b"\x00\x04MQTT\x04\xc2\x00\x3c", 1_000_000
    await asyncio.sleep(0.5)
    closed: list[bool] = []
    async with RssPeak(h) as peak:
        attack = asyncio.gather(*(attacker(port, head, body, closed) for _ in range(ATTACKERS)))
        await real_client_round(port, hub["token"], 200, attack)
    # publish-first: every socket is closed; connect-under-max: all but the few the budget holds
    # (at most 4 x 1 MB fit 4 MiB; those meet the 10 s CONNECT timeout later)
    assert sum(closed) >= (ATTACKERS if kind == "publish-first" else ATTACKERS - 4), closed.count(False)
    assert peak.growth < RSS_BOUND, f"hub RSS grew by {peak.growth / 1e6:.1f} MB"


def metrics(h: HubProcess) -> dict[str, float]:
    out = {}
    for line in httpx.get(h.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("gatehub_mqtt_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_a_subscriber_that_never_reads_is_bounded(hub: dict[str, Any]) -> None:
    h: HubProcess = hub["hub"]
    port = h.ports.mqtt
    total = 20_000
    topic = "load/slow"
    before = metrics(h)
    # the slow one: CONNECT + SUBSCRIBE QoS 1 on a socket with a 4 KB receive buffer, then never reads
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    slow = RawClient(*(await asyncio.open_connection(sock=sock)), 4)
    assert (await slow.connect("slow")).reason_code == 0
    slow.send(SubscribePacket(1, [Subscription(topic, 1)]))
    assert isinstance(await slow.recv(), SubackPacket)
    slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
    # a good one next to it, acknowledging everything
    good = RawClient(*(await asyncio.open_connection("127.0.0.1", port)), 4)
    await good.connect("good")
    good.send(SubscribePacket(1, [Subscription(topic, 1)]))
    assert isinstance(await good.recv(), SubackPacket)
    got: set[int] = set()

    async def read_good() -> None:
        while len(got) < total:
            pkt = await good.recv(30)
            assert isinstance(pkt, PublishPacket), pkt
            got.add(int.from_bytes(pkt.payload[:4], "big"))
            good.send(PubAckPacket(pkt.packet_id))

    reading = asyncio.create_task(read_good())
    await asyncio.sleep(0.5)
    async with RssPeak(h) as peak:
        pub = RawClient(*(await asyncio.open_connection("127.0.0.1", port)), 4)
        await pub.connect("pub")
        acked = sent = 0
        started = time.monotonic()
        while acked < total:
            assert time.monotonic() - started < 120, f"{acked} of {total} acknowledged"
            # at most 100 unacknowledged, and at most 200 ahead of the good subscriber (so that
            # the good one stays within its own bounds; the slow one falls behind at once)
            while sent < total and sent - acked < 100 and sent - len(got) < 200:
                pub.send(PublishPacket(topic, sent.to_bytes(4, "big") + bytes(1020), 1, packet_id=sent % 60000 + 1))
                sent += 1
            if sent == acked:
                await asyncio.sleep(0.001)
                continue
            pkt = await pub.recv(10)  # the PUBACKs keep coming: ingest is not held back
            assert isinstance(pkt, PubAckPacket), pkt
            acked += 1
        await asyncio.wait_for(reading, 30)
    assert len(got) == total  # the good subscriber got everything
    assert peak.growth < SLOW_RSS_BOUND, f"hub RSS grew by {peak.growth / 1e6:.1f} MB"
    after = metrics(h)
    # policy disconnect: the slow session was ended when its queue (1,000) was full; the message
    # beyond it and the 20 in flight + 1,000 queued of its clean session are counted as dropped
    assert after["gatehub_mqtt_dropped_qos1"] - before.get("gatehub_mqtt_dropped_qos1", 0) >= 1 + 20 + 1000
    assert after["gatehub_mqtt_queued_messages"] == 0 and after["gatehub_mqtt_queued_bytes"] == 0
    # and its connection is gone: what it can still read ends in a close, not in more messages
    slow.writer.transport.resume_reading()  # type: ignore[attr-defined]
    assert len(await slow.closed(timeout=10)) <= 20
    await pub.close()
    await good.close()
    slow.writer.close()
