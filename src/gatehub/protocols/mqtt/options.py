"""What the server allows its clients; announced in the MQTT 5 CONNACK where the spec says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gatehub.errors import LocalProtocolError

from .properties import Properties
from .session import DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_BYTES, QueueStats, SessionState
from .wire import MAX_PACKET_SIZE

#: largest CONNECT (and, before it is accepted, any packet) taken from a client by default
DEFAULT_MAX_CONNECT_SIZE = 64 * 1024
#: QoS 1/2 messages in flight to a client that sets no Receive Maximum (3.1.1 has none)
DEFAULT_MAX_INFLIGHT = 20
#: what a connected session's queue does at a bound (see ``max_queued_messages``)
QUEUE_OVERFLOW = ("disconnect", "drop_oldest", "drop_newest")


def random_client_id() -> str:
    return "gatehub-" + uuid.uuid4().hex


@dataclass(slots=True, frozen=True)
class ServerOptions:
    #: largest packet accepted from a client; bigger ones end the connection with 0x95
    max_packet_size: int = MAX_PACKET_SIZE
    #: how many unacknowledged inbound QoS 1/2 messages a client may have (0x93 beyond)
    receive_maximum: int = 65535
    #: how many topic aliases a client may set (0 = none)
    topic_alias_maximum: int = 64
    #: at most this many topic aliases are used towards a client (also capped by the client)
    outbound_topic_alias_maximum: int = 64
    maximum_qos: int = 2
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    subscription_identifier_available: bool = True
    shared_subscription_available: bool = True
    #: overrides the client's keep alive (MQTT 5 Server Keep Alive) when set
    server_keep_alive: int | None = None
    #: cap on the session expiry interval a client may ask for
    max_session_expiry_interval: int | None = None
    #: bound of a session's queue of outbound messages waiting for the receive window
    max_queued_messages: int = DEFAULT_MAX_QUEUED
    #: bound of the bytes (payloads and topics) in that queue
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    #: a connected session's queue at a bound: "drop_newest" (the new message is refused),
    #: "drop_oldest" (the oldest queued is dropped) or "disconnect" (refused, and the connection
    #: ends: DISCONNECT 0x97 on MQTT 5); a session without a connection drops the oldest with
    #: "drop_oldest" and refuses the new message otherwise
    queue_overflow: str = "drop_newest"
    #: QoS 1/2 messages in flight towards a 3.1.1 client or an MQTT 5 one without Receive Maximum
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    #: largest packet taken before the CONNECT is accepted (0x95 beyond, checked on its header)
    max_connect_size: int = DEFAULT_MAX_CONNECT_SIZE
    #: the counters every session of these options adds its drops to (None: not counted)
    queue_stats: QueueStats | None = None
    #: answer PUBLISH with Payload Format Indicator 1 and non-UTF-8 payload with 0x99
    validate_payload_format: bool = True
    assign_client_id: Callable[[], str] = random_client_id

    def __post_init__(self) -> None:
        if not 0 < self.receive_maximum <= 0xFFFF:
            raise LocalProtocolError("receive_maximum must be 1..65535")
        if not 0 <= self.topic_alias_maximum <= 0xFFFF:
            raise LocalProtocolError("topic_alias_maximum must be 0..65535")
        if not 0 < self.max_packet_size <= MAX_PACKET_SIZE:
            raise LocalProtocolError("max_packet_size out of range")
        if not 0 < self.max_inflight <= 0xFFFF:
            raise LocalProtocolError("max_inflight must be 1..65535")
        if self.max_connect_size < 16 or self.max_queued_messages < 1 or self.max_queued_bytes < 1:
            raise LocalProtocolError("max_connect_size, max_queued_messages and max_queued_bytes must be positive")
        if self.queue_overflow not in QUEUE_OVERFLOW:
            raise LocalProtocolError(f"queue_overflow must be one of {QUEUE_OVERFLOW}")
        if self.maximum_qos not in (0, 1, 2):
            raise LocalProtocolError("maximum_qos must be 0, 1 or 2")
        if self.server_keep_alive is not None and not 0 <= self.server_keep_alive <= 0xFFFF:
            raise LocalProtocolError("server_keep_alive must be 0..65535")

    def new_session(self, client_id: str, session_expiry_interval: int = 0) -> SessionState:
        """A new session with this server's queue bounds and overflow policy."""
        return SessionState(
            client_id,
            session_expiry_interval,
            self.max_queued_messages,
            self.max_queued_bytes,
            drop_oldest=self.queue_overflow == "drop_oldest",
            stats=self.queue_stats,
        )

    def connack_properties(
        self,
        *,
        session_expiry_interval: int | None = None,
        assigned_client_identifier: str | None = None,
        authentication_method: str | None = None,
        authentication_data: bytes | None = None,
        response_information: str | None = None,
        reason_string: str | None = None,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> Properties:
        """CONNACK properties: the given ones plus every limit that differs from the default."""
        return Properties(
            session_expiry_interval=session_expiry_interval,
            assigned_client_identifier=assigned_client_identifier,
            server_keep_alive=self.server_keep_alive,
            authentication_method=authentication_method,
            authentication_data=authentication_data,
            response_information=response_information,
            reason_string=reason_string,
            receive_maximum=self.receive_maximum if self.receive_maximum < 0xFFFF else None,
            topic_alias_maximum=self.topic_alias_maximum or None,
            maximum_qos=self.maximum_qos if self.maximum_qos < 2 else None,
            retain_available=None if self.retain_available else 0,
            user_properties=user_properties,
            maximum_packet_size=self.max_packet_size if self.max_packet_size < MAX_PACKET_SIZE else None,
            wildcard_subscription_available=None if self.wildcard_subscription_available else 0,
            subscription_identifier_available=None if self.subscription_identifier_available else 0,
            shared_subscription_available=None if self.shared_subscription_available else 0,
        )
