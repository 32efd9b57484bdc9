"""Sans-I/O parts of device links: the worked encryption example of docs/devicelink.md
(recomputed with an independent AES-CTR), tunnel frames as literal bytes, the credit window
of two senders wired together, and the port pool's order."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gatehub.errors import InvalidInput
from gatehub.protocols import devicelink as proto
from gatehub.protocols.devicelink import FrameError, FrameType, ReceiveWindow, StreamSender
from gatehub.protocols.linkcrypto import PER_CONNECTION, LinkCipher, parse_hex, start_block
from gatehub.services.links.pool import PortPool

DOC = Path(__file__).resolve().parents[2] / "docs" / "devicelink.md"


def doc_example() -> dict[str, str]:
    text = DOC.read_text()
    block = text.split("<!-- example:begin -->", 1)[1].split("<!-- example:end -->", 1)[0]
    return dict(re.findall(r"^([a-z.]+)\s+=\s+([0-9a-f]+)$", block, re.M))


def ref_ctr(key: bytes, iv: bytes, d: int, n: int, data: bytes) -> bytes:
    """The scheme as the doc states it, written without gatehub's code."""
    start = ((int.from_bytes(iv, "big") + d * 2**127 + n * 2**64) % 2**128).to_bytes(16, "big")
    enc = Cipher(algorithms.AES(key), modes.CTR(start)).encryptor()
    return enc.update(data) + enc.finalize()


def test_doc_worked_example_is_right() -> None:
    ex = doc_example()
    assert len(ex) == 18
    key, iv = bytes.fromhex(ex["key"]), bytes.fromhex(ex["iv"])
    n = int(ex["tcp.number"])
    assert ex["tcp.header"] == n.to_bytes(8, "big").hex()
    for d, side in ((0, "up"), (1, "down")):
        plain = bytes.fromhex(ex[f"tcp.{side}.plain"])
        assert ref_ctr(key, iv, d, n, plain).hex() == ex[f"tcp.{side}.cipher"]
        assert start_block(iv, d, n).hex() == ex[f"tcp.{side}.start"]
        # gatehub's stream gives the same bytes, also when fed in pieces
        ctx = LinkCipher(key, iv, PER_CONNECTION).stream(d, n)
        assert (ctx.update(plain[:5]) + ctx.update(plain[5:])).hex() == ex[f"tcp.{side}.cipher"]
    up_n = int(ex["udp.up.number"])
    dgram = bytes.fromhex(ex["udp.up.datagram"])
    assert start_block(iv, 0, up_n).hex() == ex["udp.up.start"]
    assert dgram[:8] == up_n.to_bytes(8, "big")
    assert ref_ctr(key, iv, 0, up_n, bytes.fromhex(ex["udp.up.plain"])) == dgram[8:]
    assert LinkCipher(key, iv, PER_CONNECTION).open_datagram(dgram) == bytes.fromhex(ex["udp.up.plain"])
    hub = LinkCipher(key, iv, PER_CONNECTION)
    sealed = hub.seal_datagram(bytes.fromhex(ex["udp.down.plain"]))
    assert sealed.hex() == ex["udp.down.datagram"] and int(ex["udp.down.number"]) == 0
    assert start_block(iv, 1, 0).hex() == ex["udp.down.start"]
    assert hub.seal_datagram(b"pong")[:8] == (1).to_bytes(8, "big")  # the next one: never reused


def test_keystreams_never_overlap() -> None:
    iv = bytes.fromhex("ffffffffffffffffffffffffffffffff")  # wraps modulo 2**128
    starts = {start_block(iv, d, n) for d in (0, 1) for n in (0, 1, 2, 2**63 - 1)}
    assert len(starts) == 8
    with pytest.raises(ValueError):
        start_block(iv, 0, 2**63)


def test_hex_parsing_errors() -> None:
    assert parse_hex("AB" * 32, 32, "encrypt.key") == b"\xab" * 32
    with pytest.raises(InvalidInput, match="64 hex digits"):
        parse_hex("ab" * 16, 32, "encrypt.key")
    with pytest.raises(InvalidInput, match="hexadecimal"):
        parse_hex("zz" * 16, 16, "encrypt.initializationVector")


