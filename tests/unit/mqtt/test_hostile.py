"""Hostile input and overload at the sans-I/O core: what a client that has not authenticated can
make the server hold, the outbound in-flight window, the session queue's bounds and overflow
policies, and the MQTT 5 Response Topic rule."""

from __future__ import annotations

import pytest

from gatehub.errors import RemoteProtocolError
from gatehub.protocols.mqtt import (
    ConnackPacket,
    ConnectPacket,
    Decoder,
    DisconnectPacket,
    Properties,
    ProtocolViolation,
    PubAckPacket,
    PubAckReceived,
    Publish,
    PublishPacket,
    QueueStats,
    SendResult,
    ServerConnection,
    ServerOptions,
    SessionState,
    encode_packet,
)
from gatehub.protocols.mqtt.packets import Will
from gatehub.protocols.mqtt.session import OutboundMessage
from gatehub.transports.mqtt.preauth import PreauthBudget
from tests.unit.mqtt.helpers import Peer

BIG = 3_800_000  # the body a hostile first PUBLISH announces


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# --- before CONNECT: judged on the fixed header -----------------------------------------------
def test_server_decoder_refuses_a_first_publish_on_its_header() -> None:
    decoder = Decoder(first_connect=True)
    decoder.feed(b"\x30" + _remaining(BIG) + b"\x00\x01t" + b"x" * 1000)
    with pytest.raises(RemoteProtocolError) as err:
        decoder.next_packet()
    assert err.value.reason_code == 0x82 and "PUBLISH before CONNECT" in err.value.message
    # a decoder that is not a server's first-packet judge still waits for the body (clients, tools)
    plain = Decoder()
    plain.feed(b"\x30" + _remaining(BIG) + b"\x00\x01t")
    assert plain.next_packet() is None


def test_first_publish_closes_at_once_without_connack() -> None:
    server = ServerConnection()
    server.receive_data(b"\x32" + _remaining(BIG) + b"\x00\x01t\x00\x01" + b"x" * 60_000)
    assert server.should_close
    assert server.data_to_send() == b""  # MQTT 5 3.1.4 / 4.13: no CONNECT was received, nothing to answer
    (event,) = server.events_received()
    assert isinstance(event, ProtocolViolation) and event.reason_code == 0x82


@pytest.mark.parametrize("first", [b"\x82", b"\xc0", b"\x00", b"\xe0"])
def test_any_other_first_packet_is_refused_before_its_body(first: bytes) -> None:
    server = ServerConnection()
    server.receive_data(first + _remaining(100_000) + b"\x00")
    assert server.should_close and server.data_to_send() == b""


def test_connect_above_max_connect_size_gets_connack_0x95_on_mqtt5() -> None:
    v5 = ServerConnection(ServerOptions(max_connect_size=4096))
    data = encode_packet(ConnectPacket("c", 5, username="u", password=b"p" * 5000), 5)
    v5.receive_data(data[:100])
    assert v5.should_close
    dec = Decoder(version=5)
    dec.feed(v5.data_to_send())
    ack = dec.next_packet()
    assert isinstance(ack, ConnackPacket) and ack.reason_code == 0x95
    v3 = ServerConnection(ServerOptions(max_connect_size=4096))
    v3.receive_data(encode_packet(ConnectPacket("c", 4, username="u", password=b"p" * 5000), 4)[:100])
    assert v3.should_close and v3.data_to_send() == b""  # 3.1.1 has no code for it: a plain close


def test_real_connects_fit_the_default_max_connect_size() -> None:
    """A 4 KB JWT password, a 2 KB will, MQTT 5 authentication data and user properties."""
    jwt = b"eyJhbGciOiJSUzI1NiJ9." + b"A" * 4000
    props = Properties(
        authentication_method="SCRAM-SHA-256",
        authentication_data=b"n,,n=user,r=" + b"r" * 2000,
        user_properties=tuple((f"k{i}", "v" * 100) for i in range(50)),
    )
    will = Will("dev/1/status", b"w" * 2000, 1, False, Properties())
    connect = ConnectPacket("device-1", 5, True, 60, "user", jwt, will, props)
    server = ServerConnection()
    server.receive_data(encode_packet(connect, 5))
    (event,) = server.events_received()
    assert type(event).__name__ == "Connect" and event.password == jwt


def test_max_connect_size_ends_with_accept() -> None:
    """After CONNACK a PUBLISH up to max_packet_size is taken, also one pipelined behind the CONNECT."""
    peer = Peer(4, ServerOptions(max_connect_size=1024, max_packet_size=1 << 20))
    big = PublishPacket("t", b"x" * 100_000, 1, packet_id=1)
    events = peer.send(ConnectPacket("c", 4), big)
    assert [type(e).__name__ for e in events] == ["Connect"]
    peer.server.accept()
    (publish,) = peer.server.events_received()
    assert isinstance(publish, Publish) and len(publish.payload) == 100_000
    assert not peer.server.should_close
    peer.send(PublishPacket("t", b"y" * 200_000, 1, packet_id=2))
    assert not peer.server.should_close


