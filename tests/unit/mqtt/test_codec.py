"""Codec: literal bytes of every packet type in both versions, both ways, and strict rejection."""

from __future__ import annotations

import pytest

from gatehub.errors import LocalProtocolError, RemoteProtocolError
from gatehub.protocols.mqtt import (
    AuthPacket,
    ConnackPacket,
    ConnectPacket,
    Decoder,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    Properties,
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
    UnsupportedProtocolVersion,
    Will,
    decode_packet,
    encode_packet,
    encode_publish,
)
from gatehub.protocols.mqtt.wire import varint as encode_varint

H = bytes.fromhex

# Captured from paho-mqtt 2.1.0 (client id "paho-client", keepalive 30).
PAHO_CONNECT_311 = H(
    "103f00044d51545404ee001e000b7061686f2d636c69656e74000b7374617475732f7061686f00076f66666c696e65"
    "0008746f6b656e3132330006736563726574"
)
PAHO_CONNECT_5 = H(
    "104600044d515454058e001e081100000e10210014000b7061686f2d636c69656e7405180000000a000b7374617475"
    "732f7061686f00076f66666c696e650008746f6b656e313233"
)
# paho 3.1.1 session: CONNECT, SUBSCRIBE, PUBLISH QoS 1 retained, PUBLISH QoS 0, UNSUBSCRIBE, DISCONNECT
PAHO_SESSION_311 = H(
    "101700044d5154540402001e000b7061686f2d636c69656e74820e00010003612f2b010003622f23003322001776312f"
    "646576696365732f6d652f74656c656d6574727900027b2274223a317d3003000178a20c00040003612f2b0003622f23e000"
)
# paho 5 session: CONNECT, SUBSCRIBE (sub id 7, options), PUBLISH QoS 1 with request/response
# properties, PUBLISH QoS 2, UNSUBSCRIBE, DISCONNECT 0x04
PAHO_SESSION_5 = H(
    "102000044d5154540502001e081100000e10210014000b7061686f2d636c69656e7482320001020b07001b76312f6465"
    "76696365732f6d652f7270632f726571756573742f2b1d000c2473686172652f672f612f2302323f001776312f646576"
    "696365732f6d652f74656c656d6574727900021c0101020000003c080006726573702f3109000201022600016b000176"
    "7b2274223a317d3423001776312f646576696365732f6d652f74656c656d657472790003007b2274223a327da20800040000"
    "03612f62e00104"
)

TELEMETRY = "v1/devices/me/telemetry"

V311_CASES: list[tuple[str, Packet]] = [
    (
        "103f00044d51545404ee001e000b7061686f2d636c69656e74000b7374617475732f7061686f00076f66666c696e65"
        "0008746f6b656e3132330006736563726574",
        ConnectPacket("paho-client", 4, True, 30, "token123", b"secret", Will("status/paho", b"offline", 1, True)),
    ),
    ("101000044d5154540402003c000474657374", ConnectPacket("test", 4, True, 60)),
    ("20020000", ConnackPacket(False, 0)),
    ("20020105", ConnackPacket(True, 5)),
    ("3003000178", PublishPacket("x", b"")),
    (
        "3322001776312f646576696365732f6d652f74656c656d6574727900027b2274223a317d",
        PublishPacket(TELEMETRY, b'{"t":1}', 1, True, False, 2),
    ),
    ("3c0800036162630102ff", PublishPacket("abc", b"\xff", 2, False, True, 0x102)),
    ("40020002", PubAckPacket(2)),
    ("50020002", PubRecPacket(2)),
    ("62020002", PubRelPacket(2)),
    ("70020002", PubCompPacket(2)),
    (
        "820e00010003612f2b010003622f2300",
        SubscribePacket(1, [Subscription("a/+", 1), Subscription("b/#", 0)]),
    ),
    ("9004000101 80", SubackPacket(1, [1, 0x80])),
    ("a20c00040003612f2b0003622f23", UnsubscribePacket(4, ["a/+", "b/#"])),
    ("b0020004", UnsubackPacket(4)),
    ("c000", PingReqPacket()),
    ("d000", PingRespPacket()),
    ("e000", DisconnectPacket()),
]

