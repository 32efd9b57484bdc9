"""MQTT 5 properties (section 2.2.2): identifiers, value types, where each is allowed, the codec.

:class:`Properties` is immutable: a small wrapper around a dict of the properties present, with a
typed accessor per property (``None`` when absent). Its wire encoding is computed once and cached,
which makes fan-out of one message to many subscribers cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from gatehub.errors import LocalProtocolError

from .reason_codes import PacketType
from .wire import (
    MAX_VARINT,
    encode_bin,
    encode_str,
    malformed,
    protocol_error,
    read_bin,
    read_str,
    read_varint,
    varint,
)


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class PropType(IntEnum):
    BYTE = 1
    U16 = 2
    U32 = 4
    VARINT = 5
    STRING = 6
    BINARY = 7
    PAIR = 8


P = PropertyId
_B, _U16, _U32, _VI, _S, _BIN, _PAIR = (
    PropType.BYTE,
    PropType.U16,
    PropType.U32,
    PropType.VARINT,
    PropType.STRING,
    PropType.BINARY,
    PropType.PAIR,
)

#: id -> (keyword name, value type)
SPEC: dict[int, tuple[str, PropType]] = {
    P.PAYLOAD_FORMAT_INDICATOR: ("payload_format_indicator", _B),
    P.MESSAGE_EXPIRY_INTERVAL: ("message_expiry_interval", _U32),
    P.CONTENT_TYPE: ("content_type", _S),
    P.RESPONSE_TOPIC: ("response_topic", _S),
    P.CORRELATION_DATA: ("correlation_data", _BIN),
    P.SUBSCRIPTION_IDENTIFIER: ("subscription_identifiers", _VI),
    P.SESSION_EXPIRY_INTERVAL: ("session_expiry_interval", _U32),
    P.ASSIGNED_CLIENT_IDENTIFIER: ("assigned_client_identifier", _S),
    P.SERVER_KEEP_ALIVE: ("server_keep_alive", _U16),
    P.AUTHENTICATION_METHOD: ("authentication_method", _S),
    P.AUTHENTICATION_DATA: ("authentication_data", _BIN),
    P.REQUEST_PROBLEM_INFORMATION: ("request_problem_information", _B),
    P.WILL_DELAY_INTERVAL: ("will_delay_interval", _U32),
    P.REQUEST_RESPONSE_INFORMATION: ("request_response_information", _B),
    P.RESPONSE_INFORMATION: ("response_information", _S),
    P.SERVER_REFERENCE: ("server_reference", _S),
    P.REASON_STRING: ("reason_string", _S),
    P.RECEIVE_MAXIMUM: ("receive_maximum", _U16),
    P.TOPIC_ALIAS_MAXIMUM: ("topic_alias_maximum", _U16),
    P.TOPIC_ALIAS: ("topic_alias", _U16),
    P.MAXIMUM_QOS: ("maximum_qos", _B),
    P.RETAIN_AVAILABLE: ("retain_available", _B),
    P.USER_PROPERTY: ("user_properties", _PAIR),
    P.MAXIMUM_PACKET_SIZE: ("maximum_packet_size", _U32),
    P.WILDCARD_SUBSCRIPTION_AVAILABLE: ("wildcard_subscription_available", _B),
    P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: ("subscription_identifier_available", _B),
    P.SHARED_SUBSCRIPTION_AVAILABLE: ("shared_subscription_available", _B),
}
_BY_NAME: dict[str, int] = {name: pid for pid, (name, _t) in SPEC.items()}
#: Properties that may appear more than once (as lists); all others at most once.
REPEATABLE = frozenset({P.USER_PROPERTY, P.SUBSCRIPTION_IDENTIFIER})
#: Properties whose value must be 0 or 1.
_BOOLEAN = frozenset(
    {
        P.PAYLOAD_FORMAT_INDICATOR,
        P.REQUEST_PROBLEM_INFORMATION,
        P.REQUEST_RESPONSE_INFORMATION,
        P.MAXIMUM_QOS,
        P.RETAIN_AVAILABLE,
        P.WILDCARD_SUBSCRIPTION_AVAILABLE,
        P.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        P.SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
_NON_ZERO = frozenset({P.RECEIVE_MAXIMUM, P.MAXIMUM_PACKET_SIZE, P.SUBSCRIPTION_IDENTIFIER, P.TOPIC_ALIAS})

#: Key of the will properties in :data:`ALLOWED` (not a packet type).
WILL = 0
_ack = frozenset({P.REASON_STRING, P.USER_PROPERTY})
_message = frozenset(
    {
        P.PAYLOAD_FORMAT_INDICATOR,
        P.MESSAGE_EXPIRY_INTERVAL,
        P.CONTENT_TYPE,
        P.RESPONSE_TOPIC,
        P.CORRELATION_DATA,
        P.USER_PROPERTY,
    }
)
ALLOWED: dict[int, frozenset[int]] = {
    PacketType.CONNECT: frozenset(
        {
            P.SESSION_EXPIRY_INTERVAL,
            P.AUTHENTICATION_METHOD,
            P.AUTHENTICATION_DATA,
            P.REQUEST_PROBLEM_INFORMATION,
            P.REQUEST_RESPONSE_INFORMATION,
            P.RECEIVE_MAXIMUM,
            P.TOPIC_ALIAS_MAXIMUM,
            P.USER_PROPERTY,
            P.MAXIMUM_PACKET_SIZE,
        }
    ),
    PacketType.CONNACK: frozenset(
        {
            P.SESSION_EXPIRY_INTERVAL,
            P.ASSIGNED_CLIENT_IDENTIFIER,
            P.SERVER_KEEP_ALIVE,
            P.AUTHENTICATION_METHOD,
            P.AUTHENTICATION_DATA,
            P.RESPONSE_INFORMATION,
            P.SERVER_REFERENCE,
            P.REASON_STRING,
            P.RECEIVE_MAXIMUM,
            P.TOPIC_ALIAS_MAXIMUM,
            P.MAXIMUM_QOS,
            P.RETAIN_AVAILABLE,
            P.USER_PROPERTY,
            P.MAXIMUM_PACKET_SIZE,
            P.WILDCARD_SUBSCRIPTION_AVAILABLE,
            P.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            P.SHARED_SUBSCRIPTION_AVAILABLE,
        }
    ),
    PacketType.PUBLISH: _message | {P.TOPIC_ALIAS, P.SUBSCRIPTION_IDENTIFIER},
    WILL: _message | {P.WILL_DELAY_INTERVAL},
    PacketType.PUBACK: _ack,
    PacketType.PUBREC: _ack,
    PacketType.PUBREL: _ack,
    PacketType.PUBCOMP: _ack,
    PacketType.SUBSCRIBE: frozenset({P.SUBSCRIPTION_IDENTIFIER, P.USER_PROPERTY}),
    PacketType.SUBACK: _ack,
    PacketType.UNSUBSCRIBE: frozenset({P.USER_PROPERTY}),
    PacketType.UNSUBACK: _ack,
    PacketType.DISCONNECT: _ack | {P.SESSION_EXPIRY_INTERVAL, P.SERVER_REFERENCE},
    PacketType.AUTH: _ack | {P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA},
}


class Properties:
    """An immutable set of MQTT 5 properties. Absent properties read as ``None`` (or ``()``)."""

    __slots__ = ("_body", "_encoded", "_values")

    _values: dict[int, Any]
    _encoded: bytes | None
    _body: bytes | None

    def __init__(
        self,
        *,
        payload_format_indicator: int | None = None,
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        subscription_identifiers: Iterable[int] = (),
        session_expiry_interval: int | None = None,
        assigned_client_identifier: str | None = None,
        server_keep_alive: int | None = None,
        authentication_method: str | None = None,
        authentication_data: bytes | None = None,
        request_problem_information: int | None = None,
        will_delay_interval: int | None = None,
        request_response_information: int | None = None,
        response_information: str | None = None,
        server_reference: str | None = None,
        reason_string: str | None = None,
        receive_maximum: int | None = None,
        topic_alias_maximum: int | None = None,
        topic_alias: int | None = None,
        maximum_qos: int | None = None,
        retain_available: int | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        maximum_packet_size: int | None = None,
        wildcard_subscription_available: int | None = None,
        subscription_identifier_available: int | None = None,
        shared_subscription_available: int | None = None,
    ) -> None:
        given = locals()
        values: dict[int, Any] = {}
        for name, pid in _BY_NAME.items():
            value = given[name]
            if pid in REPEATABLE:
                value = tuple(value)
                if value:
                    values[pid] = value
            elif value is not None:
                values[pid] = value
        self._values = values
        self._encoded = self._body = None

    @classmethod
    def _from_values(cls, values: dict[int, Any]) -> Properties:
        self = cls.__new__(cls)
        self._values = values
        self._encoded = self._body = None
        return self

    @classmethod
    def from_ids(cls, values: dict[int, Any]) -> Properties:
        """Build from ``{PropertyId: value}`` (repeatable ones as sequences)."""
        return cls(**{SPEC[pid][0]: value for pid, value in values.items()})

    def replace(self, **changes: Any) -> Properties:
        """A copy with some properties changed; pass ``None`` (or ``()``) to remove one."""
        values = dict(self._values)
        for name, value in changes.items():
            pid = _BY_NAME[name]
            if pid in REPEATABLE:
                value = tuple(value or ())
            if value is None or value == ():
                values.pop(pid, None)
            else:
                values[pid] = value
        return Properties._from_values(values)

    def without(self, *pids: int) -> Properties:
        values = {k: v for k, v in self._values.items() if k not in pids}
        return self if len(values) == len(self._values) else Properties._from_values(values)

    def get(self, pid: int) -> Any:
        return self._values.get(pid)

    def ids(self) -> frozenset[int]:
        return frozenset(self._values)

    def as_dict(self) -> dict[str, Any]:
        return {SPEC[pid][0]: v for pid, v in self._values.items()}

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Properties) and self._values == other._values

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Properties({inner})"

    # typed accessors ----------------------------------------------------------------------------
    @property
    def payload_format_indicator(self) -> int | None:
        return self._values.get(0x01)

    @property
    def message_expiry_interval(self) -> int | None:
        return self._values.get(0x02)

    @property
    def content_type(self) -> str | None:
        return self._values.get(0x03)

    @property
    def response_topic(self) -> str | None:
        return self._values.get(0x08)

    @property
    def correlation_data(self) -> bytes | None:
        return self._values.get(0x09)

    @property
    def subscription_identifiers(self) -> tuple[int, ...]:
        return self._values.get(0x0B, ())  # type: ignore[no-any-return]

    @property
    def session_expiry_interval(self) -> int | None:
        return self._values.get(0x11)

    @property
    def assigned_client_identifier(self) -> str | None:
        return self._values.get(0x12)

    @property
    def server_keep_alive(self) -> int | None:
        return self._values.get(0x13)

    @property
    def authentication_method(self) -> str | None:
        return self._values.get(0x15)

    @property
    def authentication_data(self) -> bytes | None:
        return self._values.get(0x16)

    @property
    def request_problem_information(self) -> int | None:
        return self._values.get(0x17)

    @property
    def will_delay_interval(self) -> int | None:
        return self._values.get(0x18)

    @property
    def request_response_information(self) -> int | None:
        return self._values.get(0x19)

    @property
    def response_information(self) -> str | None:
        return self._values.get(0x1A)

    @property
    def server_reference(self) -> str | None:
        return self._values.get(0x1C)

    @property
    def reason_string(self) -> str | None:
        return self._values.get(0x1F)

    @property
    def receive_maximum(self) -> int | None:
        return self._values.get(0x21)

    @property
    def topic_alias_maximum(self) -> int | None:
        return self._values.get(0x22)

    @property
    def topic_alias(self) -> int | None:
        return self._values.get(0x23)

    @property
    def maximum_qos(self) -> int | None:
        return self._values.get(0x24)

    @property
    def retain_available(self) -> int | None:
        return self._values.get(0x25)

    @property
    def user_properties(self) -> tuple[tuple[str, str], ...]:
        return self._values.get(0x26, ())  # type: ignore[no-any-return]

    @property
    def maximum_packet_size(self) -> int | None:
        return self._values.get(0x27)

    @property
    def wildcard_subscription_available(self) -> int | None:
        return self._values.get(0x28)

    @property
    def subscription_identifier_available(self) -> int | None:
        return self._values.get(0x29)

    @property
    def shared_subscription_available(self) -> int | None:
        return self._values.get(0x2A)

    # codec -----------------------------------------------------------------------------------
    def body(self) -> bytes:
        """The encoded properties without the length prefix (cached)."""
        body = self._body
        if body is None:
            body = self._body = encode_property_values(self._values)
        return body

    def encode(self) -> bytes:
        """The property block: its length as a variable byte integer, then the properties."""
        enc = self._encoded
        if enc is None:
            body = self.body()
            enc = self._encoded = varint(len(body)) + body
        return enc

    def ids_within(self, packet_key: int) -> bool:
        return self._values.keys() <= ALLOWED[packet_key]

    def check_allowed(self, packet_key: int) -> None:
        """Raise :class:`LocalProtocolError` if a property is not allowed in the packet."""
        if self._values.keys() <= ALLOWED[packet_key]:
            return
        extra = set(self._values) - ALLOWED[packet_key]
        if extra:
            names = ", ".join(SPEC[p][0] for p in sorted(extra))
            raise LocalProtocolError(f"properties not allowed in packet {packet_key}: {names}")


EMPTY_PROPERTIES = Properties()


def _encode_one(pid: int, ptype: PropType, value: Any) -> bytes:
    try:
        if ptype is _S:
            return bytes((pid,)) + encode_str(value)
        if ptype is _U32:
            return bytes((pid,)) + int(value).to_bytes(4, "big")
        if ptype is _U16:
            return bytes((pid,)) + int(value).to_bytes(2, "big")
        if ptype is _B:
            return bytes((pid, int(value)))
        if ptype is _BIN:
            return bytes((pid,)) + encode_bin(value)
        if ptype is _VI:
            if not 0 < value <= MAX_VARINT:
                raise LocalProtocolError(f"subscription identifier {value} out of range")
            return bytes((pid,)) + varint(value)
        return bytes((pid,)) + encode_str(value[0]) + encode_str(value[1])
    except (OverflowError, ValueError, TypeError) as exc:
        raise LocalProtocolError(f"bad value for property {SPEC[pid][0]}: {value!r}") from exc


def encode_property_values(values: dict[int, Any]) -> bytes:
    parts: list[bytes] = []
    for pid, value in values.items():
        ptype = SPEC[pid][1]
        if pid in REPEATABLE:
            parts.extend(_encode_one(pid, ptype, v) for v in value)
        else:
            parts.append(_encode_one(pid, ptype, value))
    return b"".join(parts)


def decode_properties(buf: bytes, pos: int, end: int, packet_key: int) -> tuple[Properties, int]:
    """Decode a property block at ``pos``; returns (properties, position after the block).

    Unknown identifiers and truncated values are malformed (0x81); a property not allowed in the
    packet, a repeated property, or an out-of-range value is a protocol error (0x82).
    """
    length, pos = read_varint(buf, pos, end)
    if length == 0:
        return EMPTY_PROPERTIES, pos
    stop = pos + length
    if stop > end:
        raise malformed("property length runs past the end of the packet")
    allowed = ALLOWED[packet_key]
    values: dict[int, Any] = {}
    value: Any
    while pos < stop:
        pid = buf[pos]
        pos += 1
        spec = SPEC.get(pid)
        if spec is None:
            raise malformed(f"unknown property identifier 0x{pid:02x}")
        ptype = spec[1]
        if ptype is _B:
            if pos >= stop:
                raise malformed("truncated property")
            value = buf[pos]
            pos += 1
        elif ptype is _U32:
            if pos + 4 > stop:
                raise malformed("truncated property")
            value = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        elif ptype is _U16:
            if pos + 2 > stop:
                raise malformed("truncated property")
            value = buf[pos] << 8 | buf[pos + 1]
            pos += 2
        elif ptype is _S:
            value, pos = read_str(buf, pos, stop)
        elif ptype is _BIN:
            value, pos = read_bin(buf, pos, stop)
        elif ptype is _VI:
            value, pos = read_varint(buf, pos, stop)
        else:
            key, pos = read_str(buf, pos, stop)
            val, pos = read_str(buf, pos, stop)
            value = (key, val)
        if pid not in allowed:
            raise protocol_error(f"property {spec[0]} is not allowed in this packet")
        if pid in REPEATABLE:
            values.setdefault(pid, []).append(value)
            continue
        if pid in values:
            raise protocol_error(f"property {spec[0]} appears more than once")
        if pid in _BOOLEAN and value > 1:
            raise protocol_error(f"property {spec[0]} must be 0 or 1, got {value}")
        if value == 0 and pid in _NON_ZERO:
            code = 0x94 if pid == P.TOPIC_ALIAS else 0x82
            raise protocol_error(f"property {spec[0]} must not be 0", code)
        values[pid] = value
    for pid in REPEATABLE:
        if pid in values:
            if pid == P.SUBSCRIPTION_IDENTIFIER and 0 in values[pid]:
                raise protocol_error("subscription identifier must not be 0")
            values[pid] = tuple(values[pid])
    if P.AUTHENTICATION_DATA in values and P.AUTHENTICATION_METHOD not in values:
        raise protocol_error("authentication data without an authentication method")
    return Properties._from_values(values), pos
