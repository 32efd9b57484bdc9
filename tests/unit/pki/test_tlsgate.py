"""gatehub.pki.tlsgate: the ClientHello judge, and the accept loop on both event loops."""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gatehub.pki import TlsContextProvider
from gatehub.pki.tlsgate import alert_record, legacy_only_hello, serve_tls
from tests.integration.tls_helpers import answer_to, legacy_hello


def _with_extension(hello: bytes, kind: int, data: bytes) -> bytes:
    ext = struct.pack(">HH", kind, len(data)) + data
    body = hello[9:] + struct.pack(">H", len(ext)) + ext
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def test_legacy_only_hello() -> None:
    assert legacy_only_hello(legacy_hello(b"\x03\x01")) == 0x0301
    assert legacy_only_hello(legacy_hello(b"\x03\x02")) == 0x0302
    assert legacy_only_hello(legacy_hello(b"\x03\x03")) is None  # TLS 1.2: OpenSSL decides
    # supported_versions (43) rules over legacy_version (RFC 8446 4.2.1)
    modern = _with_extension(legacy_hello(b"\x03\x01"), 43, b"\x04\x03\x04\x03\x03")
    assert legacy_only_hello(modern) is None
    old = _with_extension(legacy_hello(b"\x03\x01"), 43, b"\x04\x03\x02\x03\x01")
    assert legacy_only_hello(old) == 0x0301
    assert legacy_only_hello(_with_extension(legacy_hello(b"\x03\x02"), 10, b"\x00\x02\x00\x17")) == 0x0302
    hello = legacy_hello(b"\x03\x01")
    assert legacy_only_hello(hello[:20]) is None  # incomplete: not judged
    assert legacy_only_hello(b"GET / HTTP/1.1\r\n\r\n") is None
    assert alert_record(0x0302) == b"\x15\x03\x02\x00\x02\x02\x46"


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _exercise(ctx: ssl.SSLContext, client: ssl.SSLContext) -> None:
    server = await serve_tls(_Echo, ctx, "127.0.0.1", 0, handshake_timeout=10)
    port = server.sockets[0].getsockname()[1]
    try:
        for version in (b"\x03\x01", b"\x03\x02"):
            assert await answer_to(port, legacy_hello(version)) == b"\x15" + version + b"\x00\x02\x02\x46"
        for _ in range(3):  # TLS 1.3 with data right after the handshake reaches the protocol
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            writer.close()
        # a client that connects and goes away before any hello leaves nothing behind
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        await asyncio.sleep(0.05)
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_alert_and_service_on_both_loops(
    provider: TlsContextProvider, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    ctx = provider.server_context(require_client_cert=False, ask_client_cert=False)
    client = ssl.create_default_context(cadata=provider.ca.cert_pem)
    client.check_hostname = False
    run(_exercise(ctx, client))
