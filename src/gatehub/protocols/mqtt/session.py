"""Session state that outlives a network connection (MQTT 4.1).

A :class:`SessionState` holds what must survive a reconnect: outbound QoS 1/2 messages sent and
not yet acknowledged (in sending order), messages queued for later, the ids of inbound QoS 2
messages whose PUBREL has not come, and the packet id counter. A new
:class:`~gatehub.protocols.mqtt.connection.ServerConnection` adopts it in ``accept(session=...)``
and resends the unacknowledged messages. While no connection serves the session, the broker queues
messages for it with :meth:`SessionState.enqueue`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from .properties import EMPTY_PROPERTIES, Properties

DEFAULT_MAX_QUEUED = 1000
DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024


@dataclass(slots=True, eq=False)
class QueueStats:
    """Counters that sessions share (a hub's totals): messages dropped, by QoS.

    QoS 0 is dropped by the transport (a slow reader); QoS 1/2 by a session queue at its bound.
    """

    dropped: list[int] = field(default_factory=lambda: [0, 0, 0])


def message_size(message: OutboundMessage) -> int:
    """What a queued message counts against a session's byte bound: its payload and topic."""
    return len(message.payload) + len(message.topic)


@dataclass(slots=True, eq=False)
class OutboundMessage:
    """A message on its way to the client.

    ``token`` is the caller's own reference (an RPC id, a store offset); it comes back in
    :class:`~gatehub.protocols.mqtt.events.PubAckReceived`. ``packet_id`` is assigned when the
    message enters the in-flight window; ``released`` is True once PUBREC came (QoS 2) and PUBREL
    went. ``expires_at`` is the absolute :func:`time.monotonic` deadline of a message that carries
    a Message Expiry Interval (MQTT 5 3.3.2.3.3), 0.0 (the default: no work at all) for the others;
    the interval sent is what is left of it, and a message past it is not sent unless it is
    already in flight (see :meth:`~gatehub.protocols.mqtt.connection.ServerConnection.send_publish`).
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = EMPTY_PROPERTIES
    subscription_identifiers: tuple[int, ...] = ()
    token: object = None
    packet_id: int = 0
    released: bool = False
    expires_at: float = 0.0


class SendResult(Enum):
    """What :meth:`ServerConnection.send_publish` did with a message."""

    SENT = "sent"
    QUEUED = "queued"  # waits for the client's receive window (or for a connection)
    DROPPED_TOO_LARGE = "dropped_too_large"  # above the client's Maximum Packet Size
    DROPPED_QUEUE_FULL = "dropped_queue_full"  # the session queue is at its bound
    DROPPED_NOT_CONNECTED = "dropped_not_connected"  # QoS 0 while no connection
    DROPPED_EXPIRED = "dropped_expired"  # its Message Expiry Interval passed before it could go

    @property
    def accepted(self) -> bool:
        return self is SendResult.SENT or self is SendResult.QUEUED


@dataclass(slots=True, eq=False)
class SessionState:
    client_id: str
    session_expiry_interval: int = 0
    max_queued: int = DEFAULT_MAX_QUEUED
    #: bound of the queue's bytes (payloads and topics); a queue always takes one message
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    #: at the bound: drop the oldest queued message (True) or refuse the new one (False)
    drop_oldest: bool = False
    stats: QueueStats | None = None
    queued_bytes: int = 0
    #: packet id -> message, in the order they were sent
    inflight: dict[int, OutboundMessage] = field(default_factory=dict)
    queue: deque[OutboundMessage] = field(default_factory=deque)
    #: inbound QoS 2 packet ids PUBREC'ed and awaiting PUBREL
    inbound_qos2: set[int] = field(default_factory=set)
    next_packet_id: int = 1
    #: messages refused because the queue was full (reported, never silent)
    dropped: int = 0

    def full_for(self, message: OutboundMessage) -> bool:
        """True if queueing ``message`` would go beyond a bound (count or bytes)."""
        queue = self.queue
        return bool(queue) and (
            len(queue) >= self.max_queued or self.queued_bytes + message_size(message) > self.max_queued_bytes
        )

    def enqueue(self, message: OutboundMessage, evicted: list[OutboundMessage] | None = None) -> bool:
        """Queue a message for later delivery, within both bounds. At a bound, with
        ``drop_oldest`` the oldest queued messages are dropped to make room (appended to
        ``evicted`` when given), otherwise the new one is refused (False). Every message dropped
        counts in ``dropped`` (and in ``stats``)."""
        if self.full_for(message):
            if not self.drop_oldest:
                self.count_dropped(message)
                return False
            while self.full_for(message):
                old = self.dequeue()
                self.count_dropped(old)
                if evicted is not None:
                    evicted.append(old)
        self.queue.append(message)
        self.queued_bytes += message_size(message)
        return True

    def dequeue(self) -> OutboundMessage:
        """The oldest queued message, taken out of the queue."""
        message = self.queue.popleft()
        self.queued_bytes -= message_size(message)
        return message

    def count_dropped(self, message: OutboundMessage) -> None:
        self.dropped += 1
        if self.stats is not None:
            self.stats.dropped[message.qos] += 1

    def allocate_packet_id(self) -> int:
        """A packet id not used by an in-flight message. The caller keeps the window < 65535."""
        pid = self.next_packet_id
        inflight = self.inflight
        while pid in inflight:
            pid = pid + 1 if pid < 0xFFFF else 1
        self.next_packet_id = pid + 1 if pid < 0xFFFF else 1
        return pid

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the client: in flight plus queued."""
        return len(self.inflight) + len(self.queue)