V5_CASES: list[tuple[str, Packet]] = [
    (
        "104600044d515454058e001e081100000e10210014000b7061686f2d636c69656e7405180000000a000b7374617475"
        "732f7061686f00076f66666c696e650008746f6b656e313233",
        ConnectPacket(
            "paho-client",
            5,
            True,
            30,
            "token123",
            None,
            Will("status/paho", b"offline", 1, False, Properties(will_delay_interval=10)),
            Properties(session_expiry_interval=3600, receive_maximum=20),
        ),
    ),
    ("2003000000", ConnackPacket(False, 0)),
    ("2003008700", ConnackPacket(False, 0x87)),
    (
        "20090100062100142200 0a",
        ConnackPacket(True, 0, Properties(receive_maximum=20, topic_alias_maximum=10)),
    ),
    (
        "343f001776312f646576696365732f6d652f74656c656d6574727900021c0101020000003c080006726573702f3109"
        "000201022600016b0001767b2274223a317d",
        PublishPacket(
            TELEMETRY,
            b'{"t":1}',
            2,
            False,
            False,
            2,
            Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                response_topic="resp/1",
                correlation_data=b"\x01\x02",
                user_properties=[("k", "v")],
            ),
        ),
    ),
    ("300800000323000568 69", PublishPacket("", b"hi", properties=Properties(topic_alias=5))),
    ("3004000178 00", PublishPacket("x", b"")),
    ("40020001", PubAckPacket(1)),
    ("4003000110", PubAckPacket(1, 0x10)),
    ("400a000180061f0003626164", PubAckPacket(1, 0x80, Properties(reason_string="bad"))),
    ("5003000110", PubRecPacket(1, 0x10)),
    ("6203000192", PubRelPacket(1, 0x92)),
    ("7003000192", PubCompPacket(1, 0x92)),
    (
        "82320001020b07001b76312f646576696365732f6d652f7270632f726571756573742f2b1d000c2473686172652f672f612f2302",
        SubscribePacket(
            1,
            [
                Subscription("v1/devices/me/rpc/request/+", 1, True, True, 1),
                Subscription("$share/g/a/#", 2),
            ],
            Properties(subscription_identifiers=[7]),
        ),
    ),
    ("90050001000102", SubackPacket(1, [1, 2])),
    ("9006000100008f a2", SubackPacket(1, [0, 0x8F, 0xA2])),
    ("a2080004000003612f62", UnsubscribePacket(4, ["a/b"])),
    ("b00400040011", UnsubackPacket(4, [0x11])),
    ("c000", PingReqPacket()),
    ("d000", PingRespPacket()),
    ("e000", DisconnectPacket()),
    ("e00104", DisconnectPacket(4)),
    ("e0070005110000003c", DisconnectPacket(0, Properties(session_expiry_interval=60))),
    ("f000", AuthPacket()),
    (
        "f00f180d150005534352414d1600026869",
        AuthPacket(0x18, Properties(authentication_method="SCRAM", authentication_data=b"hi")),
    ),
]


@pytest.mark.parametrize(("hexdata", "packet"), V311_CASES)
def test_v311_literal_round_trip(hexdata: str, packet: Packet) -> None:
    data = H(hexdata)
    assert decode_packet(data, 4) == packet
    assert encode_packet(packet, 4) == data


@pytest.mark.parametrize(("hexdata", "packet"), V5_CASES)
def test_v5_literal_round_trip(hexdata: str, packet: Packet) -> None:
    data = H(hexdata)
    assert decode_packet(data, 5) == packet
    assert encode_packet(packet, 5) == data


def _all(data: bytes, version: int | None = None, chunk: int = 0) -> list[Packet]:
    decoder = Decoder(version=version)
    out: list[Packet] = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        decoder.feed(data[i : i + step])
        out.extend(decoder)
    assert decoder.buffered == 0
    return out