def test_frames_as_literal_bytes() -> None:
    assert proto.data_frame(258, b"hi") == b"\x01\x04\x00\x00\x01\x02hi"
    assert proto.window_frame(1, 65536) == b"\x01\x05\x00\x00\x00\x01\x00\x01\x00\x00"
    assert proto.close_frame(7, proto.CloseCode.REFUSED, "no") == b"\x01\x07\x00\x00\x00\x07\x01no"
    assert proto.encode(FrameType.EOF, 3) == b"\x01\x06\x00\x00\x00\x03"
    f = proto.decode(b"\x01\x03\x00\x00\x00\x09" + b'{"window":8192}')
    assert (f.version, f.type, f.channel, f.json()) == (1, FrameType.OPENED, 9, {"window": 8192})
    assert proto.decode(proto.window_frame(1, 5)).credit() == 5
    assert proto.decode(proto.close_frame(2, 5, "slow")).close_reason() == (5, "slow")
    for bad in (b"", b"\x01\x04\x00", b"\x01\x99\x00\x00\x00\x01"):
        with pytest.raises(FrameError):
            proto.decode(bad)
    with pytest.raises(FrameError):
        proto.decode(b"\x01\x03\x00\x00\x00\x01[1]").json()
    with pytest.raises(FrameError):
        proto.decode(b"\x01\x05\x00\x00\x00\x01\x00").credit()
    with pytest.raises(FrameError):
        proto.check_window(100)


def test_credit_window_two_sides_wired() -> None:
    """A sender and a receiver: the receiver's socket is sometimes full. The sender never has more
    than the window outstanding, everything arrives in order, EOF and CLOSE come after the data."""
    rng = random.Random(7)
    window = 16 * 1024
    wire: list[bytes] = []
    sender = StreamSender(5, window, wire.append)
    recv = ReceiveWindow(window)
    source = rng.randbytes(2_000_000)
    delivered = bytearray()
    off = 0
    reading = True
    eof_sent = close_sent = False
    socket_full = False
    for _step in range(100_000):
        if reading and off < len(source):
            n = rng.randint(1, 100_000)
            reading = sender.send(source[off : off + n])
            off += n
        elif off >= len(source) and not eof_sent:
            sender.eof()
            sender.close(proto.CloseCode.NORMAL, "done")
            eof_sent = True
        # the receiver handles what is on the wire
        socket_full = rng.random() < 0.3
        credits = 0
        while wire:
            f = proto.decode(wire.pop(0))
            if f.type is FrameType.DATA:
                assert not close_sent
                assert recv.received(len(f.body)), "the sender overran the window"
                delivered += f.body
                credits += recv.delivered(len(f.body), socket_full)
            elif f.type is FrameType.EOF:
                assert bytes(delivered) == source
            elif f.type is FrameType.CLOSE:
                close_sent = True
        if not socket_full:
            credits += recv.release(True)
        if credits and sender.grant(credits):
            reading = True
        if close_sent:
            break
    assert close_sent and bytes(delivered) == source


def test_udp_datagrams_drop_without_credit() -> None:
    wire: list[bytes] = []
    s = StreamSender(1, 4096, wire.append)
    sent = sum(s.send_datagram(b"x" * 1000) for _ in range(10))
    assert sent == 3 and len(wire) == 3  # 3 * (1000 + 64) <= 4096 < 4 * 1064
    s.grant(1064)
    assert s.send_datagram(b"y" * 1000)


def test_port_pool_least_recently_used() -> None:
    pool = PortPool(40000, 40003)
    assert list(pool.candidates()) == [40000, 40001, 40002, 40003]
    pool.take(40000)
    pool.take(40001)
    pool.release(40000)
    assert list(pool.candidates()) == [40002, 40003, 40000]
    assert pool.free == 3 and pool.size == 4
    anyp = PortPool(0, 0)
    assert list(anyp.candidates()) == [0]
