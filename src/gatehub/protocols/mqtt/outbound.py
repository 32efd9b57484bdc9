"""What a server connection sends with packet ids: outbound messages (the client's receive
window, the session queue, topic aliases towards the client, its Maximum Packet Size, resending on
session resume) and the acknowledgements of inbound messages (in arrival order, once committed).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from gatehub.errors import LocalProtocolError

from .encode import encode_packet, encode_publish
from .events import Event, PubAckReceived
from .packets import (
    ConnackPacket,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
)
from .properties import EMPTY_PROPERTIES, Properties, PropertyId
from .reason_codes import MQTT_5
from .session import OutboundMessage, SendResult, SessionState
from .state import State

if TYPE_CHECKING:
    from .options import ServerOptions

_STRIP_ON_PUBLISH = (PropertyId.TOPIC_ALIAS, PropertyId.SUBSCRIPTION_IDENTIFIER)
# packets that may carry reason strings / user properties even if the client asked not to
_ALWAYS_INFORM = (ConnackPacket, DisconnectPacket, PublishPacket)
_PLAIN_ACK = {1: b"\x40\x02", 2: b"\x50\x02"}
#: reason code of the PubAckReceived reported for a queued message that expired before it went
EXPIRED_REASON = 0x80
#: reason code of the PubAckReceived reported for a queued message dropped at the queue's bound
#: (drop_oldest), and of the DISCONNECT that ends a session at it (disconnect): Quota exceeded
QUOTA_EXCEEDED = 0x97


def remaining_expiry(props: Properties, expires_at: float, now: float | None = None) -> Properties | None:
    """``props`` with the Message Expiry Interval set to what is left until ``expires_at`` (whole
    seconds, rounded up: MQTT 5 3.3.2.3.3), or None when the deadline has passed."""
    left = expires_at - (time.monotonic() if now is None else now)
    if left <= 0:
        return None
    return props.replace(message_expiry_interval=math.ceil(left))


class OutboundMixin:
    """The outbound half of :class:`~gatehub.protocols.mqtt.connection.ServerConnection`."""

    __slots__ = ()

    version: int | None
    options: ServerOptions
    session: SessionState | None
    _output_paused: bool
    _out: list[bytes]
    _events: list[Event]
    _client_receive_max: int
    _client_max_packet: int
    _alias_out_max: int
    _alias_out: OrderedDict[str, int]
    _problem_info: bool
    _inbound: dict[int, int]
    _inbound_order: deque[int]
    _acked: dict[int, tuple[int, str | None]]
    state: State

    def _send(self, packet: Packet, version: int | None = None) -> bool:
        """Encode and queue a control packet within the client's Maximum Packet Size.

        Reason string and user properties are dropped when the client asked for no problem
        information or when they would make the packet too large; a packet still too large is
        discarded (False), as the spec says.
        """
        version = version or self.version or 4
        props: Properties = getattr(packet, "properties", EMPTY_PROPERTIES)
        if props and version == MQTT_5 and not self._problem_info and not isinstance(packet, _ALWAYS_INFORM):
            props = props.without(PropertyId.REASON_STRING, PropertyId.USER_PROPERTY)
            packet.properties = props  # type: ignore[union-attr]
        data = encode_packet(packet, version)
        if len(data) > self._client_max_packet and props:
            packet.properties = props.without(PropertyId.REASON_STRING, PropertyId.USER_PROPERTY)  # type: ignore[union-attr]
            data = encode_packet(packet, version)
        if len(data) > self._client_max_packet:
            return False
        self._out.append(data)
        return True

    # outbound messages ------------------------------------------------------------------------
    def send_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties = EMPTY_PROPERTIES,
        subscription_identifiers: tuple[int, ...] = (),
        token: object = None,
        expires_at: float = 0.0,
    ) -> SendResult:
        """Send a message to the client, or queue it.

        ``expires_at`` (a :func:`time.monotonic` deadline, 0.0 for none) is the end of the
        message's Message Expiry Interval: whenever the message is sent, the interval in it is what
        is left, and a message whose deadline passed before it was sent is dropped
        (``DROPPED_EXPIRED``, or ``PubAckReceived`` with :data:`EXPIRED_REASON` for one that
        waited in the queue). A message already sent and unacknowledged is still sent again on
        session resume (MQTT 5 4.4: its onward delivery had started), with an interval of 0 if its
        deadline has passed.

        QoS 1/2 messages beyond the client's Receive Maximum wait in the session queue (bounded:
        ``DROPPED_QUEUE_FULL`` beyond). A message above the client's Maximum Packet Size is
        discarded (``DROPPED_TOO_LARGE``); one that was queued and is found too large later is
        reported as ``PubAckReceived`` with reason code 0x95. Without a connection, QoS 1/2
        messages are queued in the session and QoS 0 ones dropped.
        """
        if properties and (properties.topic_alias is not None or properties.subscription_identifiers):
            properties = properties.without(*_STRIP_ON_PUBLISH)
        if self.state is not State.CONNECTED:
            session = self.session
            if self.state is not State.CLOSED:
                raise LocalProtocolError("send_publish() before accept()")
            if not qos or session is None:
                return SendResult.DROPPED_NOT_CONNECTED
            msg = OutboundMessage(topic, payload, qos, retain, properties, subscription_identifiers, token)
            msg.expires_at = expires_at
            return SendResult.QUEUED if session.enqueue(msg) else SendResult.DROPPED_QUEUE_FULL
        if not qos:
            if expires_at:
                left = remaining_expiry(properties, expires_at)
                if left is None:
                    return SendResult.DROPPED_EXPIRED
                properties = left
            data = self._encode_publish(topic, payload, 0, retain, False, 0, properties, subscription_identifiers)
            if data is None:
                return SendResult.DROPPED_TOO_LARGE
            self._out.append(data)
            return SendResult.SENT
        session = self.session
        assert session is not None
        msg = OutboundMessage(topic, payload, qos, retain, properties, subscription_identifiers, token)
        if expires_at:
            msg.expires_at = expires_at
        if session.queue or len(session.inflight) >= self._client_receive_max or self._output_paused:
            return self._enqueue(session, msg)
        return self._transmit(msg)

    def _enqueue(self, session: SessionState, msg: OutboundMessage) -> SendResult:
        """Queue behind the window; at the queue's bound the overflow policy decides."""
        if not session.full_for(msg):
            session.enqueue(msg)
            return SendResult.QUEUED
        if session.drop_oldest:
            evicted: list[OutboundMessage] = []
            session.enqueue(msg, evicted)
            for old in evicted:
                if old.token is not None:  # whoever waits for its acknowledgement hears it
                    self._events.append(PubAckReceived(0, QUOTA_EXCEEDED, old))
            return SendResult.QUEUED
        if self.options.queue_overflow != "disconnect":  # drop_newest
            session.count_dropped(msg)
            return SendResult.DROPPED_QUEUE_FULL
        # disconnect: the message is refused and the connection ends (DISCONNECT 0x97 on MQTT 5).
        # A session that ends with its connection loses what it holds: counted as dropped too.
        session.count_dropped(msg)
        if not session.session_expiry_interval:
            for old in (*session.inflight.values(), *session.queue):
                session.count_dropped(old)
            session.inflight.clear()
            session.queue.clear()
            session.queued_bytes = 0
        if self.version == MQTT_5:
            self._send(DisconnectPacket(QUOTA_EXCEEDED, Properties(reason_string="session queue full")))
        self._closed_by_server()
        return SendResult.DROPPED_QUEUE_FULL

    def _closed_by_server(self) -> None:
        raise NotImplementedError

    def _transmit(self, msg: OutboundMessage) -> SendResult:
        session = self.session
        assert session is not None
        props = msg.properties
        if msg.expires_at:
            left = remaining_expiry(props, msg.expires_at)
            if left is None:
                return SendResult.DROPPED_EXPIRED
            props = left
        pid = session.allocate_packet_id()
        data = self._encode_publish(
            msg.topic,
            msg.payload,
            msg.qos,
            msg.retain,
            False,
            pid,
            props,
            msg.subscription_identifiers,
        )
        if data is None:
            return SendResult.DROPPED_TOO_LARGE
        msg.packet_id = pid
        msg.released = False
        session.inflight[pid] = msg
        self._out.append(data)
        return SendResult.SENT

    def _pump(self) -> None:
        """Move queued messages into the receive window while it has room."""
        session = self.session
        if session is None or self.state is not State.CONNECTED:
            return
        queue = session.queue
        while queue and len(session.inflight) < self._client_receive_max and not self._output_paused:
            msg = session.dequeue()
            if msg.qos:
                res = self._transmit(msg)
            else:
                props: Properties | None = msg.properties
                if msg.expires_at:
                    props = remaining_expiry(msg.properties, msg.expires_at)
                if props is None:
                    res = SendResult.DROPPED_EXPIRED
                else:
                    data = self._encode_publish(
                        msg.topic,
                        msg.payload,
                        0,
                        msg.retain,
                        False,
                        0,
                        props,
                        msg.subscription_identifiers,
                    )
                    res = SendResult.DROPPED_TOO_LARGE if data is None else SendResult.SENT
                    if data is not None:
                        self._out.append(data)
            if res is SendResult.DROPPED_EXPIRED:
                self._events.append(PubAckReceived(0, EXPIRED_REASON, msg))
            elif res is not SendResult.SENT:
                self._events.append(PubAckReceived(0, 0x95, msg))

    def _resend_inflight(self) -> None:
        session = self.session
        assert session is not None
        for pid, msg in list(session.inflight.items()):
            if msg.released:
                self._send(PubRelPacket(pid))
                continue
            props = msg.properties
            if msg.expires_at:  # its delivery had started: sent again, with what is left (maybe 0)
                props = remaining_expiry(props, msg.expires_at) or props.replace(message_expiry_interval=0)
            data = self._encode_publish(
                msg.topic,
                msg.payload,
                msg.qos,
                msg.retain,
                True,
                pid,
                props,
                msg.subscription_identifiers,
            )
            if data is None:
                del session.inflight[pid]
                self._events.append(PubAckReceived(pid, 0x95, msg))
            else:
                self._out.append(data)

    def _encode_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        pid: int,
        props: Properties,
        sids: tuple[int, ...],
    ) -> bytes | None:
        version = self.version or 4
        limit = self._client_max_packet
        if self._alias_out_max:
            aliases = self._alias_out
            alias = aliases.get(topic)
            if alias is not None:
                data = encode_publish("", payload, qos, retain, dup, pid, version, props, alias, sids)
                if len(data) > limit:
                    return None
                aliases.move_to_end(topic)
                return data
            if len(aliases) < self._alias_out_max:
                alias = len(aliases) + 1
            else:
                alias = next(iter(aliases.values()))
            data = encode_publish(topic, payload, qos, retain, dup, pid, version, props, alias, sids)
            if len(data) > limit:
                return None
            if len(aliases) >= self._alias_out_max:
                aliases.popitem(last=False)
            aliases[topic] = alias
            return data
        data = encode_publish(topic, payload, qos, retain, dup, pid, version, props, 0, sids)
        return None if len(data) > limit else data

    def _on_puback(self, packet: PubAckPacket) -> None:
        session = self.session
        assert session is not None
        msg = session.inflight.get(packet.packet_id)
        if msg is not None and msg.qos == 1:
            del session.inflight[packet.packet_id]
            self._events.append(PubAckReceived(packet.packet_id, packet.reason_code, msg))
            self._pump()

    def _on_pubrec(self, packet: PubRecPacket) -> None:
        session = self.session
        assert session is not None
        pid = packet.packet_id
        msg = session.inflight.get(pid)
        if msg is None or msg.qos != 2:
            if self.version == MQTT_5:
                self._send(PubRelPacket(pid, 0x92))
            return
        if packet.reason_code >= 0x80:
            del session.inflight[pid]
            self._events.append(PubAckReceived(pid, packet.reason_code, msg))
            self._pump()
            return
        msg.released = True
        self._send(PubRelPacket(pid))

    def _on_pubcomp(self, packet: PubCompPacket) -> None:
        session = self.session
        assert session is not None
        msg = session.inflight.get(packet.packet_id)
        if msg is not None and msg.qos == 2 and msg.released:
            del session.inflight[packet.packet_id]
            self._events.append(PubAckReceived(packet.packet_id, packet.reason_code, msg))
            self._pump()

    def ack_publish(self, packet_id: int, reason_code: int = 0, *, reason_string: str | None = None) -> None:
        """Acknowledge an inbound QoS 1 (PUBACK) or QoS 2 (PUBREC) message once it is committed.

        Acknowledgements go out in the order the messages arrived, as the spec requires; an
        early one waits for those before it. A no-op once the connection is closed.
        """
        if self.state is State.CLOSED:
            return
        if packet_id not in self._inbound or packet_id in self._acked:
            raise LocalProtocolError(f"no unacknowledged inbound message with packet id {packet_id}")
        self._acked[packet_id] = (reason_code, reason_string)
        self._flush_acks()

    def _flush_acks(self) -> None:
        order = self._inbound_order
        acked = self._acked
        session = self.session
        assert session is not None
        v5 = self.version == MQTT_5
        while order and order[0] in acked:
            pid = order.popleft()
            code, reason = acked.pop(pid)
            qos = self._inbound.pop(pid)
            if qos == 2 and code < 0x80:
                session.inbound_qos2.add(pid)
            if not code or not v5:  # the common case: four fixed bytes
                self._out.append(_PLAIN_ACK[qos] + pid.to_bytes(2, "big"))
                continue
            props = Properties(reason_string=reason) if reason else EMPTY_PROPERTIES
            self._send(PubAckPacket(pid, code, props) if qos == 1 else PubRecPacket(pid, code, props))

    def _on_pubrel(self, packet: PubRelPacket) -> None:
        session = self.session
        assert session is not None
        pid = packet.packet_id
        if pid in session.inbound_qos2:
            session.inbound_qos2.discard(pid)
            self._send(PubCompPacket(pid))
        else:
            self._send(PubCompPacket(pid, 0x92 if self.version == MQTT_5 else 0))
