"""Packet types, MQTT 5 reason codes, MQTT 3.1.1 CONNACK return codes and which code fits where."""

from __future__ import annotations

from enum import IntEnum

MQTT_311 = 4
MQTT_5 = 5


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(IntEnum):
    """Every MQTT 5 reason code (section 2.4). 0x00 has three names in the spec."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    # aliases the spec uses for 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00


class ConnackReturnCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (section 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


_RC = ReasonCode

CONNACK_CODES = frozenset(
    {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C}
    | {0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
)
PUBACK_CODES = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
PUBREC_CODES = PUBACK_CODES
PUBREL_CODES = frozenset({0x00, 0x92})
PUBCOMP_CODES = PUBREL_CODES
SUBACK_CODES = frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2})
SUBACK_CODES_V311 = frozenset({0x00, 0x01, 0x02, 0x80})
UNSUBACK_CODES = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
DISCONNECT_CODES = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90}
    | {0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
)
#: DISCONNECT reason codes a client may send (the rest are server-only).
CLIENT_DISCONNECT_CODES = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99}
)
AUTH_CODES = frozenset({0x00, 0x18, 0x19})

_TO_V311: dict[int, ConnackReturnCode] = {
    _RC.UNSUPPORTED_PROTOCOL_VERSION: ConnackReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    _RC.CLIENT_IDENTIFIER_NOT_VALID: ConnackReturnCode.IDENTIFIER_REJECTED,
    _RC.BAD_USER_NAME_OR_PASSWORD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    _RC.BAD_AUTHENTICATION_METHOD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    _RC.NOT_AUTHORIZED: ConnackReturnCode.NOT_AUTHORIZED,
    _RC.BANNED: ConnackReturnCode.NOT_AUTHORIZED,
}
_TO_V5: dict[int, ReasonCode] = {
    ConnackReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: _RC.UNSUPPORTED_PROTOCOL_VERSION,
    ConnackReturnCode.IDENTIFIER_REJECTED: _RC.CLIENT_IDENTIFIER_NOT_VALID,
    ConnackReturnCode.SERVER_UNAVAILABLE: _RC.SERVER_UNAVAILABLE,
    ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD: _RC.BAD_USER_NAME_OR_PASSWORD,
    ConnackReturnCode.NOT_AUTHORIZED: _RC.NOT_AUTHORIZED,
}


def connack_code_for(version: int, code: int) -> int:
    """Translate a refusal code to the CONNACK code of ``version``.

    Accepts MQTT 5 reason codes (>= 0x80) and MQTT 3.1.1 return codes (1-5) alike, since the
    two ranges do not overlap; every other MQTT 5 failure becomes "server unavailable" on 3.1.1.
    """
    if version >= MQTT_5:
        return int(_TO_V5.get(code, code)) if 0 < code < 0x80 else code
    if 0 <= code <= 5:
        return code
    return int(_TO_V311.get(code, ConnackReturnCode.SERVER_UNAVAILABLE))
