"""Server-level fuzzing: random and mutated packets on raw TCP sockets to a running node.

Each example opens its own connection (a valid CONNECT then garbage, or garbage first) and checks
what the server answers: only well-formed packets; on MQTT 5 a DISCONNECT with an error reason
code (>= 0x80) when the stream broke the protocol, on MQTT 3.1.1 a plain close (3.1.1 has no
server DISCONNECT); at most one CONNACK. Another client, in another tenant, keeps working
throughout: a malformed packet closes only its own connection. Known malformed packets get the
exact reason code the spec asks for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehub.app.node import Node
from gatehub.domain.model import NodeType
from gatehub.errors import RemoteProtocolError
from gatehub.protocols.mqtt import (
    ConnackPacket,
    ConnectPacket,
    Decoder,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PublishPacket,
    SubackPacket,
    SubscribePacket,
    Subscription,
    encode_packet,
)
from tests.conftest import event_loop_factory, node_settings
from tests.unit.mqtt.test_fuzz import packets

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_ids = itertools.count()


class NodeThread:
    """A node running on its own event loop in a thread, so that blocking sockets can test it."""

    def __init__(self, tmp: Path) -> None:
        self.settings = node_settings(
            tmp, f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", mqtt_port=0, mqtt_anonymous_tenant="anon", http_port=-1
        )
        self.ready = threading.Event()
        self.port = 0
        self.node: Node | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # the loop --event-loop names
                runner.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        node = self.node = Node(self.settings)
        async with node:
            st_ = node.store
            assert st_ is not None
            await st_.accounts.create_tenant("anon")
            await st_.accounts.create_tenant("safe")
            await st_.catalog.create_product("safe", "p", node_type=NodeType.DIRECT)
            await st_.devices.create("safe", "bystander", "p", device_id="bystander", access_token="tok-bystander")
            self.port = node.endpoints.extra["mqtt_tcp"]
            self.ready.set()
            await self._stop.wait()

    def start(self) -> NodeThread:
        self.thread.start()
        assert self.ready.wait(30), "the node did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


class Conn:
    """A blocking raw MQTT client on gatehub's codec."""

    def __init__(self, port: int, version: int | None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # version None: learn it from the CONNACK (a refusal of an unknown level is in 3.1.1 form)
        self.decoder: Decoder | None = Decoder(version=version) if version else None
        self._pending = b""
        self.received: list[Packet] = []
        self.closed = False
        self.eof_sent = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def packet(self, timeout: float = 5.0) -> Packet | None:
        """The next packet (None once the server closed)."""
        self.sock.settimeout(timeout)
        while True:
            pkt = self.decoder.next_packet() if self.decoder else None  # the server's bytes must decode
            if pkt is not None:
                self.received.append(pkt)
                return pkt
            if self.closed:
                assert not self._pending, f"a partial packet before the close: {self._pending!r}"
                return None
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                continue
            if self.decoder is None:
                self._pending += data
                if len(self._pending) < 2:
                    continue
                assert self._pending[0] == 0x20, f"the first packet is not a CONNACK: {self._pending!r}"
                self.decoder = Decoder(version=4 if self._pending[1] == 2 else 5)
                data, self._pending = self._pending, b""
            self.decoder.feed(data)

    def drain_until_closed(self, timeout: float) -> list[Packet]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.packet(left)
            except TimeoutError:
                break
        return self.received

    def close(self) -> None:
        self.sock.close()


class Bystander:
    """A client of another tenant that must keep working while others send garbage."""

    def __init__(self, port: int) -> None:
        self.conn = Conn(port, 5)
        self.conn.send(encode_packet(ConnectPacket("bystander", 5, username="tok-bystander"), 5))
        ack = self.conn.packet()
        assert isinstance(ack, ConnackPacket) and ack.reason_code == 0, ack
        self.conn.send(encode_packet(SubscribePacket(1, [Subscription("echo", 1)]), 5))
        assert isinstance(self.conn.packet(), SubackPacket)
        self.n = 0

    def check(self) -> None:
        self.n += 1
        pid = self.n % 60000 + 1
        payload = str(self.n).encode()
        self.conn.send(encode_packet(PublishPacket("echo", payload, 1, packet_id=pid), 5))
        got = {type(p) for p in (self.conn.packet(), self.conn.packet())}
        assert got == {PubAckPacket, PublishPacket}, f"the bystander stopped working: {self.conn.received[-2:]}"
        pub = next(p for p in reversed(self.conn.received) if isinstance(p, PublishPacket))
        assert pub.payload == payload
        if pub.qos:
            self.conn.send(encode_packet(PubAckPacket(pub.packet_id), 5))


class _Errors(logging.Handler):
    """Every error the node logs (an exception that escaped a handler is a bug)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture(scope="module")
def node_errors() -> Iterator[_Errors]:
    handler = _Errors()
    root = logging.getLogger("gatehub")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, node_errors: _Errors) -> Iterator[tuple[NodeThread, Bystander]]:
    nt = NodeThread(tmp_path_factory.mktemp("mqtt-fuzz")).start()
    try:
        yield nt, Bystander(nt.port)
        assert not node_errors.records, "\n".join(node_errors.records)
    finally:
        nt.stop()


@pytest.fixture(autouse=True)
def _no_node_errors(node_errors: _Errors) -> Iterator[None]:
    yield
    assert not node_errors.records, "\n".join(node_errors.records[:3])


def _client_stream_verdict(data: bytes, version: int) -> str:
    """What a correct server must conclude from ``data`` sent after an accepted CONNECT:
    'error' (a packet it must refuse), 'disconnect' (the client closed normally first) or 'ok'."""
    dec = Decoder(version=version)
    dec.feed(data)
    try:
        for pkt in dec:
            if isinstance(pkt, DisconnectPacket):
                return "error" if pkt.reason_code not in (0, 4) and version == 5 else "disconnect"
            if isinstance(pkt, ConnectPacket):
                return "error"  # a second CONNECT
    except RemoteProtocolError:
        return "error"
    return "ok"


def _check_first_answer(conn: Conn) -> None:
    """Garbage (or a damaged CONNECT) as the first packet: nothing, or a CONNACK first; a refusal
    is the only packet and ends the connection; after an acceptance, the usual rules."""
    got = conn.received
    if not got:
        return
    first = got[0]
    assert isinstance(first, ConnackPacket), got
    assert len([p for p in got if isinstance(p, ConnackPacket)]) == 1, got
    if first.reason_code:
        assert first.reason_code >= 0x80 or first.reason_code in (1, 2, 3, 4, 5), first
        assert got == [first] and conn.closed, got
        return
    disconnects = [p for p in got if isinstance(p, DisconnectPacket)]
    assert len(disconnects) <= 1 and (not disconnects or got[-1] is disconnects[0]), got
    assert all(d.reason_code >= 0x80 for d in disconnects), got


def _check_answer(conn: Conn, version: int, sent: bytes) -> None:
    got = conn.received
    connacks = [p for p in got if isinstance(p, ConnackPacket)]
    assert len(connacks) == 1, got
    disconnects = [p for p in got if isinstance(p, DisconnectPacket)]
    if version != 5:
        assert not disconnects, f"a DISCONNECT on MQTT 3.1.1: {got}"
    else:
        assert len(disconnects) <= 1, got
        if disconnects:
            assert got[-1] is disconnects[0], "packets after the server's DISCONNECT"
            assert disconnects[0].reason_code >= 0x80, disconnects[0]
        if conn.closed and not disconnects and not conn.eof_sent:
            # the server closed without telling why: only allowed after the client's DISCONNECT
            assert _client_stream_verdict(sent, version) == "disconnect", (sent, got)
        if _client_stream_verdict(sent, version) == "error":
            assert disconnects and conn.closed, f"a malformed stream was not refused: {sent!r} -> {got}"


def _run_example(running: tuple[NodeThread, Bystander], version: int, garbage: bytes, *, connect_first: bool) -> None:
    nt, bystander = running
    conn = Conn(nt.port, version if connect_first else None)
    try:
        if connect_first:
            conn.send(encode_packet(ConnectPacket(f"fz{next(_ids)}", version, keepalive=0), version))
            ack = conn.packet()
            assert isinstance(ack, ConnackPacket) and ack.reason_code == 0, ack
        conn.send(garbage)
        bystander.check()  # meanwhile the server keeps serving others
        conn.drain_until_closed(0.05)
        if not conn.closed:  # waiting for the rest of a packet, or fine: end the stream
            with_eof = True
            try:
                conn.sock.shutdown(socket.SHUT_WR)
                conn.eof_sent = True
            except OSError:
                with_eof = False
            conn.drain_until_closed(5)
            assert conn.closed or not with_eof, "the server did not close after EOF"
        if connect_first:
            _check_answer(conn, version, garbage)
        else:
            _check_first_answer(conn)
    finally:
        conn.close()
    bystander.check()


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, at, value in ops:
        if not buf:
            break
        i = at % len(buf)
        if kind == 0:
            buf[i] = value
        elif kind == 1:
            buf[i] ^= 1 << (value % 8)
        elif kind == 2:
            buf.insert(i, value)
        elif kind == 3:
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


mutations = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


@FUZZ
@given(version=st.sampled_from([4, 5]), garbage=st.binary(min_size=1, max_size=200))
def test_random_bytes_after_connect(running: tuple[NodeThread, Bystander], version: int, garbage: bytes) -> None:
    _run_example(running, version, garbage, connect_first=True)


@FUZZ
@given(version=st.sampled_from([4, 5]), data=st.data())
def test_mutated_packets_after_connect(running: tuple[NodeThread, Bystander], version: int, data: Any) -> None:
    pkts = data.draw(st.lists(packets(version), min_size=1, max_size=4))
    stream = b"".join(encode_packet(p, version) for p in pkts)
    _run_example(running, version, _mutate(stream, data.draw(mutations)), connect_first=True)


@FUZZ
@given(data=st.data())
def test_garbage_as_first_packet(running: tuple[NodeThread, Bystander], data: Any) -> None:
    version = data.draw(st.sampled_from([4, 5]))
    valid = encode_packet(ConnectPacket(f"g{next(_ids)}", version), version)
    garbage = data.draw(st.binary(min_size=1, max_size=100) | st.just(valid).map(lambda v: v))
    if data.draw(st.booleans()):
        garbage = _mutate(garbage, data.draw(mutations))
    _run_example(running, version, garbage, connect_first=False)


# --- known malformed packets and the reason code the spec asks for ----------------------------
CASES = [
    # (name, bytes after CONNECT, MQTT 5 DISCONNECT reason code, also a violation on 3.1.1)
    ("publish QoS 3 (malformed)", b"\x36\x05\x00\x01a\x00\x01", 0x81, True),
    ("subscribe with reserved flags 0000 (malformed)", b"\x80\x06\x00\x01\x00\x00\x01a", 0x81, True),
    ("remaining length of 5 bytes (malformed)", b"\x30\xff\xff\xff\xff\x01", 0x81, True),
    ("reserved packet type 0 (malformed)", b"\x00\x00", 0x81, True),
    ("a second CONNECT (protocol error)", encode_packet(ConnectPacket("again", 5), 5), 0x82, True),
    ("topic with a wildcard (topic name invalid)", b"\x30\x04\x00\x01#\x00", 0x90, True),
    ("subscribe with no topic filters (protocol error)", b"\x82\x03\x00\x01\x00", 0x82, True),
    ("topic alias 0 (topic alias invalid)", b"\x30\x07\x00\x01a\x03\x23\x00\x00", 0x94, False),
    ("unknown property (malformed)", b"\x30\x06\x00\x01a\x02\x7f\x00", 0x81, False),
]


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize(("name", "data", "code", "on_311"), CASES, ids=[c[0] for c in CASES])
def test_known_malformed_packets(
    running: tuple[NodeThread, Bystander], version: int, name: str, data: bytes, code: int, on_311: bool
) -> None:
    if version == 4 and not on_311:
        pytest.skip("MQTT 5 only (these bytes are a valid 3.1.1 PUBLISH or not a whole packet)")
    nt, bystander = running
    conn = Conn(nt.port, version)
    try:
        conn.send(encode_packet(ConnectPacket(f"k{next(_ids)}", version), version))
        assert isinstance(conn.packet(), ConnackPacket)
        conn.send(data)
        got = conn.drain_until_closed(5)
        assert conn.closed, f"{name}: the connection stayed open"
        if version == 5:
            assert [type(p) for p in got[1:]] == [DisconnectPacket], got
            assert got[-1].reason_code == code, f"{name}: 0x{got[-1].reason_code:02x}"  # type: ignore[union-attr]
        else:
            assert got[1:] == [], f"{name}: MQTT 3.1.1 closes without a packet, got {got}"
    finally:
        conn.close()
    bystander.check()
