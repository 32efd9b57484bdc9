"""Wire primitives: variable byte integers, UTF-8 strings, binary data, and the codec errors."""

from __future__ import annotations

from gatehub.errors import LocalProtocolError, RemoteProtocolError

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
MAX_VARINT = 268_435_455
#: The largest packet MQTT can express: 1 header byte + 4 length bytes + 268,435,455.
MAX_PACKET_SIZE = 1 + 4 + MAX_VARINT


class UnsupportedProtocolVersion(RemoteProtocolError):
    """A CONNECT asked for a protocol level we do not speak; answer with a CONNACK and close."""

    def __init__(self, message: str, *, protocol_level: int) -> None:
        super().__init__(message, reason_code=0x84)
        self.protocol_level = protocol_level


def malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason_code=MALFORMED)


def protocol_error(message: str, reason_code: int = PROTOCOL_ERROR) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason_code=reason_code)


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a variable byte integer at ``pos``; returns (value, new position)."""
    value = 0
    shift = 0
    for _ in range(4):
        if pos >= end:
            raise malformed("truncated variable byte integer")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise malformed("variable byte integer longer than 4 bytes")


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > MAX_VARINT or n < 0:
        raise LocalProtocolError(f"value {n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_str(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """Decode a UTF-8 encoded string (MQTT 1.5.4): well-formed, no surrogates, no U+0000."""
    if pos + 2 > end:
        raise malformed("truncated string length")
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise malformed("string runs past the end of the packet")
    raw = buf[pos + 2 : stop]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("ill-formed UTF-8 string") from None
    if "\x00" in text:
        raise malformed("UTF-8 string contains U+0000")
    return text, stop


def read_bin(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise malformed("truncated binary data length")
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise malformed("binary data runs past the end of the packet")
    return buf[pos + 2 : stop], stop


def read_u16(buf: bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise malformed("truncated two byte integer")
    return buf[pos] << 8 | buf[pos + 1]


def encode_str(text: str) -> bytes:
    """Encode a UTF-8 string with its two byte length; refuses what the peer would reject."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("string contains a surrogate code point") from None
    n = len(raw)
    if n > 0xFFFF:
        raise LocalProtocolError("string longer than 65535 bytes")
    if "\x00" in text:
        raise LocalProtocolError("string contains U+0000")
    return n.to_bytes(2, "big") + raw


def encode_bin(data: bytes) -> bytes:
    n = len(data)
    if n > 0xFFFF:
        raise LocalProtocolError("binary data longer than 65535 bytes")
    return n.to_bytes(2, "big") + bytes(data)


def fixed_header(first_byte: int, body_len: int) -> bytes:
    if body_len < 0x80:
        return bytes((first_byte, body_len))
    return bytes((first_byte,)) + varint(body_len)