def test_enhanced_auth_packets_are_bounded_before_accept() -> None:
    props = Properties(authentication_method="M", authentication_data=b"a")
    peer = Peer(5, ServerOptions(max_connect_size=1024))
    events = peer.send(ConnectPacket("c", 5, properties=props))
    assert type(events[0]).__name__ == "Connect"
    peer.server.receive_data(b"\xf0" + _remaining(50_000) + b"\x18")  # an AUTH announcing 50 KB
    assert peer.server.should_close


# --- the outbound in-flight window -------------------------------------------------------------
def _fill(server: ServerConnection, n: int, qos: int = 1, size: int = 10) -> list[SendResult]:
    return [server.send_publish("t", bytes(size), qos, token=i) for i in range(n)]


def test_mqtt311_gets_the_server_window_of_20() -> None:
    peer = Peer(4).connected()
    res = _fill(peer.server, 30)
    assert res.count(SendResult.SENT) == 20 and res.count(SendResult.QUEUED) == 10
    assert len(peer.received()) == 20
    peer.send(PubAckPacket(1))  # one acknowledged: one more goes
    assert [p.packet_id for p in peer.received()] == [21]


def test_mqtt5_receive_maximum_5_gets_5() -> None:
    peer = Peer(5).connected(properties=Properties(receive_maximum=5))
    res = _fill(peer.server, 12)
    assert res.count(SendResult.SENT) == 5 and len(peer.received()) == 5


def test_mqtt5_receive_maximum_is_honoured_above_the_server_window() -> None:
    peer = Peer(5, ServerOptions(max_inflight=20)).connected(properties=Properties(receive_maximum=100))
    assert _fill(peer.server, 100).count(SendResult.SENT) == 100


def test_mqtt5_without_receive_maximum_gets_the_server_window() -> None:
    peer = Peer(5, ServerOptions(max_inflight=7)).connected()
    assert _fill(peer.server, 10).count(SendResult.SENT) == 7


def test_paused_output_queues_qos1_and_resume_fills_the_window() -> None:
    peer = Peer(5).connected(properties=Properties(receive_maximum=1000))
    server = peer.server
    assert _fill(server, 3).count(SendResult.SENT) == 3
    server.pause_output()
    assert set(_fill(server, 5)) == {SendResult.QUEUED}
    assert server.send_publish("t", b"q0", 0) is SendResult.SENT  # QoS 0 is the transport's to drop
    assert len(peer.received()) == 4
    server.resume_output()
    assert len(peer.received()) == 5 and not server.session.queue  # type: ignore[union-attr]


# --- the session queue's bounds and the overflow policies -------------------------------------
def test_disconnect_policy_ends_a_full_session_with_0x97_and_counts_what_it_loses() -> None:
    stats = QueueStats()
    options = ServerOptions(max_inflight=2, max_queued_messages=3, queue_overflow="disconnect", queue_stats=stats)
    peer = Peer(5, options).connected()
    res = _fill(peer.server, 5)
    assert res == [SendResult.SENT] * 2 + [SendResult.QUEUED] * 3
    assert peer.server.send_publish("t", b"x", 2) is SendResult.DROPPED_QUEUE_FULL
    assert peer.server.should_close
    packets = peer.received()
    assert isinstance(packets[-1], DisconnectPacket) and packets[-1].reason_code == 0x97
    # a clean session ends with its connection: the refused QoS 2 one and the 5 it held are lost
    assert stats.dropped == [0, 5, 1]


def test_disconnect_policy_keeps_a_persistent_session() -> None:
    stats = QueueStats()
    options = ServerOptions(max_inflight=1, max_queued_messages=2, queue_overflow="disconnect", queue_stats=stats)
    peer = Peer(4, options)
    peer.connect(clean_start=False)
    peer.server.accept()
    peer.received()
    _fill(peer.server, 3)
    assert len(peer.received()) == 1
    assert peer.server.send_publish("t", b"x", 1) is SendResult.DROPPED_QUEUE_FULL
    assert peer.server.should_close and peer.received() == []  # 3.1.1: a plain close
    session = peer.server.session
    assert session is not None and len(session.inflight) == 1 and len(session.queue) == 2
    assert stats.dropped == [0, 1, 0]


def test_drop_oldest_keeps_the_newest_and_tells_the_dropped_ones_sender() -> None:
    stats = QueueStats()
    options = ServerOptions(max_inflight=1, max_queued_messages=3, queue_overflow="drop_oldest", queue_stats=stats)
    peer = Peer(5, options).connected()
    server = peer.server
    assert set(_fill(server, 10)) == {SendResult.SENT, SendResult.QUEUED}
    assert not server.should_close
    session = server.session
    assert session is not None
    assert [m.token for m in session.queue] == [7, 8, 9]
    dropped = [e for e in server.events_received() if isinstance(e, PubAckReceived)]
    assert [(e.reason_code, e.message.token) for e in dropped] == [(0x97, t) for t in range(1, 7)]
    assert stats.dropped == [0, 6, 0] and session.dropped == 6