@pytest.mark.parametrize("chunk", [0, 1, 2, 3, 7, 64])
def test_paho_sessions_in_any_chunking(chunk: int) -> None:
    p311 = _all(PAHO_SESSION_311, chunk=chunk)
    assert [p.type.name for p in p311] == [
        "CONNECT", "SUBSCRIBE", "PUBLISH", "PUBLISH", "UNSUBSCRIBE", "DISCONNECT"
    ]  # fmt: skip
    assert p311 == _all(PAHO_SESSION_311)
    p5 = _all(PAHO_SESSION_5, chunk=chunk)
    assert [p.type.name for p in p5] == [
        "CONNECT", "SUBSCRIBE", "PUBLISH", "PUBLISH", "UNSUBSCRIBE", "DISCONNECT"
    ]  # fmt: skip
    assert p5 == _all(PAHO_SESSION_5)
    pub = p5[2]
    assert isinstance(pub, PublishPacket)
    assert pub.properties.response_topic == "resp/1"
    assert pub.properties.correlation_data == b"\x01\x02"
    assert pub.properties.user_properties == (("k", "v"),)
    assert p5[5] == DisconnectPacket(4)


def test_paho_connects() -> None:
    c311 = decode_packet(PAHO_CONNECT_311)
    assert isinstance(c311, ConnectPacket) and c311.password == b"secret"
    c5 = decode_packet(PAHO_CONNECT_5)
    assert isinstance(c5, ConnectPacket) and c5.protocol_level == 5 and c5.password is None
    assert c5.will is not None and c5.will.properties.will_delay_interval == 10


def test_large_packet_multibyte_length_and_one_byte_feeding() -> None:
    payload = bytes(range(256)) * 80
    data = encode_publish("big/topic", payload, 1, packet_id=9)
    assert data[1] & 0x80 and data[2] & 0x80 and not data[3] & 0x80  # 3 length bytes
    decoder = Decoder(version=4)
    got: list[Packet] = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        got.extend(decoder)
        if i < len(data) - 1:
            assert not got
    assert got == [PublishPacket("big/topic", payload, 1, packet_id=9)]


def test_non_minimal_remaining_length_is_accepted() -> None:
    assert decode_packet(H("c08000")) == PingReqPacket()
    assert decode_packet(H("408200 0007".replace(" ", ""))) == PubAckPacket(7)


def test_memoryview_and_bytearray_input() -> None:
    decoder = Decoder(version=4)
    decoder.feed(bytearray(H("c000")))
    decoder.feed(memoryview(H("d000")))
    assert list(decoder) == [PingReqPacket(), PingRespPacket()]


def test_user_properties_repeat_and_keep_order() -> None:
    props = Properties(user_properties=[("a", "1"), ("a", "2"), ("b", "")])
    packet = PublishPacket("t", b"", properties=props)
    assert decode_packet(encode_packet(packet, 5), 5) == packet


def test_all_property_types_round_trip() -> None:
    connack = ConnackPacket(
        False,
        0,
        Properties(
            session_expiry_interval=0xFFFFFFFF,
            assigned_client_identifier="id-\u00e9\U0001f600",
            server_keep_alive=0xFFFF,
            authentication_method="m",
            authentication_data=b"\x00" * 3,
            response_information="ri",
            server_reference="other:1883",
            reason_string="why",
            receive_maximum=1,
            topic_alias_maximum=0,
            maximum_qos=1,
            retain_available=0,
            user_properties=[("k", "v")],
            maximum_packet_size=1024,
            wildcard_subscription_available=0,
            subscription_identifier_available=1,
            shared_subscription_available=0,
        ),
    )
    assert decode_packet(encode_packet(connack, 5), 5) == connack
    pub = PublishPacket(
        "t",
        b"",
        properties=Properties(content_type="text/plain", subscription_identifiers=[1, 268435455]),
    )
    assert decode_packet(encode_packet(pub, 5), 5) == pub


def P(first: str, body: str) -> bytes:
    """A packet from its first byte and body (hex; spaces ignored), with the right length."""
    raw = H(body.replace(" ", ""))
    return H(first) + encode_varint(len(raw)) + raw


CONNECT_311 = "0004 4d515454 04"  # protocol name and level
CONNECT_5 = "0004 4d515454 05"
CID = "0001 7a"  # client id "z"

