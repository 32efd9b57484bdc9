"""Encoders of MQTT 3.1.1 and 5.0 control packets; each returns ``bytes``.

Encoding something the peer would have to reject raises
:class:`~gatehub.errors.LocalProtocolError` (a bug on our side), never sends it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from gatehub.errors import LocalProtocolError

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
    UnsubackPacket,
    UnsubscribePacket,
)
from .properties import EMPTY_PROPERTIES, WILL, Properties
from .reason_codes import MQTT_5, PacketType
from .topics import topic_filter_error
from .wire import MAX_VARINT, encode_bin, encode_str, fixed_header, varint

_U16 = struct.Struct(">H").pack
_U16_PAIR = struct.Struct(">HH").pack
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
_NO_PROPS = b"\x00"


def _props(props: Properties, key: int) -> bytes:
    if not props:
        return _NO_PROPS
    props.check_allowed(key)
    return props.encode()


def _pid(packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise LocalProtocolError(f"packet identifier {packet_id} out of range")
    return packet_id.to_bytes(2, "big")


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    version: int = 4,
    properties: Properties = EMPTY_PROPERTIES,
    topic_alias: int = 0,
    subscription_identifiers: Sequence[int] = (),
) -> bytes:
    """Encode a PUBLISH. ``topic`` may be empty (MQTT 5) when ``topic_alias`` is set.

    ``topic_alias`` and ``subscription_identifiers`` are added to ``properties`` (which should
    not carry them itself), so that the message's own properties keep their cached encoding.
    """
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise LocalProtocolError(f"invalid topic name {topic!r}")
    try:
        raw_topic = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("topic contains a surrogate code point") from None
    n = len(raw_topic)
    if not n and not (version == MQTT_5 and (topic_alias or properties.topic_alias)):
        raise LocalProtocolError("empty topic name")
    if n > 0xFFFF:
        raise LocalProtocolError("topic longer than 65535 bytes")
    if qos:
        if qos > 2:
            raise LocalProtocolError(f"invalid QoS {qos}")
        if not 0 < packet_id <= 0xFFFF:
            raise LocalProtocolError(f"packet identifier {packet_id} out of range")
        variable = _U16_PAIR(n, packet_id)  # topic length, then (after the topic) the packet id
        head, tail = variable[:2], variable[2:]
    elif dup or qos < 0:
        raise LocalProtocolError("DUP on a QoS 0 PUBLISH" if dup else f"invalid QoS {qos}")
    else:
        head, tail = _U16(n), b""
    if version == MQTT_5:
        if topic_alias or subscription_identifiers:
            extra = [properties.body()] if properties else []
            if topic_alias:
                extra.append(b"\x23" + topic_alias.to_bytes(2, "big"))
            for sid in subscription_identifiers:
                if not 0 < sid <= MAX_VARINT:
                    raise LocalProtocolError(f"subscription identifier {sid} out of range")
                extra.append(b"\x0b" + varint(sid))
            block = b"".join(extra)
            tail += varint(len(block)) + block
        else:
            tail += properties.encode() if properties else _NO_PROPS
        if properties:
            properties.check_allowed(PacketType.PUBLISH)
    body_len = 2 + n + len(tail) + len(payload)
    first = 0x30 | (8 if dup else 0) | (qos << 1) | (1 if retain else 0)
    header = bytes((first, body_len)) if body_len < 0x80 else bytes((first,)) + varint(body_len)
    return b"".join((header, head, raw_topic, tail, payload))


def publish_packet(packet: PublishPacket, version: int) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        version,
        packet.properties,
    )


def encode_connect(packet: ConnectPacket, version: int | None = None) -> bytes:
    """Encode a CONNECT; its own ``protocol_level`` decides the format (``version`` is ignored)."""
    level = packet.protocol_level
    v5 = level == MQTT_5
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise LocalProtocolError(f"invalid will QoS {will.qos}")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.username is not None:
        flags |= 0x80
    if packet.password is not None:
        if packet.username is None and not v5:
            raise LocalProtocolError("password without user name in MQTT 3.1.1")
        flags |= 0x40
    parts = [encode_str(packet.protocol_name), bytes((level, flags)), packet.keepalive.to_bytes(2, "big")]
    if v5:
        parts.append(_props(packet.properties, PacketType.CONNECT))
    parts.append(encode_str(packet.client_id))
    if will is not None:
        if v5:
            parts.append(_props(will.properties, WILL))
        parts += [encode_str(will.topic), encode_bin(will.payload)]
    if packet.username is not None:
        parts.append(encode_str(packet.username))
    if packet.password is not None:
        parts.append(encode_bin(packet.password))
    return _assemble(0x10, parts)


def _assemble(first_byte: int, parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    return fixed_header(first_byte, len(body)) + body


def encode_connack(packet: ConnackPacket, version: int) -> bytes:
    parts = [bytes((1 if packet.session_present else 0, packet.reason_code))]
    if version == MQTT_5:
        parts.append(_props(packet.properties, PacketType.CONNACK))
    return _assemble(0x20, parts)


def _encode_ack(first_byte: int, ptype: PacketType) -> Callable[[Any, int], bytes]:
    def encode(packet: Any, version: int) -> bytes:
        pid = _pid(packet.packet_id)
        code = packet.reason_code
        if version != MQTT_5 or (code == 0 and not packet.properties):
            return bytes((first_byte, 2)) + pid
        if not packet.properties:
            return bytes((first_byte, 3)) + pid + bytes((code,))
        return _assemble(first_byte, [pid, bytes((code,)), _props(packet.properties, ptype)])

    return encode


encode_puback = _encode_ack(0x40, PacketType.PUBACK)
encode_pubrec = _encode_ack(0x50, PacketType.PUBREC)
encode_pubrel = _encode_ack(0x62, PacketType.PUBREL)
encode_pubcomp = _encode_ack(0x70, PacketType.PUBCOMP)


def encode_subscribe(packet: SubscribePacket, version: int) -> bytes:
    if not packet.subscriptions:
        raise LocalProtocolError("SUBSCRIBE without topic filters")
    parts = [_pid(packet.packet_id)]
    v5 = version == MQTT_5
    if v5:
        parts.append(_props(packet.properties, PacketType.SUBSCRIBE))
    for sub in packet.subscriptions:
        error = topic_filter_error(sub.topic_filter)
        if error is not None:
            raise LocalProtocolError(error)
        opts = sub.options_byte if v5 else sub.qos
        parts += [encode_str(sub.topic_filter), bytes((opts,))]
    return _assemble(0x82, parts)


def encode_suback(packet: SubackPacket, version: int) -> bytes:
    parts = [_pid(packet.packet_id)]
    if version == MQTT_5:
        parts.append(_props(packet.properties, PacketType.SUBACK))
    parts.append(bytes(packet.reason_codes))
    return _assemble(0x90, parts)


def encode_unsubscribe(packet: UnsubscribePacket, version: int) -> bytes:
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE without topic filters")
    parts = [_pid(packet.packet_id)]
    if version == MQTT_5:
        parts.append(_props(packet.properties, PacketType.UNSUBSCRIBE))
    parts += [encode_str(f) for f in packet.topic_filters]
    return _assemble(0xA2, parts)


def encode_unsuback(packet: UnsubackPacket, version: int) -> bytes:
    parts = [_pid(packet.packet_id)]
    if version == MQTT_5:
        parts += [_props(packet.properties, PacketType.UNSUBACK), bytes(packet.reason_codes)]
    return _assemble(0xB0, parts)


def encode_disconnect(packet: DisconnectPacket, version: int) -> bytes:
    if version != MQTT_5 or (packet.reason_code == 0 and not packet.properties):
        return b"\xe0\x00"
    if not packet.properties:
        return bytes((0xE0, 1, packet.reason_code))
    return _assemble(0xE0, [bytes((packet.reason_code,)), _props(packet.properties, PacketType.DISCONNECT)])


def encode_auth(packet: AuthPacket, version: int) -> bytes:
    if version != MQTT_5:
        raise LocalProtocolError("AUTH does not exist in MQTT 3.1.1")
    if packet.reason_code == 0 and not packet.properties:
        return b"\xf0\x00"
    if packet.reason_code and packet.properties.authentication_method is None:
        raise LocalProtocolError("AUTH needs an authentication method")
    return _assemble(0xF0, [bytes((packet.reason_code,)), _props(packet.properties, PacketType.AUTH)])


_ENCODERS: dict[type[Any], Callable[[Any, int], bytes]] = {
    ConnectPacket: encode_connect,
    ConnackPacket: encode_connack,
    PublishPacket: publish_packet,
    PubAckPacket: encode_puback,
    PubRecPacket: encode_pubrec,
    PubRelPacket: encode_pubrel,
    PubCompPacket: encode_pubcomp,
    SubscribePacket: encode_subscribe,
    SubackPacket: encode_suback,
    UnsubscribePacket: encode_unsubscribe,
    UnsubackPacket: encode_unsuback,
    PingReqPacket: lambda _p, _v: PINGREQ,
    PingRespPacket: lambda _p, _v: PINGRESP,
    DisconnectPacket: encode_disconnect,
    AuthPacket: encode_auth,
}


def encode_packet(packet: Packet, version: int) -> bytes:
    """Encode any packet for a connection speaking ``version`` (4 = 3.1.1, 5 = 5.0)."""
    return _ENCODERS[type(packet)](packet, version)