def test_drop_newest_refuses_the_new_message() -> None:
    peer = Peer(5, ServerOptions(max_inflight=1, max_queued_messages=2, queue_overflow="drop_newest")).connected()
    res = _fill(peer.server, 5)
    assert res == [SendResult.SENT, SendResult.QUEUED, SendResult.QUEUED] + [SendResult.DROPPED_QUEUE_FULL] * 2
    assert not peer.server.should_close


def test_queue_bytes_bound() -> None:
    options = ServerOptions(max_inflight=1, max_queued_bytes=2500, queue_overflow="drop_newest")
    peer = Peer(4, options).connected()
    res = _fill(peer.server, 6, size=1000)
    assert res[:3] == [SendResult.SENT, SendResult.QUEUED, SendResult.QUEUED]
    assert set(res[3:]) == {SendResult.DROPPED_QUEUE_FULL}
    session = peer.server.session
    assert session is not None and session.queued_bytes == 2 * 1001
    peer.send(PubAckPacket(1))
    assert session.queued_bytes == 1001 and len(session.inflight) == 1


def test_a_queue_takes_one_message_larger_than_its_byte_bound() -> None:
    session = SessionState("c", max_queued_bytes=10)
    assert session.enqueue(OutboundMessage("t", b"x" * 100, 1))
    assert not session.enqueue(OutboundMessage("t", b"y", 1))


@pytest.mark.parametrize("policy", ["drop_oldest", "disconnect"])
def test_offline_queue_obeys_the_same_bounds(policy: str) -> None:
    stats = QueueStats()
    options = ServerOptions(max_queued_messages=3, max_queued_bytes=1 << 20, queue_overflow=policy, queue_stats=stats)
    session = options.new_session("c", 3600)
    for i in range(5):
        session.enqueue(OutboundMessage("t", bytes([i]) * 10, 1))
    kept = [m.payload[0] for m in session.queue]
    assert kept == ([2, 3, 4] if policy == "drop_oldest" else [0, 1, 2])
    assert stats.dropped == [0, 2, 0] and session.queued_bytes == 3 * 11
    big = options.new_session("d", 3600)
    big.max_queued_bytes = 25
    for _ in range(4):
        big.enqueue(OutboundMessage("t", bytes(10), 2))
    assert len(big.queue) == 2 and big.queued_bytes == 22


# --- MQTT 5 Response Topic --------------------------------------------------------------------
@pytest.mark.parametrize("topic", ["reply/+", "reply/#", "#", "a/+/b"])
def test_publish_with_a_wildcard_response_topic_is_a_protocol_error(topic: str) -> None:
    peer = Peer(5).connected()
    events = peer.send(PublishPacket("req", b"x", 1, packet_id=1, properties=Properties(response_topic=topic)))
    assert [type(e).__name__ for e in events] == ["ProtocolViolation"]
    (disconnect,) = peer.received()
    assert isinstance(disconnect, DisconnectPacket) and disconnect.reason_code == 0x82
    assert peer.server.should_close


def test_publish_with_a_plain_response_topic_is_delivered() -> None:
    peer = Peer(5).connected()
    (event,) = peer.send(PublishPacket("req", b"x", 0, properties=Properties(response_topic="reply/dev-1")))
    assert isinstance(event, Publish) and event.properties.response_topic == "reply/dev-1"


def test_will_with_a_wildcard_response_topic_is_refused() -> None:
    will = Will("dev/status", b"gone", 0, False, Properties(response_topic="reply/#"))
    peer = Peer(5)
    events = peer.connect(will=will)
    assert [type(e).__name__ for e in events] == ["ProtocolViolation"]
    (ack,) = peer.received()
    assert isinstance(ack, ConnackPacket) and ack.reason_code == 0x82


# --- the listener's budget of unauthenticated bytes ------------------------------------------
class _Holder:
    def __init__(self, budget: PreauthBudget) -> None:
        self.budget = budget
        self.evicted = False

    def preauth_evict(self) -> None:
        self.evicted = True
        self.budget.hold(self, 0)


def test_preauth_budget_closes_the_largest_holder_not_the_newest() -> None:
    budget = PreauthBudget(1000)
    big = [_Holder(budget) for _ in range(3)]
    for i, h in enumerate(big):
        budget.hold(h, 300 + i)  # 300 + 301 + 302 = 903: within
    assert budget.total == 903 and not any(h.evicted for h in big)
    small = _Holder(budget)
    budget.hold(small, 200)  # 1103: over; the largest (302) goes, the newcomer stays
    assert [h.evicted for h in big] == [False, False, True] and not small.evicted
    assert budget.total == 801 and budget.evicted == 1
    budget.hold(small, 0)  # it authenticated
    assert budget.total == 601 and small not in budget.holders
