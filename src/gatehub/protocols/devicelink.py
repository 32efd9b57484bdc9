"""The device-link tunnel protocol, version 1: frames carried over a gateway's MQTT connection.

Sans-I/O: encoding and decoding of frames and the credit window of one direction of a channel.
docs/devicelink.md ("Via-gateway tunnel") is the normative description; this module is its code.

Topics: the hub publishes every frame to ``v1/devicelink/down`` (QoS 1) on the gateway's own
session; the gateway agent publishes every frame to ``v1/devicelink/up``. Each MQTT message
carries exactly one frame::

    offset 0  uint8   version (1)
    offset 1  uint8   frame type
    offset 2  uint32  channel id, big endian (0 for HELLO)
    offset 6  ...     body (depends on the type)

A channel is one relayed conversation: one TCP client connection, or one UDP link. The hub
opens channels (it numbers them); either side may close them. Flow control is by credit, in
bytes, per channel and per direction: a side may have at most ``window`` bytes of DATA cost
(``len(data) + FRAME_COST``) unacknowledged; the receiver returns credit with WINDOW frames as
it delivers data to its socket. Nobody ever buffers more than one window per channel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

VERSION = 1
VERSIONS = (1,)  # the versions this implementation speaks
PREFIX = "v1/devicelink/"
TOPIC_DOWN = "v1/devicelink/down"  # hub -> agent
TOPIC_UP = "v1/devicelink/up"  # agent -> hub
HEADER = struct.Struct(">BBI")
HEADER_SIZE = HEADER.size
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
FRAME_COST = 64  # what one DATA frame costs beyond its bytes: bounds the number of frames in flight
MAX_DATA = 256 * 1024  # largest DATA body (a UDP datagram always fits); larger TCP reads are split
DEFAULT_WINDOW = 1024 * 1024
MIN_WINDOW = 4 * 1024
MAX_WINDOW = 64 * 1024 * 1024


class FrameType(IntEnum):
    HELLO = 0x01  # agent -> hub: {"versions": [...], "window": n}; hub -> agent: {"version": v, "window": n}
    OPEN = 0x02  # hub -> agent: JSON (protocol, deviceId, deviceName, port, host, window)
    OPENED = 0x03  # agent -> hub: JSON {"window": n}: the agent's credit for the hub
    DATA = 0x04  # raw bytes (UDP: exactly one datagram)
    WINDOW = 0x05  # uint32: credit returned to the other side
    EOF = 0x06  # TCP: the sender's socket peer finished sending (half close)
    CLOSE = 0x07  # uint8 code + UTF-8 reason; the channel is gone on both sides


class CloseCode(IntEnum):
    NORMAL = 0  # one side's socket closed
    REFUSED = 1  # the device refused the connection
    UNREACHABLE = 2  # no route, host unknown, or the address of the device is unknown
    NOT_PERMITTED = 3  # the agent's policy does not allow this device or address
    PROTOCOL_ERROR = 4  # a malformed frame, a window overrun, an unknown channel
    TIMEOUT = 5  # the connection to the device timed out
    GOING_AWAY = 6  # the link was closed, or the hub / agent is shutting down
    UNSUPPORTED = 7  # unknown protocol or version
    OVERLOADED = 8  # too many channels, or the MQTT session could not take the frame


class FrameError(ValueError):
    """A frame that cannot be decoded."""


@dataclass(slots=True)
class Frame:
    version: int
    type: FrameType
    channel: int
    body: bytes

    def json(self) -> dict[str, Any]:
        try:
            value = orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError as exc:
            raise FrameError(f"{self.type.name} body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise FrameError(f"{self.type.name} body must be a JSON object")
        return value

    def credit(self) -> int:
        if len(self.body) != 4:
            raise FrameError("WINDOW body must be 4 bytes")
        value: int = _U32.unpack(self.body)[0]
        return value

    def close_reason(self) -> tuple[int, str]:
        if not self.body:
            return CloseCode.NORMAL, ""
        return self.body[0], self.body[1:].decode("utf-8", "replace")


def decode(payload: bytes) -> Frame:
    if len(payload) < HEADER_SIZE:
        raise FrameError(f"a frame has at least {HEADER_SIZE} bytes, got {len(payload)}")
    version, ftype, channel = HEADER.unpack_from(payload)
    try:
        t = FrameType(ftype)
    except ValueError:
        raise FrameError(f"unknown frame type 0x{ftype:02x}") from None
    return Frame(version, t, channel, payload[HEADER_SIZE:])


def encode(ftype: FrameType, channel: int, body: bytes = b"", version: int = VERSION) -> bytes:
    return HEADER.pack(version, ftype, channel) + body


def data_frame(channel: int, data: bytes | bytearray | memoryview) -> bytes:
    return HEADER.pack(VERSION, FrameType.DATA, channel) + data


def json_frame(ftype: FrameType, channel: int, body: dict[str, Any]) -> bytes:
    return encode(ftype, channel, orjson.dumps(body))


def window_frame(channel: int, credit: int) -> bytes:
    return encode(FrameType.WINDOW, channel, _U32.pack(credit))


def close_frame(channel: int, code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
    return encode(FrameType.CLOSE, channel, bytes((code,)) + reason.encode()[:200])


def stream_eof_frame(channel: int, offset: int) -> bytes:
    """EOF of a stream channel whose connection cannot carry a half close (TLS): the sender is
    done after ``offset`` bytes on the stream; the receiver passes EOF on once it has them all."""
    return encode(FrameType.EOF, channel, _U64.pack(offset))


def stream_eof_offset(frame: Frame) -> int | None:
    """The offset of a stream channel's EOF frame (None: a framed channel's EOF, no body)."""
    if len(frame.body) != _U64.size:
        return None
    return int(_U64.unpack(frame.body)[0])


def cost(n: int) -> int:
    """Credit one DATA frame of ``n`` bytes uses."""
    return n + FRAME_COST


def check_window(value: Any) -> int:
    if type(value) is not int or not MIN_WINDOW <= value <= MAX_WINDOW:
        raise FrameError(f"window must be an integer {MIN_WINDOW}-{MAX_WINDOW}, got {value!r}")
    return value


class StreamSender:
    """The sending half of one channel: DATA frames within the credit the peer granted.

    ``send`` emits what the credit allows and keeps the rest (at most what one read of the
    source socket gave); it returns False when something is held back, and the caller stops
    reading its socket until ``grant`` (a WINDOW from the peer) returns True. EOF and CLOSE
    requested while data is held wait for it, so they never overtake data.
    """

    __slots__ = ("available", "channel", "close_after", "emit", "eof_after", "pending")

    def __init__(self, channel: int, window: int, emit: Callable[[bytes], None]) -> None:
        self.channel = channel
        self.available = window
        self.emit = emit
        self.pending = b""
        self.eof_after = False
        self.close_after: bytes | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.pending)

    def send(self, data: bytes) -> bool:
        if self.pending:
            self.pending += data
            return False
        return self._push(data)

    def _push(self, data: bytes) -> bool:
        size = len(data)
        off = 0
        emit, ch = self.emit, self.channel
        while off < size:
            room = self.available - FRAME_COST
            if room <= 0:
                break
            n = min(size - off, MAX_DATA, room)
            emit(HEADER.pack(VERSION, FrameType.DATA, ch) + (data[off : off + n] if off or n < size else data))
            self.available -= n + FRAME_COST
            off += n
        if off < size:
            self.pending = data[off:]
            return False
        return True

    def send_datagram(self, data: bytes) -> bool:
        """UDP: one DATA frame per datagram, or False (drop it) when the credit does not cover it."""
        c = len(data) + FRAME_COST
        if c > self.available:
            return False
        self.available -= c
        self.emit(HEADER.pack(VERSION, FrameType.DATA, self.channel) + data)
        return True

    def grant(self, n: int) -> bool:
        """Credit came back; True when nothing is held any more (resume reading the source)."""
        self.available += n
        if self.pending:
            data, self.pending = self.pending, b""
            if not self._push(data):
                return False
        if self.eof_after:
            self.eof_after = False
            self.emit(encode(FrameType.EOF, self.channel))
        if self.close_after is not None:
            frame, self.close_after = self.close_after, None
            self.emit(frame)
        return True

    def eof(self) -> None:
        if self.pending:
            self.eof_after = True
        else:
            self.emit(encode(FrameType.EOF, self.channel))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bool:
        """CLOSE now (True), or after the held data once credit allows (False)."""
        frame = close_frame(self.channel, code, reason)
        if self.pending:
            self.close_after = frame
            return False
        self.emit(frame)
        return True


class ReceiveWindow:
    """What this side granted on one channel: checks the peer keeps to it and decides when to
    return credit (after the bytes were handed to the socket, in steps of a quarter window)."""

    __slots__ = ("outstanding", "pending", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.outstanding = 0  # cost received and not yet returned
        self.pending = 0  # of which delivered to our socket, ready to return

    def received(self, n: int) -> bool:
        """A DATA frame of ``n`` bytes arrived; False if the peer overran the window."""
        self.outstanding += cost(n)
        return self.outstanding <= self.window

    def delivered(self, n: int, paused: bool = False) -> int:
        """``n`` bytes' frame was handed to our socket; returns credit to send back now (0 = not
        yet). While our socket's buffer is full (``paused``) credit is held back: that is what
        makes a slow reader slow the sender down instead of growing our buffer."""
        self.pending += cost(n)
        return 0 if paused else self.release(False)

    def release(self, force: bool) -> int:
        """Credit to return now: everything pending once it reaches a quarter window (or ``force``)."""
        p = self.pending
        if p and (force or p >= self.window >> 2):
            self.pending = 0
            self.outstanding -= p
            return p
        return 0
