"""TCP and UDP device links of a ``gatehub serve`` process to a local echo "device": plain, and
with both AES-256-CTR modes of docs/devicelink.md, the client side using its own AES-CTR
(``cryptography``): ``literal`` (the default, as seed 002 states it: one keystream from the
link's key and IV per TCP direction, each datagram from the IV) and ``per-connection``
(counter blocks per connection / datagram, the client's number in clear first)."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess
from tests.integration.devicelink_helpers import read_exactly, tcp_client, tcp_echo, udp_client, udp_echo

KEY = os.urandom(32)
IV = os.urandom(16)


def _stream(d: int, n: int) -> object:
    start = ((int.from_bytes(IV, "big") + d * 2**127 + n * 2**64) % 2**128).to_bytes(16, "big")
    return Cipher(algorithms.AES(KEY), modes.CTR(start)).encryptor()


def _crypt(d: int, n: int, data: bytes) -> bytes:
    return _stream(d, n).update(data)  # type: ignore[attr-defined, no-any-return]


def _literal() -> object:
    return Cipher(algorithms.AES(KEY), modes.CTR(IV)).encryptor()


MODES = ["plain", "literal", "per-connection"]


def _body(protocol: str, dev_port: int, mode: str) -> dict[str, object]:
    body: dict[str, object] = {"protocol": protocol, "devicePort": dev_port}
    if mode == "literal":  # the seed's fields only
        body["encrypt"] = {"key": KEY.hex(), "initializationVector": IV.hex()}
    elif mode == "per-connection":
        body["encrypt"] = {"key": KEY.hex(), "initializationVector": IV.hex(), "mode": "per-connection"}
    return body


@pytest.fixture(scope="module")
def device(e2e_hub: HubProcess) -> tuple[str, str]:
    """A direct device whose device-link address the operator set (server attribute)."""
    tenant = unique("link")
    e2e_hub.tenant(tenant)
    e2e_hub.product(tenant, f"{tenant}-plc", "direct")
    dev = f"{tenant}-plc"
    e2e_hub.device(tenant, dev, f"{tenant}-plc")
    e2e_hub.api("POST", f"/devices/{dev}/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
    return tenant, dev


@pytest.mark.parametrize("mode", MODES)
async def test_tcp_link(e2e_hub: HubProcess, device: tuple[str, str], mode: str) -> None:
    _tenant, dev = device
    async with tcp_echo(banner=b"hello\n") as (dev_port, rec):
        link = e2e_hub.api("POST", f"/devicelink/{dev}", 201, json=_body("tcp", dev_port, mode))
        try:
            reader, writer = await tcp_client(link["port"])
            payload = bytes(range(256)) * 200
            if mode == "literal":
                up, down = _literal(), _literal()
                assert down.update(await read_exactly(reader, 6)) == b"hello\n"  # type: ignore[attr-defined]
                writer.write(up.update(payload))  # type: ignore[attr-defined]
                back = await read_exactly(reader, len(payload))
                assert back != payload and down.update(back) == payload  # type: ignore[attr-defined]
            elif mode == "per-connection":
                n = 1
                up, down = _stream(0, n), _stream(1, n)
                writer.write(struct.pack(">Q", n))
                assert down.update(await read_exactly(reader, 6)) == b"hello\n"  # type: ignore[attr-defined]
                writer.write(up.update(payload))  # type: ignore[attr-defined]
                back = await read_exactly(reader, len(payload))
                assert back != payload and down.update(back) == payload  # type: ignore[attr-defined]
            else:
                assert await read_exactly(reader, 6) == b"hello\n"
                writer.write(payload)
                assert await read_exactly(reader, len(payload)) == payload
            assert bytes(rec.received) == payload  # plaintext at the device
            writer.close()
        finally:
            e2e_hub.api("DELETE", f"/devicelink/{link['token']}", 204)


@pytest.mark.parametrize("mode", MODES)
async def test_udp_link(e2e_hub: HubProcess, device: tuple[str, str], mode: str) -> None:
    _tenant, dev = device
    async with udp_echo() as (dev_port, rec, _t):
        link = e2e_hub.api("POST", f"/devicelink/{dev}", 201, json=_body("udp", dev_port, mode))
        try:
            async with udp_client(link["port"]) as (t, client):
                for i in range(10):
                    msg = f"ping {i}".encode()
                    if mode == "literal":
                        t.sendto(_literal().update(msg))  # type: ignore[attr-defined]
                        assert _literal().update(await client.get()) == b"echo:" + msg  # type: ignore[attr-defined]
                    elif mode == "per-connection":
                        t.sendto(struct.pack(">Q", i + 1) + _crypt(0, i + 1, msg))
                        got = await client.get()
                        (n,) = struct.unpack(">Q", got[:8])
                        assert _crypt(1, n, got[8:]) == b"echo:" + msg
                    else:
                        t.sendto(msg)
                        assert await client.get() == b"echo:" + msg
            assert rec.datagrams == [f"ping {i}".encode() for i in range(10)]
        finally:
            e2e_hub.api("DELETE", f"/devicelink/{link['token']}", 204)
