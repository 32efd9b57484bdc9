"""AES-256-CTR on the client leg of a device link: the keystream layouts (docs/devicelink.md,
"Encryption", is the normative text with a worked example that a test checks).

One key (32 bytes) and one initialization vector (16 bytes) per link, given by the user, and one
of two modes:

``literal`` (the default; seed 002 taken at its word): AES-256-CTR with the key and with the IV
as the initial counter block, nothing else. On TCP each direction of each connection is one
keystream starting at the IV (the client encrypts what it sends from the IV on, and decrypts
what it receives from the IV on); each UDP datagram, in either direction, is encrypted on its
own from the IV (no header). The same keystream therefore serves both directions, every
connection and every datagram: the XOR of two ciphertexts is the XOR of their plaintexts.

``per-connection`` (opt-in, the safer scheme below): the 128-bit counter block that starts a
keystream is, as a big-endian integer::

    start(d, n) = (IV + d * 2**127 + n * 2**64) mod 2**128

``d`` is the direction (0: client -> device, 1: device -> client) and ``n`` a 63-bit number:
the connection number of a TCP connection (the client sends it in clear as the first 8 bytes of
the connection, big endian; it must grow from one connection of a link to the next), or the
datagram number of a UDP datagram (the first 8 bytes of every datagram, big endian, before its
ciphertext). A stream or a datagram then counts blocks upwards from its start block, as
standard CTR does (``cryptography``'s ``modes.CTR``). Distinct (d, n, block) triples never map
to the same counter block, so no keystream is ever used twice within a link.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from gatehub.errors import InvalidInput

KEY_BYTES = 32
IV_BYTES = 16
NUMBER_BYTES = 8
MAX_NUMBER = (1 << 63) - 1
LITERAL = "literal"
PER_CONNECTION = "per-connection"
MODES = (LITERAL, PER_CONNECTION)
UPSTREAM = 0  # client -> device: the hub decrypts
DOWNSTREAM = 1  # device -> client: the hub encrypts
_MOD = 1 << 128
_U64 = struct.Struct(">Q")


def parse_hex(value: str, nbytes: int, field: str) -> bytes:
    """Hex text of exactly ``nbytes`` bytes (upper or lower case), or a clear InvalidInput."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) != 2 * nbytes:
        raise InvalidInput(f"{field} must be {2 * nbytes} hex digits ({nbytes} bytes), got {len(text)} characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidInput(f"{field} must be hexadecimal (0-9, a-f)") from None


def start_block(iv: bytes, direction: int, number: int) -> bytes:
    if not 0 <= number <= MAX_NUMBER:
        raise ValueError(f"number must be 0..2**63-1, got {number}")
    value = (int.from_bytes(iv, "big") + (direction << 127) + (number << 64)) % _MOD
    return value.to_bytes(16, "big")


def keystream_context(key: bytes, iv: bytes, direction: int, number: int) -> CipherContext:
    """The CTR context of one TCP direction (``update`` continues the stream) or one datagram.
    Encryption and decryption are the same operation in CTR."""
    return Cipher(algorithms.AES(key), modes.CTR(start_block(iv, direction, number))).encryptor()


def encode_number(number: int) -> bytes:
    return _U64.pack(number)


def decode_number(data: bytes | bytearray | memoryview) -> int:
    value: int = _U64.unpack_from(data)[0]
    return value


class LinkCipher:
    """The key, IV and mode of one link, with the per-connection and per-datagram operations."""

    __slots__ = ("_down_number", "iv", "key", "mode")

    def __init__(self, key: bytes, iv: bytes, mode: str = LITERAL) -> None:
        if len(key) != KEY_BYTES or len(iv) != IV_BYTES:
            raise ValueError("AES-256-CTR needs a 32-byte key and a 16-byte IV")
        if mode not in MODES:
            raise ValueError(f"encryption mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.key = key
        self.iv = iv
        self.mode = mode
        self._down_number = 0  # the hub's next UDP datagram number (device -> client)

    @property
    def per_connection(self) -> bool:
        """True: TCP connections start with their 8-byte number (and UDP datagrams with theirs)."""
        return self.mode == PER_CONNECTION

    def literal_stream(self) -> CipherContext:
        """Literal mode: AES-256-CTR from the IV, for one TCP direction or one datagram."""
        return Cipher(algorithms.AES(self.key), modes.CTR(self.iv)).encryptor()

    def stream(self, direction: int, number: int) -> CipherContext:
        return keystream_context(self.key, self.iv, direction, number)

    def open_datagram(self, data: bytes) -> bytes | None:
        """A client's datagram -> plaintext; None if it is too short or its number is invalid."""
        if not self.per_connection:
            ctx = self.literal_stream()
            return ctx.update(data) + ctx.finalize()
        if len(data) < NUMBER_BYTES:
            return None
        number = decode_number(data)
        if number > MAX_NUMBER:
            return None
        ctx = keystream_context(self.key, self.iv, UPSTREAM, number)
        return ctx.update(data[NUMBER_BYTES:]) + ctx.finalize()

    def seal_datagram(self, plaintext: bytes) -> bytes:
        """Plaintext from the device -> the datagram for the client (per-connection: its own
        number, never reused; literal: the IV's keystream, no number)."""
        if not self.per_connection:
            ctx = self.literal_stream()
            return ctx.update(plaintext) + ctx.finalize()
        number = self._down_number
        if number > MAX_NUMBER:
            raise OverflowError("datagram numbers of this link are exhausted")
        self._down_number = number + 1
        ctx = keystream_context(self.key, self.iv, DOWNSTREAM, number)
        return _U64.pack(number) + ctx.update(plaintext) + ctx.finalize()
