"""Every TLS listener of a real node answers a TLS 1.0/1.1 ClientHello with the protocol_version
alert (70), and still serves TLS 1.2+ afterwards (see gatehub.pki.tlsgate)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from gatehub.app.node import Node
from tests.conftest import node_settings
from tests.integration.tls_helpers import answer_to, legacy_hello


async def _tls_handshake_version(port: int, ca_pem: str) -> str | None:
    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.check_hostname = False
    _r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 10)
    try:
        obj = w.get_extra_info("ssl_object")
        return obj.version() if obj is not None else None
    finally:
        w.close()


async def test_every_tls_listener_sends_the_protocol_version_alert(tmp_path: Path, db_url: str) -> None:
    settings = node_settings(tmp_path, db_url, iotda_port=0, mqtts_port=0, grpc_port=0, devicelink_stream_tls_port=0)
    async with Node(settings) as node:
        assert node.pki is not None
        links = node.services.links  # type: ignore[union-attr]
        assert links.tunnels is not None and links.tunnels.streams_tls is not None
        ports = {
            "iotda": node.endpoints.extra["iotda"],
            "mqtts": node.endpoints.extra["mqtt_tls"],
            "grpc": node.endpoints.extra["grpc"],
            "device-link streams": links.tunnels.streams_tls.port,
        }
        for name, port in ports.items():
            for version in (b"\x03\x01", b"\x03\x02"):
                answer = await answer_to(port, legacy_hello(version))
                assert answer == b"\x15" + version + b"\x00\x02\x02\x46", (name, version.hex(), answer.hex())
        # TLS 1.2+ still reaches OpenSSL: the server completes a handshake (the listeners that
        # want a client certificate may refuse it afterwards; the handshake itself is enough here)
        for name in ("iotda", "device-link streams"):
            assert await _tls_handshake_version(ports[name], node.pki.ca.cert_pem) in ("TLSv1.2", "TLSv1.3"), name
