"""Encryption as seed 002 states it: a link created with only ``encrypt.key`` and
``encrypt.initializationVector`` speaks plain AES-256-CTR with that key and IV, no header, no
derived counters. The client here is independent of gatehub: ``cryptography``'s AES-CTR from the
IV, one stream per direction of each TCP connection, and one per UDP datagram; real sockets, a
real hub, real echo devices, direct and through a gateway's agent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from tests.integration.devicelink_agent import agent_relay
from tests.integration.devicelink_helpers import (
    LinkNode,
    Recorder,
    eventually,
    link_node,
    read_exactly,
    tcp_client,
    tcp_echo,
    udp_client,
    udp_echo,
)

KEY = bytes(range(32))
IV = bytes(range(0xF0, 0x100))
BANNER = b"MODBUS-GW ready\r\n"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


def ctr() -> CipherContext:
    """AES-256-CTR with the link's key and IV as the initial counter block: the seed's cipher."""
    return Cipher(algorithms.AES(KEY), modes.CTR(IV)).encryptor()


def seed_body(port: int, protocol: str = "tcp") -> dict[str, object]:
    # exactly the seed's fields, nothing gatehub-specific
    return {"protocol": protocol, "devicePort": port, "encrypt": {"key": KEY.hex(), "initializationVector": IV.hex()}}


async def _tcp_session(port: int, rec: Recorder) -> None:
    up, down = ctr(), ctr()  # each direction of a connection: its own stream from the IV
    reader, writer = await tcp_client(port)
    first = await read_exactly(reader, len(BANNER))
    assert first == ctr().update(BANNER)  # byte for byte: the banner under the IV's keystream
    assert down.update(first) == BANNER
    for size in (1, 15, 16, 17, 4096, 200_000):
        msg = os.urandom(size)
        before = len(rec.received)
        wire = up.update(msg)
        writer.write(wire)
        back = await read_exactly(reader, size)
        assert bytes(rec.received[before:]) == msg  # the device got the plaintext
        assert down.update(back) == msg
    writer.close()
    await writer.wait_closed()


async def _udp_session(h: LinkNode, port: int, rec: Recorder) -> None:
    async with udp_client(port) as (t, c):
        for msg in (b"ping", b"reading 17", os.urandom(1200)):
            t.sendto(ctr().update(msg))  # every datagram on its own from the IV, no header
            back = await c.get()
            assert back == ctr().update(b"echo:" + msg)  # byte for byte
        await eventually(lambda: len(rec.datagrams) >= 3)
        assert rec.datagrams[-3:-1] == [b"ping", b"reading 17"]


async def test_seed_fields_only_give_literal_aes_ctr_over_tcp_and_udp(tmp_path: Path, sqlite_url: str) -> None:
    async with (
        link_node(tmp_path, sqlite_url) as h,
        tcp_echo(banner=BANNER) as (tcp_port, trec),
        udp_echo() as (udp_port, urec, _t),
    ):
        await h.direct_device("acme", "plc")
        r = await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        assert r.status_code < 300, r.text
        link = await h.create("plc", seed_body(tcp_port))
        await _tcp_session(link["port"], trec)
        assert link["encrypt"] == {"key": KEY.hex(), "initializationVector": IV.hex(), "mode": "literal"}
        lk = h.links.get(link["token"], None)
        await eventually(lambda: lk.client is None)
        await _tcp_session(link["port"], trec)  # a new connection starts again from the IV
        assert lk.refused == 0 and lk.connections == 2
        listed = (await h.api.get("/api/v1/devicelink")).json()["items"]
        assert listed[0]["encrypt"] == {"cipher": "aes-256-ctr", "mode": "literal"}

        ulink = await h.create("plc", seed_body(udp_port, "udp"))
        await _udp_session(h, ulink["port"], urec)

        # through a gateway: the hub applies the cipher, the agent and the device see plaintext
        await h.gateway_with_child("acme", "gw-1", "tok-gw", "meter-c")
        async with agent_relay(h.mqtt_port, "tok-gw", lambda _i, _n: "127.0.0.1"):
            glink = await h.create("meter-c", seed_body(tcp_port))
            await _tcp_session(glink["port"], trec)
            gulink = await h.create("meter-c", seed_body(udp_port, "udp"))
            await _udp_session(h, gulink["port"], urec)


async def test_encryption_mode_is_validated(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h:
        await h.direct_device("acme", "plc")
        await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        body = seed_body(502)
        body["encrypt"] = {**body["encrypt"], "mode": "ecb"}  # type: ignore[dict-item]
        r = await h.api.post("/api/v1/devicelink/plc", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"].startswith("encrypt.mode: Input should be 'literal' or 'per-connection'")
        body["encrypt"] = {**body["encrypt"], "mode": "per-connection"}  # type: ignore[dict-item]
        link = await h.create("plc", body)
        assert link["encrypt"]["mode"] == "per-connection"