REJECT_311 = [
    (P("10", CONNECT_311 + "03 003c" + CID), 0x81, "reserved connect flag"),
    (P("10", CONNECT_311 + "0a 003c" + CID), 0x81, "will qos without will flag"),
    (P("10", CONNECT_311 + "22 003c" + CID), 0x81, "will retain without will flag"),
    (P("10", CONNECT_311 + "1e 003c" + CID), 0x81, "will qos 3"),
    (P("10", CONNECT_311 + "42 003c" + CID + "0002 6869"), 0x81, "password without user name"),
    (P("10", "0004 4d515458 04 02 003c" + CID), 0x81, "protocol name"),
    (P("10", CONNECT_311 + "06 003c" + CID + "0003 612f2b 0000"), 0x90, "wildcard will topic"),
    (P("10", CONNECT_311 + "06 003c" + CID + "0000 0000"), 0x90, "empty will topic"),
    (P("10", CONNECT_311 + "02 003c 0004 7465"), 0x81, "truncated client id"),
    (P("10", CONNECT_311 + "02 003c" + CID + "00"), 0x81, "trailing byte"),
    (P("10", CONNECT_311 + "02 00"), 0x81, "truncated variable header"),
    (P("10", CONNECT_311 + "82 003c" + CID), 0x81, "user name flag without user name"),
    (P("36", "0001 78"), 0x81, "publish qos 3"),
    (P("38", "0001 78"), 0x81, "dup on qos 0"),
    (P("30", "0001 2b"), 0x90, "wildcard topic"),
    (P("30", "0003 612f23"), 0x90, "hash in topic"),
    (P("30", "0000"), 0x81, "empty topic"),
    (P("32", "0001 78 0000"), 0x81, "packet id 0"),
    (P("30", "0002 c328"), 0x81, "ill-formed utf-8"),
    (P("30", "0003 eda080"), 0x81, "surrogate"),
    (P("30", "0002 c0af"), 0x81, "overlong encoding"),
    (P("30", "0001 00"), 0x81, "U+0000 in topic"),
    (P("30", "0005 78"), 0x81, "truncated topic"),
    (P("30", "00"), 0x81, "truncated topic length"),
    (P("32", "0001 78 01"), 0x81, "truncated packet id"),
    (P("41", "0001"), 0x81, "puback flags"),
    (P("60", "0001"), 0x81, "pubrel flags"),
    (P("72", "0001"), 0x81, "pubcomp flags"),
    (P("40", "0001 00"), 0x81, "puback trailing byte"),
    (P("50", "00"), 0x81, "pubrec truncated"),
    (P("40", "0000"), 0x81, "puback packet id 0"),
    (P("80", "0001 0001 61 00"), 0x81, "subscribe flags"),
    (P("82", "0001"), 0x81, "subscribe without filters"),
    (P("82", "0001 0001 61 04"), 0x81, "subscribe reserved option bits"),
    (P("82", "0001 0001 61 03"), 0x81, "subscribe qos 3"),
    (P("82", "0001 0001 61"), 0x81, "subscribe missing options"),
    (P("82", "0001 0005 612f232f62 00"), 0x8F, "hash not last"),
    (P("82", "0001 0003 612b62 00"), 0x8F, "plus inside a level"),
    (P("82", "0001 0000 00"), 0x8F, "empty filter"),
    (P("82", "0001 0007 2473686172652f 00"), 0x8F, "share without group"),
    (P("82", "0001 0009 2473686172652f672f 00"), 0x8F, "share without filter"),
    (P("82", "0001 000a 2473686172652f2b2f61 00"), 0x8F, "share name with wildcard"),
    (P("82", "0000 0001 61 00"), 0x81, "subscribe packet id 0"),
    (P("a2", "0001"), 0x81, "unsubscribe without filters"),
    (P("a0", "0001 0001 61"), 0x81, "unsubscribe flags"),
    (P("a2", "0001 0001 23 0002 2361"), 0x8F, "unsubscribe bad filter"),
    (P("c0", "00"), 0x81, "pingreq with body"),
    (P("d0", "00"), 0x81, "pingresp with body"),
    (P("e0", "00"), 0x81, "disconnect with body on 3.1.1"),
    (P("f0", ""), 0x81, "auth on 3.1.1"),
    (P("00", ""), 0x81, "reserved type 0"),
    (H("30ffffffff7f"), 0x81, "5 byte remaining length"),
    (P("20", "00 06"), 0x81, "connack return code 6"),
    (P("20", "02 00"), 0x81, "connack reserved flags"),
    (P("20", "00"), 0x81, "connack truncated"),
    (P("90", "0001 03"), 0x82, "suback code 3"),
    (P("90", "0001"), 0x81, "suback without codes"),
    (P("b0", "0001 00"), 0x81, "unsuback with codes on 3.1.1"),
]

