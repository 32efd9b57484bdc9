"""Tenant isolation on the G-SDK API: tenant A's token cannot see or touch tenant B's gateways."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from gatehub.domain.model import Presence
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master

T = CALL_TIMEOUT


async def _denied(coro: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, (info.value.code(), info.value.details())
    return info.value.details() or ""


async def test_tenant_a_cannot_touch_tenant_b(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        a, b = await m.tenant("tenant-a"), await m.tenant("tenant-b")
        await m.registry.add_gateways("tenant-b", ["b-gw"])
        b_cert = await m.registry.create_gateway_certificate("tenant-b", "b-gw", a.subject, 1)
        async with m.channel(a) as ch, m.channel(b) as bch:
            md = await m.login(ch, a)
            bmd = await m.login(bch, b)
            gw = m.gateway(ch)
            assert list((await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs) == []
            assert "another tenant" in await _denied(
                gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=["b-gw"]), metadata=md, timeout=T)
            )
            await _denied(gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["b-gw"]), metadata=md, timeout=T))
            await _denied(gw.Delete(g.gateway_pb2.DeleteRequest(gatewayIDs=["b-gw"]), metadata=md, timeout=T))
            await _denied(
                gw.CreateCertificate(
                    g.gateway_pb2.CreateCertificateRequest(gatewayID="b-gw", expireAfterYears=1), metadata=md, timeout=T
                )
            )
            await _denied(
                gw.GetIssuanceHistory(
                    g.gateway_pb2.GetIssuanceHistoryRequest(gatewayIDs=["b-gw"]), metadata=md, timeout=T
                )
            )
            await _denied(
                gw.GetCertificateBlacklist(
                    g.gateway_pb2.GetCertificateBlacklistRequest(gatewayIDs=["b-gw"]), metadata=md, timeout=T
                )
            )
            await _denied(
                gw.AddCertificateBlacklist(
                    g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="b-gw", serialNOs=[b_cert.serial]),
                    metadata=md,
                    timeout=T,
                )
            )
            await _denied(
                gw.DeleteCertificateBlacklist(
                    g.gateway_pb2.DeleteCertificateBlacklistRequest(gatewayID="b-gw", serialNOs=[b_cert.serial]),
                    metadata=md,
                    timeout=T,
                )
            )
            # blacklisting B's serial under one of A's own gateway ids finds nothing
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["a-gw"]), metadata=md, timeout=T)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await gw.AddCertificateBlacklist(
                    g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="a-gw", serialNOs=[b_cert.serial]),
                    metadata=md,
                    timeout=T,
                )
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            # A's whole history does not include B's certificates
            hist = (
                await gw.GetIssuanceHistory(g.gateway_pb2.GetIssuanceHistoryRequest(), metadata=md, timeout=T)
            ).certInfos
            assert list(hist) == []
            # tenant B is untouched
            assert m.node.pki is not None and not m.node.pki.is_blacklisted(b_cert.serial)
            b_ids = (await m.gateway(bch).GetList(g.gateway_pb2.GetListRequest(), metadata=bmd, timeout=T)).gatewayIDs
            assert list(b_ids) == ["b-gw"]
            # A's status stream sees none of B's gateway changes
            stream = gw.SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(), metadata=md)
            await asyncio.wait_for(stream.initial_metadata(), 5)
            store = m.node.store
            assert store is not None
            await store.devices.set_presence("tenant-b", "b-gw", Presence.ONLINE)
            await store.devices.set_presence("tenant-a", "a-gw", Presence.ONLINE)
            x = await asyncio.wait_for(stream.read(), 5)
            assert x.gatewayID == "a-gw"
            stream.cancel()
            # and A's tenant certificate is not an admin one
            await _denied(m.tenants(ch).GetList(g.tenant_pb2.GetListRequest(), metadata=md, timeout=T))
        assert x509.load_pem_x509_certificate(b_cert.cert_pem.encode()).serial_number == b_cert.serial
