"""What the server allows its clients; announced in the MQTT 5 CONNACK where the spec says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gatehub.errors import LocalProtocolError

from .properties import Properties
from .session import DEFAULT_MAX_QUEUED
from .wire import MAX_PACKET_SIZE


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
        if self.maximum_qos not in (0, 1, 2):
            raise LocalProtocolError("maximum_qos must be 0, 1 or 2")
        if self.server_keep_alive is not None and not 0 <= self.server_keep_alive <= 0xFFFF:
            raise LocalProtocolError("server_keep_alive must be 0..65535")

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
