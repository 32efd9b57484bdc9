"""ServerConnection: CONNECT handling, inbound and outbound QoS 0/1/2 flows, errors, keep alive."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gatehub.errors import LocalProtocolError
from gatehub.protocols.mqtt import (
    Auth,
    AuthPacket,
    ConnackPacket,
    Connect,
    ConnectPacket,
    Disconnect,
    DisconnectPacket,
    PingReqPacket,
    PingRespPacket,
    Properties,
    ProtocolViolation,
    PubAckPacket,
    PubAckReceived,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SendResult,
    ServerConnection,
    ServerOptions,
    State,
    SubackPacket,
    Subscribe,
    SubscribePacket,
    Subscription,
    UnsubackPacket,
    Unsubscribe,
    UnsubscribePacket,
    Will,
)

from .helpers import Peer
from .test_codec import PAHO_CONNECT_5, PAHO_CONNECT_311, PAHO_SESSION_5, PAHO_SESSION_311, P

H = bytes.fromhex


def violation(events: Sequence[object]) -> ProtocolViolation:
    assert events and isinstance(events[-1], ProtocolViolation), events
    return events[-1]


# CONNECT ---------------------------------------------------------------------------------------
def test_paho_311_connect_accept() -> None:
    conn = ServerConnection()
    conn.receive_data(PAHO_CONNECT_311)
    [event] = conn.events_received()
    assert isinstance(event, Connect)
    assert event.client_id == "paho-client" and event.protocol_version == 4
    assert event.username == "token123" and event.password == b"secret"
    assert event.will == Will("status/paho", b"offline", 1, True)
    assert event.keepalive == 30 and event.session_expiry_interval == 0
    assert conn.keepalive_timeout() == 45.0
    assert conn.data_to_send() == b""
    conn.accept()
    assert conn.data_to_send() == H("20020000")
    assert conn.state is State.CONNECTED


def test_paho_5_connect_accept_announces_limits() -> None:
    options = ServerOptions(receive_maximum=100, topic_alias_maximum=8, max_packet_size=4096, maximum_qos=1)
    conn = ServerConnection(options)
    conn.receive_data(PAHO_CONNECT_5)
    [event] = conn.events_received()
    assert isinstance(event, Connect)
    assert event.session_expiry_interval == 3600 and event.receive_maximum == 20
    assert event.will is not None and event.will_delay_interval == 10
    conn.accept(user_properties=(("node", "n1"),))
    peer_decoder = Peer(5).decoder
    peer_decoder.feed(conn.data_to_send())
    [connack] = list(peer_decoder)
    assert isinstance(connack, ConnackPacket) and connack.reason_code == 0
    props = connack.properties
    assert props.receive_maximum == 100
    assert props.topic_alias_maximum == 8
    assert props.maximum_packet_size == 4096
    assert props.maximum_qos == 1
    assert props.user_properties == (("node", "n1"),)
    assert props.assigned_client_identifier is None
    assert props.session_expiry_interval is None  # granted as asked


def test_full_paho_sessions_both_versions() -> None:
    for data, version in ((PAHO_SESSION_311, 4), (PAHO_SESSION_5, 5)):
        conn = ServerConnection()
        conn.receive_data(data)
        events = conn.events_received()
        assert [type(e) for e in events] == [Connect]  # the rest waits for accept()
        conn.accept()
        events = conn.events_received()
        assert [type(e).__name__ for e in events] == [
            "Subscribe", "PublishPacket", "PublishPacket", "Unsubscribe", "Disconnect"
        ]  # fmt: skip
        assert conn.should_close
        disconnect = events[-1]
        assert isinstance(disconnect, Disconnect)
        assert disconnect.discard_will is (version == 4)  # paho 5 sent 0x04: keep the will


def test_empty_client_id() -> None:
    peer = Peer(4)
    events = peer.connect("", clean_start=False)
    assert violation(events).reason_code == 0x85
    assert peer.received() == [ConnackPacket(False, 2)]
    assert peer.server.should_close

    peer = Peer(4)
    [event] = peer.connect("", clean_start=True)
    assert isinstance(event, Connect) and event.client_id_assigned and event.client_id
    peer.server.accept()
    assert peer.received() == [ConnackPacket(False, 0)]

    peer = Peer(5, ServerOptions(assign_client_id=lambda: "assigned-1"))
    [event] = peer.connect("", clean_start=False)
    assert isinstance(event, Connect) and event.client_id == "assigned-1"
    peer.server.accept()
    [connack] = peer.received()
    assert isinstance(connack, ConnackPacket)
    assert connack.properties.assigned_client_identifier == "assigned-1"


def test_unsupported_protocol_levels() -> None:
    conn = ServerConnection()
    conn.receive_data(P("10", "0004 4d515454 03 02 003c 0001 7a"))
    assert violation(conn.events_received()).reason_code == 0x84
    assert conn.data_to_send() == H("20020001") and conn.should_close
    conn = ServerConnection()
    conn.receive_data(P("10", "0004 4d515454 06 02 003c 0001 7a"))
    assert conn.data_to_send() == H("2003008400")


def test_malformed_connect_v5_gets_connack_with_reason() -> None:
    conn = ServerConnection()
    conn.receive_data(P("10", "0004 4d515454 05 02 003c 03 210000 0001 7a"))
    assert violation(conn.events_received()).reason_code == 0x82
    peer = Peer(5)
    peer.decoder.feed(conn.data_to_send())
    [connack] = list(peer.decoder)
    assert isinstance(connack, ConnackPacket) and connack.reason_code == 0x82
    assert connack.properties.reason_string


def test_malformed_connect_v311_just_closes() -> None:
    conn = ServerConnection()
    conn.receive_data(P("10", "0004 4d515454 04 03 003c 0001 7a"))
    assert violation(conn.events_received()).reason_code == 0x81
    assert conn.data_to_send() == b"" and conn.should_close


def test_packet_before_connect() -> None:
    conn = ServerConnection()
    conn.receive_data(H("c000"))
    assert violation(conn.events_received()).reason_code == 0x82
    assert conn.data_to_send() == b"" and conn.should_close
    conn.receive_data(H("c000"))  # ignored once closed
    assert conn.events_received() == []


def test_second_connect_with_unknown_level_is_a_protocol_error() -> None:
    peer = Peer(5).connected()
    events = peer.send_raw(P("10", "0004 4d515454 07 02 003c 0001 7a"))
    assert violation(events).reason_code == 0x82
    [packet] = peer.received()
    assert isinstance(packet, DisconnectPacket) and packet.reason_code == 0x82


def test_second_connect_is_a_protocol_error() -> None:
    peer = Peer(5).connected()
    assert violation(peer.send(ConnectPacket("c1", 5))).reason_code == 0x82
    [packet] = peer.received()
    assert isinstance(packet, DisconnectPacket) and packet.reason_code == 0x82
    assert peer.server.should_close


def test_refuse_translates_codes() -> None:
    peer = Peer(4)
    peer.connect()
    peer.server.refuse(0x86)
    assert peer.received() == [ConnackPacket(False, 4)]
    assert peer.server.should_close
    peer = Peer(5)
    peer.connect()
    peer.server.refuse(5, reason_string="no")  # a 3.1.1 code, translated to 0x87
    assert peer.received() == [ConnackPacket(False, 0x87, Properties(reason_string="no"))]
    peer = Peer(5)
    peer.connect()
    with pytest.raises(LocalProtocolError):
        peer.server.refuse(0x10)


def test_will_qos_above_maximum_is_refused() -> None:
    peer = Peer(5, ServerOptions(maximum_qos=1))
    events = peer.connect(will=Will("w", b"", 2))
    assert violation(events).reason_code == 0x9B
    assert peer.received()[0] == ConnackPacket(
        False, 0x9B, Properties(reason_string="will QoS 2 above the maximum QoS")
    )


def test_session_present_and_expiry_cap() -> None:
    from gatehub.protocols.mqtt import SessionState

    peer = Peer(5, ServerOptions(max_session_expiry_interval=60))
    peer.connect("c1", clean_start=False, properties=Properties(session_expiry_interval=3600))
    peer.server.accept(session=SessionState("c1", 10))
    [connack] = peer.received()
    assert isinstance(connack, ConnackPacket) and connack.session_present
    assert connack.properties.session_expiry_interval == 60
    assert peer.server.session is not None and peer.server.session.session_expiry_interval == 60
    # a clean start never resumes a session; a session belongs to one client id
    peer = Peer(4)
    peer.connect("c1", clean_start=True)
    with pytest.raises(LocalProtocolError):
        peer.server.accept(session=SessionState("c1"))
    peer = Peer(4)
    peer.connect("c1", clean_start=False)
    with pytest.raises(LocalProtocolError):
        peer.server.accept(session=SessionState("c2"))
    peer.server.accept(session=SessionState("c1"), session_present=False)
    assert peer.received() == [ConnackPacket(False, 0)]


# inbound publish -------------------------------------------------------------------------------
def test_qos0_both_versions() -> None:
    for version in (4, 5):
        peer = Peer(version).connected()
        [event] = peer.send(PublishPacket("a/b", b"x"))
        assert event == PublishPacket("a/b", b"x")
        assert peer.received() == []


def test_qos1_ack_after_commit_in_order() -> None:
    peer = Peer(4).connected()
    events = peer.send(*(PublishPacket("t", bytes([i]), 1, packet_id=i) for i in (1, 2, 3)))
    assert [e.packet_id for e in events] == [1, 2, 3]  # type: ignore[union-attr]
    assert peer.received() == []  # nothing acknowledged before the hub says so
    peer.server.ack_publish(2)
    assert peer.received() == []  # 1 is not yet committed: PUBACKs keep arrival order
    peer.server.ack_publish(1)
    assert peer.received() == [PubAckPacket(1), PubAckPacket(2)]
    with pytest.raises(LocalProtocolError):
        peer.server.ack_publish(2)
    peer.server.ack_publish(3, 0x80)  # 3.1.1 has no failure code on PUBACK
    assert peer.received() == [PubAckPacket(3)]


def test_qos1_resend_while_pending_is_not_delivered_twice() -> None:
    peer = Peer(5).connected()
    assert len(peer.send(PublishPacket("t", b"x", 1, packet_id=7))) == 1
    assert peer.send(PublishPacket("t", b"x", 1, dup=True, packet_id=7)) == []
    peer.server.ack_publish(7, 0x10, reason_string="nobody")
    assert peer.received() == [PubAckPacket(7, 0x10, Properties(reason_string="nobody"))]
    assert len(peer.send(PublishPacket("t", b"y", 1, packet_id=7))) == 1  # id reused: new message


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_inbound_exactly_once(version: int) -> None:
    peer = Peer(version).connected()
    assert len(peer.send(PublishPacket("t", b"x", 2, packet_id=5))) == 1
    assert peer.send(PublishPacket("t", b"x", 2, dup=True, packet_id=5)) == []  # not yet acked
    peer.server.ack_publish(5)
    assert peer.received() == [PubRecPacket(5)]
    assert peer.send(PublishPacket("t", b"x", 2, dup=True, packet_id=5)) == []  # PUBREC lost
    assert peer.received() == [PubRecPacket(5)]
    assert peer.send(PubRelPacket(5)) == []
    assert peer.received() == [PubCompPacket(5)]
    assert peer.send(PubRelPacket(5)) == []
    assert peer.received() == [PubCompPacket(5, 0x92 if version == 5 else 0)]
    assert len(peer.send(PublishPacket("t", b"z", 2, packet_id=5))) == 1  # a new message


def test_qos2_inbound_refused_ends_the_flow() -> None:
    peer = Peer(5).connected()
    peer.send(PublishPacket("t", b"x", 2, packet_id=5))
    peer.server.ack_publish(5, 0x87)
    assert peer.received() == [PubRecPacket(5, 0x87)]
    assert peer.server.session is not None and 5 not in peer.server.session.inbound_qos2


def test_receive_maximum_exceeded() -> None:
    peer = Peer(5, ServerOptions(receive_maximum=2)).connected()
    peer.send(PublishPacket("t", b"", 1, packet_id=1), PublishPacket("t", b"", 2, packet_id=2))
    events = peer.send(PublishPacket("t", b"", 1, packet_id=3))
    assert violation(events).reason_code == 0x93
    [packet] = peer.received()
    assert isinstance(packet, DisconnectPacket) and packet.reason_code == 0x93


def test_inbound_topic_alias() -> None:
    peer = Peer(5, ServerOptions(topic_alias_maximum=2)).connected()
    [e1] = peer.send(PublishPacket("long/topic", b"1", properties=Properties(topic_alias=1)))
    [e2] = peer.send(PublishPacket("", b"2", properties=Properties(topic_alias=1, content_type="c")))
    assert isinstance(e1, PublishPacket) and isinstance(e2, PublishPacket)
    assert e1.topic == e2.topic == "long/topic"
    assert e2.properties == Properties(content_type="c")  # alias removed
    assert violation(peer.send(PublishPacket("", b"", properties=Properties(topic_alias=2)))).reason_code == 0x94
    peer = Peer(5, ServerOptions(topic_alias_maximum=2)).connected()
    assert violation(peer.send(PublishPacket("x", b"", properties=Properties(topic_alias=3)))).reason_code == 0x94


def test_publish_rules_maximum_qos_retain_and_subscription_identifier() -> None:
    peer = Peer(5, ServerOptions(maximum_qos=1)).connected()
    assert violation(peer.send(PublishPacket("t", b"", 2, packet_id=1))).reason_code == 0x9B
    peer = Peer(5, ServerOptions(retain_available=False)).connected()
    assert violation(peer.send(PublishPacket("t", b"", retain=True))).reason_code == 0x9A
    peer = Peer(5).connected()
    events = peer.send(PublishPacket("t", b"", properties=Properties(subscription_identifiers=[1])))
    assert violation(events).reason_code == 0x82


def test_payload_format_indicator() -> None:
    peer = Peer(5).connected()
    props = Properties(payload_format_indicator=1)
    assert len(peer.send(PublishPacket("t", "é".encode(), properties=props))) == 1
    assert peer.send(PublishPacket("t", b"\xff", 1, packet_id=1, properties=props)) == []
    [ack] = peer.received()
    assert isinstance(ack, PubAckPacket) and ack.reason_code == 0x99
    assert violation(peer.send(PublishPacket("t", b"\xff", properties=props))).reason_code == 0x99


def test_request_response_properties_pass_through_both_ways() -> None:
    peer = Peer(5).connected()
    props = Properties(response_topic="resp/7", correlation_data=b"\x00\x01", user_properties=[("a", "b")])
    [event] = peer.send(PublishPacket("req/7", b"q", 1, packet_id=1, properties=props))
    assert isinstance(event, PublishPacket) and event.properties == props
    peer.server.ack_publish(1)
    peer.server.send_publish("resp/7", b"r", 1, properties=props)
    packets = peer.received()
    assert packets[1] == PublishPacket("resp/7", b"r", 1, packet_id=1, properties=props)


def test_inbound_packet_too_large() -> None:
    peer = Peer(5, ServerOptions(max_packet_size=64)).connected()
    events = peer.send(PublishPacket("t", b"x" * 100))
    assert violation(events).reason_code == 0x95
    [packet] = peer.received()
    assert isinstance(packet, DisconnectPacket) and packet.reason_code == 0x95


def test_v311_violation_closes_without_sending() -> None:
    peer = Peer(4).connected()
    assert violation(peer.send_raw(H("3003000100"))).reason_code == 0x81
    assert peer.received() == [] and peer.server.should_close


# subscribe ------------------------------------------------------------------------------------
def test_subscribe_suback_unsubscribe_unsuback() -> None:
    peer = Peer(5).connected()
    subs = [Subscription("a/+", 1), Subscription("b/#", 2, no_local=True)]
    [event] = peer.send(SubscribePacket(3, subs, Properties(subscription_identifiers=[9])))
    assert event == Subscribe(3, subs, 9)
    with pytest.raises(LocalProtocolError):
        peer.server.send_suback(3, [1])  # one code per filter
    peer2 = Peer(5).connected()
    peer2.send(SubscribePacket(3, subs))
    peer2.server.send_suback(3, [1, 0x87])
    assert peer2.received() == [SubackPacket(3, [1, 0x87])]
    [event] = peer2.send(UnsubscribePacket(4, ["a/+", "x"]))
    assert event == Unsubscribe(4, ["a/+", "x"])
    peer2.server.send_unsuback(4, [0, 0x11])
    assert peer2.received() == [UnsubackPacket(4, [0, 0x11])]
    with pytest.raises(LocalProtocolError):
        peer2.server.send_unsuback(4)


def test_v311_suback_maps_failures() -> None:
    peer = Peer(4).connected()
    peer.send(SubscribePacket(1, [Subscription("a", 2), Subscription("b", 0)]))
    peer.server.send_suback(1, [0x87, 0])
    assert peer.received() == [SubackPacket(1, [0x80, 0])]
    peer.send(UnsubscribePacket(2, ["a"]))
    peer.server.send_unsuback(2)
    assert peer.received() == [UnsubackPacket(2)]


def test_subscription_identifiers_unavailable() -> None:
    peer = Peer(5, ServerOptions(subscription_identifier_available=False)).connected()
    events = peer.send(SubscribePacket(1, [Subscription("a")], Properties(subscription_identifiers=[1])))
    assert violation(events).reason_code == 0xA1


def test_client_must_not_send_server_packets() -> None:
    for packet in (ConnackPacket(), SubackPacket(1, [0]), UnsubackPacket(1, [0]), PingRespPacket()):
        peer = Peer(5).connected()
        assert violation(peer.send(packet)).reason_code == 0x82


def test_ping() -> None:
    peer = Peer(4).connected()
    assert peer.send(PingReqPacket()) == []
    assert peer.received() == [PingRespPacket()]


# outbound publish -------------------------------------------------------------------------------
def test_outbound_window_queue_and_completion() -> None:
    peer = Peer(5, ServerOptions(max_queued_messages=2))
    peer.connected(properties=Properties(receive_maximum=2))
    server = peer.server
    r = [server.send_publish("t", bytes([i]), 1 if i % 2 else 2, token=i) for i in range(5)]
    assert r == [SendResult.SENT, SendResult.SENT, SendResult.QUEUED, SendResult.QUEUED, SendResult.DROPPED_QUEUE_FULL]
    assert server.send_publish("t", b"q0") is SendResult.SENT  # QoS 0 is outside the window
    sent = peer.received()
    assert [(p.packet_id, p.qos) for p in sent] == [(1, 2), (2, 1), (0, 0)]  # type: ignore[union-attr]
    events = peer.send(PubAckPacket(2))
    assert [(e.packet_id, e.token) for e in events] == [(2, 1)]  # type: ignore[union-attr]
    [third] = peer.received()
    assert isinstance(third, PublishPacket) and third.payload == b"\x02" and third.packet_id == 3
    assert peer.send(PubRecPacket(1)) == []
    assert peer.received() == [PubRelPacket(1)]
    [done] = peer.send(PubCompPacket(1))
    assert isinstance(done, PubAckReceived) and done.token == 0
    [fourth] = peer.received()
    assert isinstance(fourth, PublishPacket) and fourth.payload == b"\x03"
    assert server.session is not None and server.session.dropped == 1


def test_pubrec_with_error_completes_and_unknown_acks() -> None:
    peer = Peer(5).connected()
    peer.server.send_publish("t", b"", 2)
    peer.received()
    [done] = peer.send(PubRecPacket(1, 0x80))
    assert isinstance(done, PubAckReceived) and done.reason_code == 0x80
    assert peer.send(PubAckPacket(9), PubCompPacket(9)) == []
    assert peer.send(PubRecPacket(9)) == []
    assert peer.received() == [PubRelPacket(9, 0x92)]


def test_outbound_topic_aliases_lru() -> None:
    peer = Peer(5).connected(properties=Properties(topic_alias_maximum=2))
    server = peer.server
    for topic in ("a/1", "a/1", "b/2", "c/3", "a/1", "c/3"):
        server.send_publish(topic, b"")
    raw = peer.received()
    got = [(p.topic, p.properties.topic_alias) for p in raw]  # type: ignore[union-attr]
    assert got == [("a/1", 1), ("", 1), ("b/2", 2), ("c/3", 1), ("a/1", 2), ("", 1)]


def test_outbound_maximum_packet_size() -> None:
    peer = Peer(5).connected(properties=Properties(maximum_packet_size=64))
    server = peer.server
    assert server.send_publish("t", b"x" * 100, 1) is SendResult.DROPPED_TOO_LARGE
    assert server.send_publish("t", b"x" * 10, 1) is SendResult.SENT
    assert server.session is not None and len(server.session.inflight) == 1
    assert len(peer.received()) == 1
    # reason strings are dropped rather than exceeding the client's limit
    peer.send(PublishPacket("t", b"", 1, packet_id=1))
    server.ack_publish(1, 0x80, reason_string="r" * 100)
    assert peer.received() == [PubAckPacket(1, 0x80)]


def test_request_problem_information_zero_strips_reason_strings() -> None:
    peer = Peer(5).connected(properties=Properties(request_problem_information=0))
    peer.send(PublishPacket("t", b"", 1, packet_id=1))
    peer.server.ack_publish(1, 0x80, reason_string="why")
    assert peer.received() == [PubAckPacket(1, 0x80)]


def test_send_publish_before_accept_and_after_close() -> None:
    peer = Peer(5)
    peer.connect()
    with pytest.raises(LocalProtocolError):
        peer.server.send_publish("t", b"")
    peer.server.accept()
    peer.server.disconnect()
    assert peer.server.send_publish("t", b"") is SendResult.DROPPED_NOT_CONNECTED
    assert peer.server.send_publish("t", b"", 1) is SendResult.QUEUED


# disconnect, keep alive, auth -----------------------------------------------------------------
def test_disconnect_will_and_session_expiry_rules() -> None:
    peer = Peer(5).connected(properties=Properties(session_expiry_interval=10))
    [event] = peer.send(DisconnectPacket(0, Properties(session_expiry_interval=0)))
    assert event == Disconnect(0, 0) and event.discard_will
    assert peer.server.session is not None and peer.server.session.session_expiry_interval == 0
    peer = Peer(5).connected()
    [event] = peer.send(DisconnectPacket(4))
    assert isinstance(event, Disconnect) and not event.discard_will
    peer = Peer(5).connected()
    events = peer.send(DisconnectPacket(0, Properties(session_expiry_interval=5)))
    assert violation(events).reason_code == 0x82
    peer = Peer(5).connected()
    assert violation(peer.send(DisconnectPacket(0x8E))).reason_code == 0x82  # server-only code


def test_server_disconnect() -> None:
    peer = Peer(5).connected()
    peer.server.disconnect(0x8B, "bye", server_reference="other")
    assert peer.received() == [DisconnectPacket(0x8B, Properties(reason_string="bye", server_reference="other"))]
    assert peer.server.should_close
    peer = Peer(4).connected()
    peer.server.disconnect(0x8B)
    assert peer.received() == [] and peer.server.should_close
    peer = Peer(5).connected()
    with pytest.raises(LocalProtocolError):
        peer.server.disconnect(0x01)


def test_keepalive() -> None:
    peer = Peer(5)
    peer.connect(keepalive=10)
    assert peer.server.keepalive_timeout() == 15.0
    peer.server.accept()
    peer.server.keepalive_expired()
    assert violation(peer.server.events_received()).reason_code == 0x8D
    assert peer.received()[-1] == DisconnectPacket(0x8D, Properties(reason_string="keep alive timeout"))
    peer = Peer(5, ServerOptions(server_keep_alive=30))
    peer.connect(keepalive=0)
    assert peer.server.keepalive_timeout() is None
    peer.server.accept()
    assert peer.server.keepalive_timeout() == 45.0
    [connack] = peer.received()
    assert isinstance(connack, ConnackPacket) and connack.properties.server_keep_alive == 30
    peer = Peer(4).connected()
    peer.server.keepalive_expired()
    assert peer.received() == [] and peer.server.should_close
    peer = Peer(5)
    peer.connect(properties=Properties(authentication_method="SCRAM"))
    peer.server.keepalive_expired()  # stuck in enhanced authentication
    assert violation(peer.server.events_received()).reason_code == 0x8D
    assert peer.received() == [] and peer.server.should_close


def test_enhanced_authentication() -> None:
    peer = Peer(5)
    [event] = peer.connect(properties=Properties(authentication_method="SCRAM", authentication_data=b"c1"))
    assert isinstance(event, Connect) and event.authentication_data == b"c1"
    peer.server.send_auth(0x18, data=b"s1")
    assert peer.received() == [AuthPacket(0x18, Properties(authentication_method="SCRAM", authentication_data=b"s1"))]
    [auth] = peer.send(AuthPacket(0x18, Properties(authentication_method="SCRAM", authentication_data=b"c2")))
    assert auth == Auth(0x18, "SCRAM", b"c2")
    peer.server.accept(authentication_data=b"s2")
    [connack] = peer.received()
    assert isinstance(connack, ConnackPacket)
    assert connack.properties.authentication_method == "SCRAM"
    assert connack.properties.authentication_data == b"s2"
    [reauth] = peer.send(AuthPacket(0x19, Properties(authentication_method="SCRAM")))
    assert isinstance(reauth, Auth) and reauth.reason_code == 0x19
    peer.server.send_auth(0)
    assert peer.received() == [AuthPacket(0, Properties(authentication_method="SCRAM"))]
    events = peer.send(AuthPacket(0x19, Properties(authentication_method="OTHER")))
    assert violation(events).reason_code == 0x82


def test_publish_during_enhanced_authentication_is_an_error() -> None:
    peer = Peer(5)
    peer.connect(properties=Properties(authentication_method="SCRAM"))
    events = peer.send(PublishPacket("t", b""))
    assert violation(events).reason_code == 0x82
    [connack] = peer.received()
    assert isinstance(connack, ConnackPacket) and connack.reason_code == 0x82


def test_auth_without_method_in_connect() -> None:
    peer = Peer(5).connected()
    events = peer.send(AuthPacket(0x19, Properties(authentication_method="SCRAM")))
    assert violation(events).reason_code == 0x82


def test_receive_eof_and_unknown_acks_after_close() -> None:
    peer = Peer(5).connected()
    peer.send(PublishPacket("t", b"", 1, packet_id=1))
    peer.server.receive_eof()
    assert peer.server.should_close
    peer.server.ack_publish(1)  # the commit finished after the client left: harmless
    assert peer.received() == []
