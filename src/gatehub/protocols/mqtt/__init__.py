"""MQTT 3.1.1 and 5.0, server side, sans I/O: bytes in, events and bytes out.

Connection (what a transport drives)::

    conn = ServerConnection(ServerOptions(...))
    conn.receive_data(data)            # bytes from the socket
    for event in conn.events_received():
        ...                            # Connect, Publish, Subscribe, Unsubscribe, PubAckReceived,
                                       # Disconnect, Auth, ProtocolViolation
    sock.write(conn.data_to_send())
    if conn.should_close: close the socket

Acting on events: ``accept(session=..., ...)`` / ``refuse(reason_code)`` answer a Connect;
``ack_publish(packet_id, reason_code)`` sends the PUBACK / PUBREC of an inbound QoS 1/2 message
once it is durable; ``send_suback`` / ``send_unsuback``; ``send_publish(topic, payload, qos, ...)``
(receive window, queue, topic aliases, maximum packet size); ``send_auth``; ``disconnect``;
``keepalive_timeout()`` / ``keepalive_expired()``; ``receive_eof()``.

Session state that survives a connection: :class:`SessionState` (adopted by ``accept``).

Codec: :class:`Decoder` (incremental), :func:`decode_packet`, :func:`encode_packet`,
:func:`encode_publish`, the packet dataclasses, :class:`Properties`, :class:`ReasonCode`.

Topics: :func:`is_valid_topic_name`, :func:`is_valid_topic_filter`, :func:`topic_filter_error`,
:func:`topic_matches`, :func:`parse_shared`, :class:`SubscriptionTrie`.

Errors: the codec raises :class:`gatehub.errors.RemoteProtocolError` (``reason_code`` set) for
what the peer sent and :class:`gatehub.errors.LocalProtocolError` for what we tried to send;
:class:`ServerConnection` turns the former into a :class:`ProtocolViolation` event.
"""

from __future__ import annotations

from .connection import ServerConnection
from .decode import Decoder, decode_packet
from .encode import encode_packet, encode_publish
from .events import (
    SESSION_NEVER_EXPIRES,
    Auth,
    Connect,
    Disconnect,
    Event,
    ProtocolViolation,
    PubAckReceived,
    Publish,
    Subscribe,
    Unsubscribe,
    discards_will,
)
from .options import ServerOptions
from .packets import (
    AuthPacket,
    ConnackPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubackPacket,
    SubscribePacket,
    Subscription,
    UnsubackPacket,
    UnsubscribePacket,
    Will,
)
from .properties import EMPTY_PROPERTIES, Properties, PropertyId
from .reason_codes import MQTT_5, MQTT_311, ConnackReturnCode, PacketType, ReasonCode
from .session import OutboundMessage, QueueStats, SendResult, SessionState
from .state import State
from .topics import (
    is_valid_topic_filter,
    is_valid_topic_name,
    parse_shared,
    topic_filter_error,
    topic_matches,
)
from .trie import Matches, SubscriptionTrie
from .wire import MAX_PACKET_SIZE, UnsupportedProtocolVersion

__all__ = [
    "EMPTY_PROPERTIES",
    "MAX_PACKET_SIZE",
    "MQTT_5",
    "MQTT_311",
    "SESSION_NEVER_EXPIRES",
    "Auth",
    "AuthPacket",
    "ConnackPacket",
    "ConnackReturnCode",
    "Connect",
    "ConnectPacket",
    "Decoder",
    "Disconnect",
    "DisconnectPacket",
    "Event",
    "Matches",
    "OutboundMessage",
    "Packet",
    "PacketType",
    "PingReqPacket",
    "PingRespPacket",
    "Properties",
    "PropertyId",
    "ProtocolViolation",
    "PubAckPacket",
    "PubAckReceived",
    "PubCompPacket",
    "PubRecPacket",
    "PubRelPacket",
    "Publish",
    "PublishPacket",
    "QueueStats",
    "ReasonCode",
    "SendResult",
    "ServerConnection",
    "ServerOptions",
    "SessionState",
    "State",
    "SubackPacket",
    "Subscribe",
    "SubscribePacket",
    "Subscription",
    "SubscriptionTrie",
    "UnsubackPacket",
    "Unsubscribe",
    "UnsubscribePacket",
    "UnsupportedProtocolVersion",
    "Will",
    "decode_packet",
    "discards_will",
    "encode_packet",
    "encode_publish",
    "is_valid_topic_filter",
    "is_valid_topic_name",
    "parse_shared",
    "topic_filter_error",
    "topic_matches",
]