REJECT_5 = [
    (P("30", "0001 78 05 1100000000"), 0x82, "property not allowed in publish"),
    (P("30", "0001 78 08 03000161 03000162"), 0x82, "duplicate content type"),
    (P("30", "0001 78 01 7f"), 0x81, "unknown property"),
    (P("30", "0001 78 01 80"), 0x81, "property id with continuation bit"),
    (P("30", "0001 78 02 0102"), 0x82, "payload format indicator 2"),
    (P("30", "0001 78 03 230000"), 0x94, "topic alias 0"),
    (P("30", "0000 00"), 0x82, "empty topic without alias"),
    (P("30", "0001 78 02 2300"), 0x81, "truncated property"),
    (P("30", "0001 78 05"), 0x81, "property length beyond packet"),
    (P("30", "0001 78 03 080001"), 0x81, "truncated string property"),
    (P("30", "0001 78 04 0b808080"), 0x81, "truncated varint property"),
    (P("30", "0001 78 05 0b80808080"), 0x81, "5-byte varint property"),
    (P("30", "0001 78 04 26000161"), 0x81, "user property without value"),
    (P("30", "0001 78 06 260001610001"), 0x81, "user property value truncated"),
    (P("32", "0001 78 0000 00"), 0x82, "publish packet id 0"),
    (P("82", "0001 0b 00 0001 61 00"), 0x81, "property length runs over"),
    (P("82", "0001 02 0b00 0001 61 00"), 0x82, "subscription identifier 0"),
    (P("82", "0001 04 0b010b02 0001 61 00"), 0x82, "two subscription identifiers"),
    (P("82", "0001 03 230001 0001 61 00"), 0x82, "topic alias in subscribe"),
    (P("82", "0001 00"), 0x82, "subscribe without filters"),
    (P("82", "0001 00 0001 61 c0"), 0x81, "subscribe reserved bits"),
    (P("82", "0001 00 0001 61 30"), 0x82, "retain handling 3"),
    (P("82", "0001 00 000c 2473686172652f672f612f23 04"), 0x82, "no local on shared subscription"),
    (P("a2", "0001 00"), 0x82, "unsubscribe without filters"),
    (P("a2", "0001 02 0b01 0001 61"), 0x82, "subscription identifier in unsubscribe"),
    (P("40", "0001 05"), 0x82, "puback reason code 5"),
    (P("50", "0001 92"), 0x82, "pubrec reason code 0x92"),
    (P("62", "0001 10"), 0x82, "pubrel reason code 0x10"),
    (P("70", "0001 00 03 1f0001"), 0x81, "pubcomp truncated reason string"),
    (P("40", "0001 00 05 1100000000"), 0x82, "session expiry in puback"),
    (P("e0", "05"), 0x82, "disconnect reason code 5"),
    (P("e0", "00 03 230001"), 0x82, "topic alias in disconnect"),
    (P("f0", "18"), 0x82, "auth continue without method"),
    (P("f0", "20"), 0x82, "auth reason code 0x20"),
    (P("f0", "18 00"), 0x82, "auth without method (empty properties)"),
    (P("f0", "18 04 16000161"), 0x82, "auth data without method"),
    (P("10", CONNECT_5 + "02 003c 04 16000161" + CID), 0x82, "connect auth data without method"),
    (P("10", CONNECT_5 + "02 003c 03 210000" + CID), 0x82, "receive maximum 0"),
    (P("10", CONNECT_5 + "02 003c 05 2700000000" + CID), 0x82, "maximum packet size 0"),
    (P("10", CONNECT_5 + "02 003c 02 1702" + CID), 0x82, "request problem information 2"),
    (P("10", CONNECT_5 + "02 003c 02 1902" + CID), 0x82, "request response information 2"),
    (P("10", CONNECT_5 + "02 003c 02 2401" + CID), 0x82, "maximum qos in connect"),
    (P("10", CONNECT_5 + "02 003c 0a 1100000001 1100000002" + CID), 0x82, "duplicate session expiry"),
    (P("10", CONNECT_5 + "06 003c 00" + CID + "05 1100000000 0001 61 0000"), 0x82, "session expiry in will"),
    (P("10", CONNECT_5 + "01 003c 00" + CID), 0x81, "reserved flag on v5"),
    (P("20", "00 05 00"), 0x82, "connack reason code 5"),
    (P("20", "00 00 02 2402"), 0x82, "connack maximum qos 2"),
    (P("90", "0001 00 03"), 0x82, "suback code 3"),
    (P("b0", "0001 00 05"), 0x82, "unsuback code 5"),
    (P("b0", "0001 00"), 0x81, "unsuback without codes"),
]


