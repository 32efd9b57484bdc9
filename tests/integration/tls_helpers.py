"""A TLS 1.0/1.1 ClientHello as literal bytes, and what a server answers to it.

Python's ``ssl`` may refuse to send such a hello at all (OpenSSL's security level), so the test
writes it over a plain socket: record header, handshake header, client_version, a fixed random,
no session id, five cipher suites of that era (ECDHE/RSA with AES-CBC, 3DES), null compression,
no extensions. Deterministic, and what an old client sends in substance.
"""

from __future__ import annotations

import asyncio

_HELLO_BODY = (
    bytes(range(32))  # random
    + b"\x00"  # session id: none
    + b"\x00\x0a\xc0\x13\xc0\x14\x00\x2f\x00\x35\x00\x0a"  # cipher suites (10 bytes)
    + b"\x01\x00"  # compression methods: null
)


def legacy_hello(version: bytes) -> bytes:
    """A ClientHello record offering at most ``version`` (b"\\x03\\x01" = TLS 1.0, 03 02 = 1.1)."""
    body = version + _HELLO_BODY
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


async def answer_to(port: int, hello: bytes) -> bytes:
    """What 127.0.0.1:``port`` sends back to ``hello`` before it closes (at most 64 bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(hello)
        await writer.drain()
        return await asyncio.wait_for(reader.read(64), 10)
    finally:
        writer.close()
