"""The MQTT control packets as slotted dataclasses, shared by MQTT 3.1.1 and 5.0.

Fields that MQTT 3.1.1 lacks (reason codes on acks, properties) keep their defaults there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .properties import EMPTY_PROPERTIES, Properties
from .reason_codes import PacketType


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class ConnectPacket:
    type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str = ""
    protocol_level: int = 4
    clean_start: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = EMPTY_PROPERTIES
    protocol_name: str = "MQTT"


@dataclass(slots=True)
class ConnackPacket:
    type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class PublishPacket:
    """A PUBLISH. As an inbound event its ``topic`` is already resolved from a topic alias."""

    type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class _Ack:
    packet_id: int
    reason_code: int = 0
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class PubAckPacket(_Ack):
    type: ClassVar[PacketType] = PacketType.PUBACK


@dataclass(slots=True)
class PubRecPacket(_Ack):
    type: ClassVar[PacketType] = PacketType.PUBREC


@dataclass(slots=True)
class PubRelPacket(_Ack):
    type: ClassVar[PacketType] = PacketType.PUBREL


@dataclass(slots=True)
class PubCompPacket(_Ack):
    type: ClassVar[PacketType] = PacketType.PUBCOMP


@dataclass(slots=True, frozen=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (MQTT 5 options are False/0 on 3.1.1)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0

    @property
    def options_byte(self) -> int:
        return (
            self.qos
            | (4 if self.no_local else 0)
            | (8 if self.retain_as_published else 0)
            | (self.retain_handling << 4)
        )


@dataclass(slots=True)
class SubscribePacket:
    type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: list[Subscription] = field(default_factory=list)
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class SubackPacket:
    type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class UnsubscribePacket:
    type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: list[str] = field(default_factory=list)
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class UnsubackPacket:
    """UNSUBACK; ``reason_codes`` is empty on MQTT 3.1.1 (which has none)."""

    type: ClassVar[PacketType] = PacketType.UNSUBACK
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class PingReqPacket:
    type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(slots=True)
class PingRespPacket:
    type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(slots=True)
class DisconnectPacket:
    type: ClassVar[PacketType] = PacketType.DISCONNECT
    reason_code: int = 0
    properties: Properties = EMPTY_PROPERTIES


@dataclass(slots=True)
class AuthPacket:
    type: ClassVar[PacketType] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties = EMPTY_PROPERTIES


Packet = (
    ConnectPacket
    | ConnackPacket
    | PublishPacket
    | PubAckPacket
    | PubRecPacket
    | PubRelPacket
    | PubCompPacket
    | SubscribePacket
    | SubackPacket
    | UnsubscribePacket
    | UnsubackPacket
    | PingReqPacket
    | PingRespPacket
    | DisconnectPacket
    | AuthPacket
)
