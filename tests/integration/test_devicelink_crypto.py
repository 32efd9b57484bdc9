"""AES-256-CTR on the client leg, with real sockets: the client side of the test encrypts and
decrypts with its own implementation of the documented scheme (``cryptography``'s AES-CTR), the
device sees plaintext, and the hub refuses reused TCP connection numbers."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.integration.devicelink_agent import agent_relay
from tests.integration.devicelink_helpers import (
    eventually,
    link_node,
    read_exactly,
    refused,
    tcp_client,
    tcp_echo,
    udp_client,
    udp_echo,
)

KEY = os.urandom(32)
IV = os.urandom(16)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


class Stream:
    def __init__(self, d: int, n: int) -> None:
        start = ((int.from_bytes(IV, "big") + d * 2**127 + n * 2**64) % 2**128).to_bytes(16, "big")
        self.ctx = Cipher(algorithms.AES(KEY), modes.CTR(start)).encryptor()

    def __call__(self, data: bytes) -> bytes:
        return self.ctx.update(data)


def encrypt_body() -> dict[str, str]:
    return {"key": KEY.hex().upper(), "initializationVector": IV.hex(), "mode": "per-connection"}


async def _tcp_roundtrips(port: int, number: int, rec: object, banner: bytes) -> None:
    up, down = Stream(0, number), Stream(1, number)
    reader, writer = await tcp_client(port)
    writer.write(struct.pack(">Q", number))
    got = await read_exactly(reader, len(banner))
    assert got != banner and down(got) == banner  # the device's first words, encrypted for us
    for size in (1, 15, 16, 17, 4096, 300_000):
        msg = os.urandom(size)
        before = len(rec.received)  # type: ignore[attr-defined]
        writer.write(up(msg))
        back = await read_exactly(reader, size)
        assert bytes(rec.received[before:]) == msg  # type: ignore[attr-defined]  # plaintext at the device
        assert down(back) == msg
        assert size < 16 or back != msg  # encrypted (a byte or two may equal its plaintext by chance)
    writer.close()


async def test_tcp_encrypted_both_ways_direct_and_via_gateway(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo(banner=b"SSH-2.0-device\r\n") as (dev_port, rec):
        await h.direct_device("acme", "plc")
        await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port, "encrypt": encrypt_body()})
        assert link["encrypt"] == {"key": KEY.hex(), "initializationVector": IV.hex(), "mode": "per-connection"}
        await _tcp_roundtrips(link["port"], 5, rec, b"SSH-2.0-device\r\n")
        lk = h.links.get(link["token"], None)
        await asyncio.sleep(0.2)
        # a connection number not above the last one is refused (its keystreams were used)
        reader, writer = await tcp_client(link["port"])
        writer.write(struct.pack(">Q", 5) + b"junk")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert lk.refused == 1
        await asyncio.sleep(0.2)
        await _tcp_roundtrips(link["port"], 1_700_000_000_000_000, rec, b"SSH-2.0-device\r\n")
        # header and first data in one write, before the device was reached
        await eventually(lambda: lk.client is None)
        n = 1_800_000_000_000_000
        up, down = Stream(0, n), Stream(1, n)
        reader, writer = await tcp_client(link["port"])
        writer.write(struct.pack(">Q", n) + up(b"early bytes"))
        assert down(await read_exactly(reader, 16 + 11)) == b"SSH-2.0-device\r\nearly bytes"
        writer.close()
        # the same through a gateway
        await h.gateway_with_child("acme", "gw-1", "tok-gw", "meter-c")
        async with agent_relay(h.mqtt_port, "tok-gw", lambda _i, _n: "127.0.0.1"):
            glink = await h.create("meter-c", {"protocol": "tcp", "devicePort": dev_port, "encrypt": encrypt_body()})
            await _tcp_roundtrips(glink["port"], 0, rec, b"SSH-2.0-device\r\n")


async def test_encrypted_header_missing_times_out(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url, devicelink_connect_timeout=0.5) as h, tcp_echo() as (dev_port, rec):
        await h.direct_device("acme", "plc")
        await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port, "encrypt": encrypt_body()})
        assert await refused(link["port"])  # sends nothing: closed after the connect timeout
        assert rec.connections == 0


def seal(number: int, plain: bytes) -> bytes:
    return struct.pack(">Q", number) + Stream(0, number)(plain)


def open_(datagram: bytes) -> tuple[int, bytes]:
    (number,) = struct.unpack(">Q", datagram[:8])
    return number, Stream(1, number)(datagram[8:])


async def test_udp_encrypted_loss_and_reordering(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, udp_echo() as (dev_port, rec, _t):
        await h.direct_device("acme", "sensor")
        await h.api.post("/api/v1/devices/sensor/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("sensor", {"protocol": "udp", "devicePort": dev_port, "encrypt": encrypt_body()})
        async with udp_client(link["port"]) as (t, c):
            # out of order, with gaps: each datagram decrypts on its own
            for n in (9, 3, 1000, 4):
                t.sendto(seal(n, b"reading %d" % n))
            numbers = []
            for n in (9, 3, 1000, 4):
                number, plain = open_(await c.get())
                numbers.append(number)
                assert plain == b"echo:reading %d" % n
            t.sendto(b"short")  # no room for a number: dropped
            t.sendto(seal(5, b"after"))
            number, plain = open_(await c.get())
            assert plain == b"echo:after"
        assert numbers == [0, 1, 2, 3] and number == 4  # the hub's own numbers, never reused
        assert rec.datagrams == [b"reading 9", b"reading 3", b"reading 1000", b"reading 4", b"after"]
        assert h.links.get(link["token"], None).dropped == 1
