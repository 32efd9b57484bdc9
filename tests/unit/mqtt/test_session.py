"""Session state across connections: redelivery with DUP, PUBREL resend, inbound QoS 2 ids."""

from __future__ import annotations

from gatehub.protocols.mqtt import (
    OutboundMessage,
    PubAckPacket,
    PubAckReceived,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SendResult,
    SessionState,
    discards_will,
)

from .helpers import Peer


def test_resume_resends_unacknowledged_with_dup_and_pubrel() -> None:
    first = Peer(5).connected("dev")
    server = first.server
    for i in range(3):
        assert server.send_publish("t", bytes([i]), 2 if i == 1 else 1, token=i) is SendResult.SENT
    first.received()
    first.send(PubRecPacket(2))  # QoS 2 message 2 reached PUBREL
    assert first.received() == [PubRelPacket(2)]
    first.send(PubAckPacket(1))
    server.receive_eof()
    session = server.session
    assert session is not None
    assert list(session.inflight) == [2, 3]
    assert server.send_publish("t", b"later", 1) is SendResult.QUEUED  # no connection: queued

    second = Peer(5)
    second.connect("dev", clean_start=False)
    second.server.accept(session=session)
    packets = second.received()
    assert packets[0].session_present  # type: ignore[union-attr]
    assert packets[1:] == [
        PubRelPacket(2),
        PublishPacket("t", b"\x02", 1, dup=True, packet_id=3),
        PublishPacket("t", b"later", 1, packet_id=4),
    ]
    [done] = second.send(PubCompPacket(2))
    assert isinstance(done, PubAckReceived) and done.token == 1


def test_inbound_qos2_ids_survive_reconnect() -> None:
    first = Peer(4).connected("dev")
    first.send(PublishPacket("t", b"x", 2, packet_id=9))
    first.server.ack_publish(9)
    assert first.received() == [PubRecPacket(9)]
    first.server.receive_eof()
    session = first.server.session
    assert session is not None and session.inbound_qos2 == {9}

    second = Peer(4)
    second.connect("dev", clean_start=False)
    second.server.accept(session=session)
    second.received()
    assert second.send(PublishPacket("t", b"x", 2, dup=True, packet_id=9)) == []  # not twice
    assert second.received() == [PubRecPacket(9)]
    second.send(PubRelPacket(9))
    assert second.received() == [PubCompPacket(9)]
    assert session.inbound_qos2 == set()


def test_resend_too_large_for_new_client_limit_is_reported() -> None:
    from gatehub.protocols.mqtt import Properties

    first = Peer(5).connected("dev")
    first.server.send_publish("t", b"x" * 200, 1, token="big")
    first.server.receive_eof()
    session = first.server.session
    assert session is not None
    second = Peer(5)
    second.connect("dev", clean_start=False, properties=Properties(maximum_packet_size=100))
    second.server.accept(session=session)
    [event] = second.server.events_received()
    assert isinstance(event, PubAckReceived) and event.reason_code == 0x95 and event.token == "big"
    assert session.inflight == {}


def test_session_queue_is_bounded_and_packet_ids_skip_inflight() -> None:
    session = SessionState("c", max_queued=2)
    assert session.enqueue(OutboundMessage("t", b"", 1))
    assert session.enqueue(OutboundMessage("t", b"", 1))
    assert not session.enqueue(OutboundMessage("t", b"", 1))
    assert session.dropped == 1 and session.pending == 2
    session.inflight = {1: OutboundMessage("t", b""), 2: OutboundMessage("t", b"")}
    assert session.allocate_packet_id() == 3
    session.next_packet_id = 0xFFFF
    assert session.allocate_packet_id() == 0xFFFF
    assert session.allocate_packet_id() == 3  # wraps past 1 and 2, which are in flight


def test_discards_will() -> None:
    assert discards_will(0x00)
    assert not discards_will(0x04)
    assert not discards_will(0x80)


def test_message_expiry_queued_inflight_and_remaining_interval() -> None:
    """MQTT 5 3.3.2.3.3: an expired queued message is not sent (its token hears 0x80); one in
    flight is sent again (its delivery had started) with interval 0; the interval sent is what is
    left; a message without a deadline is sent as given."""
    import time

    from gatehub.protocols.mqtt import Properties

    first = Peer(5).connected("dev", properties=Properties(receive_maximum=1))
    server = first.server
    now = time.monotonic()
    props = Properties(message_expiry_interval=10)
    # in flight (the window is 1), then unacknowledged when the connection drops
    assert server.send_publish("t", b"inflight", 1, properties=props, expires_at=now + 0.05) is SendResult.SENT
    [sent] = first.received()
    assert isinstance(sent, PublishPacket) and sent.properties.message_expiry_interval == 1
    assert server.send_publish("t", b"queued-expires", 1, properties=props, token="gone", expires_at=now + 0.05) is (
        SendResult.QUEUED
    )
    server.receive_eof()
    session = server.session
    assert session is not None
    # while offline
    assert server.send_publish("t", b"keeps", 1, properties=props, expires_at=now + 100) is SendResult.QUEUED
    assert server.send_publish("t", b"plain", 1, properties=props) is SendResult.QUEUED
    time.sleep(0.1)

    second = Peer(5)
    second.connect("dev", clean_start=False)
    second.server.accept(session=session)
    packets = second.received()[1:]
    assert [(p.payload, p.dup, p.properties.message_expiry_interval) for p in packets] == [  # type: ignore[union-attr]
        (b"inflight", True, 0),
        (b"keeps", False, 100),
        (b"plain", False, 10),
    ]
    expired = [e for e in second.server.events_received() if isinstance(e, PubAckReceived)]
    assert [(e.reason_code, e.token) for e in expired] == [(0x80, "gone")]
    # QoS 0 with a passed deadline is not sent; one in time carries what is left
    assert second.server.send_publish("t", b"q0", 0, properties=props, expires_at=now) is SendResult.DROPPED_EXPIRED
    left = time.monotonic() + 4.5
    assert second.server.send_publish("t", b"q0", 0, properties=props, expires_at=left) is SendResult.SENT
    [q0] = second.received()
    assert q0.properties.message_expiry_interval == 5  # type: ignore[union-attr]
