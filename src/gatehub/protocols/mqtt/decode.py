"""Incremental, strict decoder of MQTT 3.1.1 and 5.0 control packets.

Feed it bytes in chunks of any size; take packets out with :meth:`Decoder.next_packet`. Every
violation raises :class:`~gatehub.errors.RemoteProtocolError` with the MQTT 5 reason code the
spec asks for (0x81 malformed, 0x82 protocol error, 0x95 packet too large, ...); an unsupported
protocol level in CONNECT raises :class:`~gatehub.protocols.mqtt.wire.UnsupportedProtocolVersion`.

Bytes are kept as received (``bytes``), and joined only once a whole packet is present, so a
large packet fed one byte at a time costs one join, and a PUBLISH costs a few slices.
"""

from __future__ import annotations

from collections.abc import Callable

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
from .properties import EMPTY_PROPERTIES, WILL, Properties, decode_properties
from .reason_codes import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    MQTT_5,
    MQTT_311,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    SUBACK_CODES_V311,
    UNSUBACK_CODES,
    PacketType,
)
from .topics import topic_filter_error
from .wire import (
    MAX_PACKET_SIZE,
    UnsupportedProtocolVersion,
    malformed,
    protocol_error,
    read_bin,
    read_str,
)

#: Required low nibble of the first byte, per packet type (PUBLISH is checked separately).
_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}

_Body = Callable[[int, bytes, int, int, int], Packet]


def _packet_id(buf: bytes, pos: int, end: int, version: int) -> int:
    if pos + 2 > end:
        raise malformed("truncated packet identifier")
    pid = buf[pos] << 8 | buf[pos + 1]
    if pid == 0:
        raise (
            protocol_error("packet identifier must not be 0")
            if version == MQTT_5
            else malformed("packet identifier must not be 0")
        )
    return pid


def _done(pos: int, end: int) -> None:
    if pos != end:
        raise malformed("unexpected bytes at the end of the packet")


def _check_response_topic(props: Properties) -> None:
    """MQTT 5 3.3.2.3.5 [MQTT-3.3.2-14]: "The Response Topic MUST NOT contain wildcard
    characters". The packet parses (it is not Malformed); its data is not allowed by the protocol,
    which is what 1.2 calls a Protocol Error: DISCONNECT 0x82. (0x90 Topic Name invalid is about
    the Topic Name field, "correctly formed, but not accepted".) Applies to a will's Response
    Topic too (3.1.3.2.5: it is used as the Topic Name of the response)."""
    topic = props.response_topic
    if topic is not None and ("+" in topic or "#" in topic):
        raise protocol_error(f"response topic {topic!r} contains a wildcard")


