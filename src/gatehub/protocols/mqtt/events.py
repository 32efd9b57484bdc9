"""Events a :class:`~gatehub.protocols.mqtt.connection.ServerConnection` reports to its transport.

Inbound PUBLISH is reported as the decoded :class:`~gatehub.protocols.mqtt.packets.PublishPacket`
itself (alias :data:`Publish`), with its topic resolved from any topic alias and the alias removed
from its properties: no extra object on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from .packets import PublishPacket, Subscription, Will
from .properties import EMPTY_PROPERTIES, Properties
from .session import OutboundMessage

SESSION_NEVER_EXPIRES = 0xFFFFFFFF

Publish = PublishPacket


def discards_will(reason_code: int) -> bool:
    """Whether a client DISCONNECT with ``reason_code`` discards the will (MQTT 3.14.2.1).

    0x00 (normal disconnection) discards it; 0x04 (disconnect with will message) and every error
    code keep it. On MQTT 3.1.1 every DISCONNECT carries 0x00 and so discards it.
    """
    return reason_code == 0


@dataclass(slots=True)
class Connect:
    """A CONNECT, with MQTT 5 properties flattened and their defaults filled in.

    ``client_id`` is the one the session uses: the server-assigned one when the client sent an
    empty id (``client_id_assigned``). On MQTT 3.1.1, ``session_expiry_interval`` is 0 for a
    clean session and :data:`SESSION_NEVER_EXPIRES` otherwise, so both versions read alike.
    """

    client_id: str
    protocol_version: int
    clean_start: bool
    keepalive: int
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    session_expiry_interval: int = 0
    receive_maximum: int = 65535
    maximum_packet_size: int | None = None
    topic_alias_maximum: int = 0
    request_response_information: bool = False
    request_problem_information: bool = True
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    client_id_assigned: bool = False
    properties: Properties = EMPTY_PROPERTIES

    @property
    def will_delay_interval(self) -> int:
        if self.will is None:
            return 0
        return self.will.properties.will_delay_interval or 0


@dataclass(slots=True)
class Subscribe:
    """Answer with :meth:`ServerConnection.send_suback` (one reason code per subscription)."""

    packet_id: int
    subscriptions: list[Subscription]
    subscription_identifier: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Unsubscribe:
    """Answer with :meth:`ServerConnection.send_unsuback`."""

    packet_id: int
    topic_filters: list[str]
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class PubAckReceived:
    """An outbound QoS 1/2 message is done: PUBACK, PUBCOMP, or a PUBREC with an error code.

    Its slot in the client's receive window is free again.
    """

    packet_id: int
    reason_code: int
    message: OutboundMessage

    @property
    def token(self) -> object:
        return self.message.token


@dataclass(slots=True)
class Disconnect:
    """The client said goodbye; the connection is to be closed.

    ``session_expiry_interval`` is the new interval if the client changed it, else ``None``.
    """

    reason_code: int = 0
    session_expiry_interval: int | None = None
    reason_string: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()

    @property
    def discard_will(self) -> bool:
        return discards_will(self.reason_code)


@dataclass(slots=True)
class Auth:
    """An AUTH from the client (enhanced authentication, 4.12): continue (0x18) or re-auth (0x19)."""

    reason_code: int
    method: str
    data: bytes | None = None
    reason_string: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class ProtocolViolation:
    """The client broke the protocol. What the spec asks for (a DISCONNECT or CONNACK with
    ``reason_code`` on MQTT 5, nothing on 3.1.1 except CONNACK 0x01/0x02) is already queued;
    flush ``data_to_send()`` and close. The will is to be published (not a normal disconnect).
    """

    reason_code: int
    message: str


Event = Connect | Publish | Subscribe | Unsubscribe | PubAckReceived | Disconnect | Auth | ProtocolViolation
