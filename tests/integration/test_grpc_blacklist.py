"""Blacklisting over gRPC and HTTPS: refused at the handshake, live sessions closed within a
second, readmitted after removal; changes made by another process (the CLI) are picked up.

(MQTT over TLS is tested with the MQTT transport.)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi import FastAPI

from gatehub.cli.common import opened_store
from gatehub.domain.model import Presence
from gatehub.pki import PKIName
from gatehub.services.registry import GatewayRegistry
from gatehub.transports.http.server import HttpServer
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master

T = CALL_TIMEOUT


async def test_grpc_blacklist_closes_stream_refuses_and_readmits(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        cert = await m.tenant("acme")
        bystander = await m.registry.create_tenant_certificate("acme", PKIName(), 1)
        async with m.channel(cert) as ch, m.channel(bystander) as bch:
            md = await m.login(ch, cert)
            bmd = await m.login(bch, bystander)
            stream = m.gateway(ch).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(), metadata=md)
            other = m.gateway(bch).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(), metadata=bmd)
            await asyncio.wait_for(stream.initial_metadata(), 5)
            await asyncio.wait_for(other.initial_metadata(), 5)
            t0 = time.perf_counter()
            await m.registry.set_blacklisted([cert.serial], True)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(stream.read(), 5)
            elapsed = time.perf_counter() - t0
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "blacklisted" in (info.value.details() or "")
            assert elapsed < 1.0, elapsed
            # the connection itself is closed too: a unary call on it fails
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await m.gateway(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
            # another certificate's stream lives on
            await m.registry.add_gateways("acme", ["gw0"])
            await m.node.store.devices.set_presence("acme", "gw0", Presence.ONLINE)  # type: ignore[union-attr]
            x = await asyncio.wait_for(other.read(), 5)
            assert x.gatewayID == "gw0"
            other.cancel()
        # a new connection with it is refused at the handshake
        async with m.channel(cert) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await m.login(ch, cert)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # removed from the blacklist: admitted again
        await m.registry.set_blacklisted([cert.serial], False)
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            r = await m.gateway(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)
            assert "gw0" in r.gatewayIDs


async def test_expired_and_foreign_certificates_are_refused(tmp_path: Path, db_url: str) -> None:
    import datetime as dt

    from gatehub.pki import CertificateAuthority, issue_tenant_certificate

    async with running_master(tmp_path, db_url) as m:
        await m.tenant("acme")
        assert m.node.pki is not None
        expired = issue_tenant_certificate(
            m.node.pki.ca, "acme", PKIName(), 1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
        )
        foreign_ca = CertificateAuthority.load_or_create(tmp_path / "foreign")
        foreign = issue_tenant_certificate(foreign_ca, "acme", PKIName(), 1)
        for cert in (expired, foreign):
            async with m.channel(cert) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await m.login(ch, cert)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_blacklist_change_by_another_process_reaches_the_node(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url, pki_blacklist_poll=0.2) as m:
        g = m.g
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            stream = m.gateway(ch).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(), metadata=md)
            await asyncio.wait_for(stream.initial_metadata(), 5)
            # what `gatehub cert blacklist add` does: its own store, no node
            async with opened_store(m.node.settings) as (store, _):
                assert m.node.pki is not None
                await GatewayRegistry(store, m.node.pki.ca).set_blacklisted([cert.serial], True)
            t0 = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(stream.read(), 5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert time.perf_counter() - t0 < 1.0
        assert m.node.pki is not None and m.node.pki.is_blacklisted(cert.serial)


def _https_client(ca_pem: str, cert_pem: str, key_pem: str) -> ssl.SSLContext:
    from gatehub.pki import client_context

    return client_context(ca_pem, cert_pem, key_pem)


async def test_https_listener_refuses_blacklisted_client_certificate(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        assert m.node.pki is not None
        cert = await m.tenant("acme")
        app = FastAPI()

        @app.get("/hello")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        server = HttpServer(app, "127.0.0.1", 0, ssl_context=m.node.pki.server_context(require_client_cert=True))
        await server.start()
        try:
            url = f"https://localhost:{server.port}/hello"

            async def get() -> int:
                ctx = _https_client(m.ca_pem, cert.cert_pem, cert.key_pem)
                async with httpx.AsyncClient(verify=ctx, timeout=5) as client:
                    return (await client.get(url)).status_code

            assert await get() == 200
            await m.registry.set_blacklisted([cert.serial], True)
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                await get()
            await m.registry.set_blacklisted([cert.serial], False)
            assert await get() == 200
        finally:
            await server.stop()
