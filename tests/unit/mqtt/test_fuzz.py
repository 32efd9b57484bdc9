"""Property-based: random and mutated bytes never raise anything but RemoteProtocolError from the
decoder, and nothing at all from ServerConnection (violations become events + the right reply)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehub.errors import RemoteProtocolError
from gatehub.protocols.mqtt import (
    AuthPacket,
    ConnectPacket,
    Decoder,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    Properties,
    ProtocolViolation,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    ServerConnection,
    ServerOptions,
    SubscribePacket,
    Subscription,
    UnsubscribePacket,
    Will,
    encode_packet,
)

from .test_codec import PAHO_SESSION_5, PAHO_SESSION_311

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00+#"), max_size=8)
pids = st.integers(1, 4)
props = st.builds(
    Properties,
    content_type=st.none() | text,
    response_topic=st.none() | text.filter(bool),
    correlation_data=st.none() | st.binary(max_size=4),
    user_properties=st.lists(st.tuples(text, text), max_size=2),
    payload_format_indicator=st.none() | st.integers(0, 1),
    topic_alias=st.none() | st.integers(1, 3),
)


def packets(version: int) -> st.SearchStrategy[Packet]:
    topic = text.filter(bool)
    publish = st.builds(
        lambda t, p, q, r, i, pr: PublishPacket(t, p, q, r, False, i if q else 0, pr if version == 5 else Properties()),
        topic,
        st.binary(max_size=16),
        st.integers(0, 2),
        st.booleans(),
        pids,
        props,
    )
    return st.one_of(
        publish,
        publish,
        st.builds(PubAckPacket, pids),
        st.builds(PubRecPacket, pids),
        st.builds(PubRelPacket, pids),
        st.builds(PubCompPacket, pids),
        st.builds(
            lambda i, f, q: SubscribePacket(i, [Subscription(f, q)]),
            pids,
            st.sampled_from(["a/+", "#", "x"]),
            st.integers(0, 2),
        ),
        st.builds(lambda i: UnsubscribePacket(i, ["a/+"]), pids),
        st.just(PingReqPacket()),
        st.just(DisconnectPacket()),
        st.builds(
            lambda c: (
                ConnectPacket("x", version, True, 5, will=Will("w", b"", 1)) if c else ConnectPacket("x", version)
            ),
            st.booleans(),
        ),
    )


def session_bytes(version: int) -> st.SearchStrategy[bytes]:
    connect = encode_packet(
        ConnectPacket(
            "fuzz",
            version,
            False,
            30,
            properties=Properties(topic_alias_maximum=3, receive_maximum=2) if version == 5 else Properties(),
        ),
        version,
    )
    return st.lists(packets(version), max_size=8).map(
        lambda ps: connect + b"".join(encode_packet(p, version) for p in ps)
    )


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    return bytes(data)


inputs = st.one_of(
    st.binary(max_size=64),
    mutated(st.sampled_from([PAHO_SESSION_311, PAHO_SESSION_5])),
    mutated(session_bytes(4)),
    mutated(session_bytes(5)),
)
chunkings = st.lists(st.integers(1, 16), min_size=1, max_size=8)


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


@FUZZ
@given(inputs, chunkings, st.sampled_from([None, 4, 5]))
def test_decoder_raises_only_remote_protocol_error(data: bytes, sizes: list[int], version: int | None) -> None:
    whole = Decoder(version=version)
    pieces = Decoder(version=version)
    got_whole: list[Packet] = []
    got_pieces: list[Packet] = []
    try:
        whole.feed(data)
        got_whole.extend(whole)
        error_whole = None
    except RemoteProtocolError as exc:
        error_whole = exc.reason_code
    try:
        for chunk in chunks(data, sizes):
            pieces.feed(chunk)
            got_pieces.extend(pieces)
        error_pieces = None
    except RemoteProtocolError as exc:
        error_pieces = exc.reason_code
    assert got_pieces == got_whole  # chunking never changes the outcome
    assert error_pieces == error_whole
    for packet in got_whole:  # what decodes re-encodes to something that decodes the same
        v = whole.version or 4
        assert Decoder_roundtrip(packet, v) == packet


def Decoder_roundtrip(packet: Packet, version: int) -> Packet:
    decoder = Decoder(version=version)
    decoder.feed(encode_packet(packet, version))
    [again] = list(decoder)
    return again


DISCONNECT_CODES = {0x81, 0x82, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x99, 0x9A, 0x9B, 0xA1}


@FUZZ
@given(inputs, chunkings, st.booleans())
def test_server_connection_never_raises(data: bytes, sizes: list[int], accept_first: bool) -> None:
    conn = ServerConnection(ServerOptions(receive_maximum=3, topic_alias_maximum=2, max_packet_size=512))
    events = []
    for chunk in chunks(data, sizes):
        conn.receive_data(chunk)
        for event in conn.events_received():
            events.append(event)
            name = type(event).__name__
            if name == "Connect" and accept_first:
                conn.accept()
            elif name == "Connect":
                conn.refuse(0x87)
            elif name == "PublishPacket" and event.qos:  # type: ignore[union-attr]
                conn.ack_publish(event.packet_id)  # type: ignore[union-attr]
            elif name == "Subscribe":
                conn.send_suback(event.packet_id, [0] * len(event.subscriptions))  # type: ignore[union-attr]
            elif name == "Unsubscribe":
                conn.send_unsuback(event.packet_id)  # type: ignore[union-attr]
            elif name == "Auth":
                conn.send_auth(0x18)
        if conn.state.name == "CONNECTED":
            conn.send_publish("out/t", b"p", 1)
        events.extend(conn.events_received())
        out = conn.data_to_send()
        if out:
            Decoder(version=conn.version or 4).feed(out)
    violations = [e for e in events if isinstance(e, ProtocolViolation)]
    if violations:
        assert len(violations) == 1 and events[-1] is violations[0]
        assert conn.should_close
    if conn.state.name == "CONNECTED":
        conn.keepalive_expired()
        assert conn.should_close


@FUZZ
@given(st.lists(packets(5), max_size=12))
def test_server_output_always_decodes(client_packets: list[Packet]) -> None:
    """Whatever the client sends, the server's bytes are valid MQTT for the client's decoder."""
    conn = ServerConnection(ServerOptions(receive_maximum=3, topic_alias_maximum=2))
    connect = ConnectPacket("c", 5, True, 10, properties=Properties(topic_alias_maximum=2, receive_maximum=2))
    client = Decoder(version=5)
    conn.receive_data(encode_packet(connect, 5))
    conn.events_received()
    conn.accept()
    for packet in client_packets:
        conn.receive_data(encode_packet(packet, 5))
        for event in conn.events_received():
            if isinstance(event, PublishPacket) and event.qos:
                conn.ack_publish(event.packet_id)
        conn.send_publish("a/b", b"x", 2)
        conn.send_publish("a/c", b"y", 0)
        client.feed(conn.data_to_send())
        for out in client:
            assert out.type.name in {
                "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
                "SUBACK", "UNSUBACK", "PINGRESP", "DISCONNECT", "AUTH",
            }  # fmt: skip
            if isinstance(out, DisconnectPacket):
                assert out.reason_code in DISCONNECT_CODES
        if conn.should_close:
            break
    assert isinstance(AuthPacket(), AuthPacket)