def decode_connect(flags: int, buf: bytes, pos: int, end: int, version: int) -> ConnectPacket:
    name, pos = read_str(buf, pos, end)
    if pos + 4 > end:
        raise malformed("truncated CONNECT variable header")
    level = buf[pos]
    if name != "MQTT" and not (name == "MQIsdp" and level == 3):
        raise malformed(f"unknown protocol name {name!r}")
    if level not in (MQTT_311, MQTT_5):
        raise UnsupportedProtocolVersion(f"unsupported protocol level {level}", protocol_level=level)
    v5 = level == MQTT_5
    cflags = buf[pos + 1]
    keepalive = buf[pos + 2] << 8 | buf[pos + 3]
    pos += 4
    if cflags & 0x01:
        raise malformed("reserved CONNECT flag is set")
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    if will_qos == 3:
        raise malformed("will QoS 3")
    if not will_flag and (will_qos or will_retain):
        raise malformed("will QoS or retain set without the will flag")
    has_user = cflags & 0x80
    has_password = cflags & 0x40
    if has_password and not has_user and not v5:
        raise malformed("password flag without user name flag (MQTT 3.1.1)")
    props = EMPTY_PROPERTIES
    if v5:
        props, pos = decode_properties(buf, pos, end, PacketType.CONNECT)
    client_id, pos = read_str(buf, pos, end)
    will = None
    if will_flag:
        will_props = EMPTY_PROPERTIES
        if v5:
            will_props, pos = decode_properties(buf, pos, end, WILL)
            _check_response_topic(will_props)
        topic, pos = read_str(buf, pos, end)
        if not topic or "+" in topic or "#" in topic:
            raise protocol_error(f"invalid will topic {topic!r}", 0x90)
        payload, pos = read_bin(buf, pos, end)
        will = Will(topic, payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if has_user:
        username, pos = read_str(buf, pos, end)
    if has_password:
        password, pos = read_bin(buf, pos, end)
    _done(pos, end)
    return ConnectPacket(client_id, level, bool(cflags & 0x02), keepalive, username, password, will, props, name)


def decode_connack(flags: int, buf: bytes, pos: int, end: int, version: int) -> ConnackPacket:
    if pos + 2 > end:
        raise malformed("truncated CONNACK")
    ack_flags = buf[pos]
    code = buf[pos + 1]
    pos += 2
    if ack_flags & 0xFE:
        raise malformed("reserved CONNACK flags set")
    props = EMPTY_PROPERTIES
    if version == MQTT_5:
        if code not in CONNACK_CODES:
            raise protocol_error(f"invalid CONNACK reason code 0x{code:02x}")
        if pos < end:
            props, pos = decode_properties(buf, pos, end, PacketType.CONNACK)
    elif code > 5:
        raise malformed(f"invalid CONNACK return code {code}")
    _done(pos, end)
    return ConnackPacket(bool(ack_flags), code, props)


def decode_publish(flags: int, buf: bytes, pos: int, end: int, version: int) -> PublishPacket:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise malformed("PUBLISH with QoS 3")
    dup = bool(flags & 0x08)
    if dup and not qos:
        raise malformed("DUP set on a QoS 0 PUBLISH")
    if pos + 2 > end:
        raise malformed("truncated topic length")
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise malformed("topic runs past the end of the packet")
    try:
        topic = buf[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("ill-formed UTF-8 topic") from None
    if "+" in topic or "#" in topic or "\x00" in topic:
        if "\x00" in topic:
            raise malformed("topic name contains U+0000")
        raise protocol_error(f"invalid topic name {topic!r}", 0x90)
    pos = stop
    packet_id = 0
    if qos:
        packet_id = _packet_id(buf, pos, end, version)
        pos += 2
    props = EMPTY_PROPERTIES
    if version == MQTT_5:
        if pos < end and buf[pos] == 0:
            pos += 1
        else:
            props, pos = decode_properties(buf, pos, end, PacketType.PUBLISH)
            _check_response_topic(props)
        if not topic and props.topic_alias is None:
            raise protocol_error("empty topic name without a topic alias")
    elif not topic:
        raise malformed("empty topic name")
    return PublishPacket(topic, buf[pos:end], qos, bool(flags & 0x01), dup, packet_id, props)


def _ack_decoder(cls: type[PubAckPacket | PubRecPacket | PubRelPacket | PubCompPacket], codes: frozenset[int]) -> _Body:
    ptype = cls.type

    def decode(flags: int, buf: bytes, pos: int, end: int, version: int) -> Packet:
        packet_id = _packet_id(buf, pos, end, version)
        pos += 2
        if version != MQTT_5 or pos == end:
            _done(pos, end)
            return cls(packet_id)
        code = buf[pos]
        if code not in codes:
            raise protocol_error(f"invalid {ptype.name} reason code 0x{code:02x}")
        props = EMPTY_PROPERTIES
        if pos + 1 < end:
            props, pos = decode_properties(buf, pos + 1, end, ptype)
        else:
            pos += 1
        _done(pos, end)
        return cls(packet_id, code, props)

    return decode


def decode_subscribe(flags: int, buf: bytes, pos: int, end: int, version: int) -> SubscribePacket:
    packet_id = _packet_id(buf, pos, end, version)
    pos += 2
    v5 = version == MQTT_5
    props = EMPTY_PROPERTIES
    if v5:
        props, pos = decode_properties(buf, pos, end, PacketType.SUBSCRIBE)
        if len(props.subscription_identifiers) > 1:
            raise protocol_error("more than one subscription identifier in SUBSCRIBE")
    subs: list[Subscription] = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        if pos >= end:
            raise malformed("missing subscription options")
        opts = buf[pos]
        pos += 1
        qos = opts & 0x03
        if qos == 3:
            raise malformed("subscription QoS 3")
        if v5:
            if opts & 0xC0:
                raise malformed("reserved subscription option bits set")
            retain_handling = (opts >> 4) & 0x03
            if retain_handling == 3:
                raise protocol_error("retain handling 3")
            no_local = bool(opts & 0x04)
            if no_local and topic_filter.startswith("$share/"):
                raise protocol_error("no local on a shared subscription")
            sub = Subscription(topic_filter, qos, no_local, bool(opts & 0x08), retain_handling)
        else:
            if opts & 0xFC:
                raise malformed("reserved subscription option bits set")
            sub = Subscription(topic_filter, qos)
        error = topic_filter_error(topic_filter)
        if error is not None:
            raise protocol_error(f"{error}: {topic_filter!r}", 0x8F)
        subs.append(sub)
    if not subs:
        raise (
            protocol_error("SUBSCRIBE without topic filters") if v5 else malformed("SUBSCRIBE without topic filters")
        )
    return SubscribePacket(packet_id, subs, props)


def decode_suback(flags: int, buf: bytes, pos: int, end: int, version: int) -> SubackPacket:
    packet_id = _packet_id(buf, pos, end, version)
    pos += 2
    props = EMPTY_PROPERTIES
    allowed = SUBACK_CODES_V311
    if version == MQTT_5:
        props, pos = decode_properties(buf, pos, end, PacketType.SUBACK)
        allowed = SUBACK_CODES
    codes = list(buf[pos:end])
    if not codes:
        raise malformed("SUBACK without reason codes")
    if not allowed.issuperset(codes):
        raise protocol_error("invalid SUBACK reason code")
    return SubackPacket(packet_id, codes, props)


def decode_unsubscribe(flags: int, buf: bytes, pos: int, end: int, version: int) -> UnsubscribePacket:
    packet_id = _packet_id(buf, pos, end, version)
    pos += 2
    v5 = version == MQTT_5
    props = EMPTY_PROPERTIES
    if v5:
        props, pos = decode_properties(buf, pos, end, PacketType.UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        error = topic_filter_error(topic_filter)
        if error is not None:
            raise protocol_error(f"{error}: {topic_filter!r}", 0x8F)
        filters.append(topic_filter)
    if not filters:
        raise (
            protocol_error("UNSUBSCRIBE without topic filters")
            if v5
            else malformed("UNSUBSCRIBE without topic filters")
        )
    return UnsubscribePacket(packet_id, filters, props)


def decode_unsuback(flags: int, buf: bytes, pos: int, end: int, version: int) -> UnsubackPacket:
    packet_id = _packet_id(buf, pos, end, version)
    pos += 2
    if version != MQTT_5:
        _done(pos, end)
        return UnsubackPacket(packet_id)
    props, pos = decode_properties(buf, pos, end, PacketType.UNSUBACK)
    codes = list(buf[pos:end])
    if not codes:
        raise malformed("UNSUBACK without reason codes")
    if not UNSUBACK_CODES.issuperset(codes):
        raise protocol_error("invalid UNSUBACK reason code")
    return UnsubackPacket(packet_id, codes, props)


def decode_pingreq(flags: int, buf: bytes, pos: int, end: int, version: int) -> PingReqPacket:
    _done(pos, end)
    return PingReqPacket()


def decode_pingresp(flags: int, buf: bytes, pos: int, end: int, version: int) -> PingRespPacket:
    _done(pos, end)
    return PingRespPacket()


def _reason_and_props(
    buf: bytes, pos: int, end: int, ptype: PacketType, codes: frozenset[int]
) -> tuple[int, Properties]:
    if pos == end:
        return 0, EMPTY_PROPERTIES
    code = buf[pos]
    if code not in codes:
        raise protocol_error(f"invalid {ptype.name} reason code 0x{code:02x}")
    if pos + 1 == end:
        return code, EMPTY_PROPERTIES
    props, pos = decode_properties(buf, pos + 1, end, ptype)
    _done(pos, end)
    return code, props


def decode_disconnect(flags: int, buf: bytes, pos: int, end: int, version: int) -> DisconnectPacket:
    if version != MQTT_5:
        _done(pos, end)
        return DisconnectPacket()
    code, props = _reason_and_props(buf, pos, end, PacketType.DISCONNECT, DISCONNECT_CODES)
    return DisconnectPacket(code, props)


def decode_auth(flags: int, buf: bytes, pos: int, end: int, version: int) -> AuthPacket:
    if version != MQTT_5:
        raise malformed("AUTH is reserved in MQTT 3.1.1")
    code, props = _reason_and_props(buf, pos, end, PacketType.AUTH, AUTH_CODES)
    if code and props.authentication_method is None:
        raise protocol_error("AUTH without an authentication method")
    return AuthPacket(code, props)


_BODY: dict[int, _Body] = {
    1: decode_connect,
    2: decode_connack,
    3: decode_publish,
    4: _ack_decoder(PubAckPacket, PUBACK_CODES),
    5: _ack_decoder(PubRecPacket, PUBACK_CODES),
    6: _ack_decoder(PubRelPacket, PUBREL_CODES),
    7: _ack_decoder(PubCompPacket, PUBREL_CODES),
    8: decode_subscribe,
    9: decode_suback,
    10: decode_unsubscribe,
    11: decode_unsuback,
    12: decode_pingreq,
    13: decode_pingresp,
    14: decode_disconnect,
    15: decode_auth,
}


def decode_body(first_byte: int, buf: bytes, pos: int, end: int, version: int) -> Packet:
    """Decode one packet whose fixed header was ``first_byte``; its body is ``buf[pos:end]``."""
    ptype = first_byte >> 4
    flags = first_byte & 0x0F
    if ptype != 3:
        decoder = _BODY.get(ptype)
        if decoder is None:
            raise malformed("reserved packet type 0")
        if flags != _FLAGS[ptype]:
            raise malformed(f"invalid fixed header flags for {PacketType(ptype).name}")
        return decoder(flags, buf, pos, end, version)
    return decode_publish(flags, buf, pos, end, version)


def _not_connect(first_byte: int) -> Exception:
    ptype = first_byte >> 4
    if ptype == 1:
        return malformed("invalid fixed header flags for CONNECT")
    name = PacketType(ptype).name if ptype else "reserved packet type 0"
    # MQTT 5 3.1 / 3.1.1 3.1: the first packet from the client MUST be CONNECT; the server closes
    # the connection without a CONNACK (there is no CONNECT to answer)
    return protocol_error(f"{name} before CONNECT")


def decode_packet(data: bytes, version: int = MQTT_311) -> Packet:
    """Decode exactly one whole packet (a convenience for tests and tools)."""
    decoder = Decoder(version=version)
    decoder.feed(data)
    packet = decoder.next_packet()
    if packet is None or decoder.buffered:
        raise malformed("not exactly one packet")
    return packet


class Decoder:
    """Incremental decoder. ``version`` is learnt from the first CONNECT when not given.

    ``first_connect`` (a server's decoder): the first packet must be a CONNECT. Any other type is
    refused (0x82) as soon as its first byte is here, before its body is buffered; together with
    a small ``max_packet_size`` until the CONNECT is accepted (the caller raises it then) a client
    that has not authenticated can make the decoder hold at most that many bytes plus one read.
    Both checks run only on the path that waits for more bytes or has no version yet, so the
    decoding of whole packets after CONNECT costs nothing more.
    """

    __slots__ = ("_buf", "_chunks", "_chunks_len", "_need", "_pos", "first_connect", "max_packet_size", "version")

    def __init__(
        self, *, version: int | None = None, max_packet_size: int = MAX_PACKET_SIZE, first_connect: bool = False
    ) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self.first_connect = first_connect
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 2

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buf) - self._pos + self._chunks_len

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf = data
            self._pos = 0
        else:
            self._chunks.append(data)
            self._chunks_len += len(data)

    def _fill(self) -> bool:
        """Join pending chunks if together they hold the bytes needed; True if they now do."""
        if len(self._buf) - self._pos + self._chunks_len < self._need:
            return False
        self._buf = b"".join([memoryview(self._buf)[self._pos :], *self._chunks])
        self._pos = 0
        self._chunks.clear()
        self._chunks_len = 0
        return True

    def next_packet(self) -> Packet | None:
        """The next whole packet, or ``None`` if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 2:
            self._need = 2
            if not self._fill():
                return None
            buf = self._buf
            pos = 0
            avail = len(buf)
        b = buf[pos + 1]
        if b < 0x80:
            length = b
            header = 2
        else:
            length = b & 0x7F
            header = 2
            shift = 7
            while True:
                if header == 5:
                    raise malformed("remaining length longer than 4 bytes")
                if header >= avail:
                    self._need = header + 1
                    if not self._fill():
                        return None
                    buf = self._buf
                    pos = 0
                    avail = len(buf)
                b = buf[pos + header]
                header += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        total = header + length
        if total > self.max_packet_size:
            if self.version is None:
                if buf[pos] == 0x10:  # so that a CONNACK 0x95 can say why
                    self._learn_version(buf, pos, header, min(pos + total, len(buf)))
                elif self.first_connect:
                    raise _not_connect(buf[pos])
            raise protocol_error(f"packet of {total} bytes exceeds the maximum packet size", 0x95)
        if avail < total:
            if self.version is None and self.first_connect and buf[pos] != 0x10:
                raise _not_connect(buf[pos])
            self._need = total
            if not self._fill():
                return None
            buf = self._buf
            pos = 0
        end = pos + total
        self._pos = end
        if end == len(buf) and not self._chunks:
            self._buf = b""
            self._pos = 0
        version = self.version
        if version is None:
            first = buf[pos]
            if first == 0x10:
                # Learn the level before decoding the rest, so that an error in this CONNECT
                # can still be answered with a CONNACK of the client's version.
                self._learn_version(buf, pos, header, end)
            elif self.first_connect:
                raise _not_connect(first)
            return decode_body(first, buf, pos + header, end, MQTT_311)
        first = buf[pos]
        if first >> 4 == 3:
            return decode_publish(first & 0x0F, buf, pos + header, end, version)
        return decode_body(first, buf, pos + header, end, version)

    def _learn_version(self, buf: bytes, pos: int, header: int, end: int) -> None:
        """The protocol level of the CONNECT at ``buf[pos]``, if its variable header is in ``buf[:end]``."""
        at = pos + header + 2
        if at <= end:
            at += buf[at - 2] << 8 | buf[at - 1]
            if at < end and buf[at] in (MQTT_311, MQTT_5):
                self.version = buf[at]

    def clear(self) -> None:
        """Forget every byte received and not decoded (the connection is being closed)."""
        self._buf = b""
        self._pos = 0
        self._chunks.clear()
        self._chunks_len = 0
        self._need = 2

    def __iter__(self) -> Decoder:
        return self

    def __next__(self) -> Packet:
        packet = self.next_packet()
        if packet is None:
            raise StopIteration
        return packet