@pytest.mark.parametrize(("data", "code", "why"), REJECT_311, ids=[c[2] for c in REJECT_311])
def test_v311_rejections(data: bytes, code: int, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_packet(data, 4)
    assert info.value.reason_code == code, (why, info.value.message)


@pytest.mark.parametrize(("data", "code", "why"), REJECT_5, ids=[c[2] for c in REJECT_5])
def test_v5_rejections(data: bytes, code: int, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_packet(data, 5)
    assert info.value.reason_code == code, (why, info.value.message)


@pytest.mark.parametrize("level", [3, 6, 255])
def test_unsupported_protocol_level(level: int) -> None:
    data = P("10", f"0004 4d515454 {level:02x} 02 003c" + CID)
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode_packet(data)
    assert info.value.protocol_level == level
    assert info.value.reason_code == 0x84


def test_mqtt31_is_refused_as_unsupported() -> None:
    data = H("101200064d51497364700302003c000474657374")
    with pytest.raises(UnsupportedProtocolVersion):
        decode_packet(data)


def test_password_without_user_name_is_fine_on_v5() -> None:
    packet = ConnectPacket("c", 5, True, 10, None, b"pw")
    assert decode_packet(encode_packet(packet, 5)) == packet
    with pytest.raises(LocalProtocolError):
        encode_packet(ConnectPacket("c", 4, True, 10, None, b"pw"), 4)


def test_maximum_packet_size_is_checked_from_the_header() -> None:
    decoder = Decoder(version=4, max_packet_size=100)
    decoder.feed(H("30 e8 07".replace(" ", "")))  # announces 1000 bytes; none of them sent yet
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_packet()
    assert info.value.reason_code == 0x95
    decoder = Decoder(version=4, max_packet_size=5)
    decoder.feed(H("3003000178"))
    assert decoder.next_packet() == PublishPacket("x")


def test_decoder_learns_version_from_connect() -> None:
    decoder = Decoder()
    decoder.feed(encode_packet(ConnectPacket("c", 5), 5) + H("e00104"))
    assert [type(p) for p in decoder] == [ConnectPacket, DisconnectPacket]
    assert decoder.version == 5


@pytest.mark.parametrize(
    "packet",
    [
        PublishPacket("a/+", b""),
        PublishPacket("", b""),
        PublishPacket("a", b"", qos=1, packet_id=0),
        PublishPacket("a", b"", qos=0, dup=True),
        PublishPacket("a\x00", b""),
        PublishPacket("\ud800", b""),
        PublishPacket("a" * 70000, b""),
        PublishPacket("a", b"", properties=Properties(session_expiry_interval=1)),
        SubscribePacket(1, []),
        SubscribePacket(1, [Subscription("a/#/b")]),
        UnsubscribePacket(1, []),
        AuthPacket(0x18),
    ],
)
def test_encoder_refuses_invalid_packets(packet: Packet) -> None:
    with pytest.raises(LocalProtocolError):
        encode_packet(packet, 5 if not isinstance(packet, AuthPacket) else 4)


def test_encode_publish_with_alias_and_subscription_identifiers() -> None:
    props = Properties(response_topic="r")
    data = encode_publish("", b"p", version=5, properties=props, topic_alias=3, subscription_identifiers=[5])
    packet = decode_packet(data, 5)
    assert packet == PublishPacket(
        "", b"p", properties=Properties(response_topic="r", topic_alias=3, subscription_identifiers=[5])
    )
    # on 3.1.1 properties simply do not exist
    assert encode_publish("t", b"p", version=4, properties=props) == H("300400017470")
