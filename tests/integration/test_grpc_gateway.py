"""The G-SDK gRPC API with a client generated from the protos: every RPC, errors, status stream.

Status changes are driven with ``store.devices.set_presence`` — what the MQTT transport calls
when a gateway connects or disconnects (the MQTT transport is not part of this suite yet).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from gatehub.domain.model import NodeType, Presence
from gatehub.pki import CertKind, parse_certificate
from gatehub.transports.grpc.server import GrpcListener
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master

T = CALL_TIMEOUT


async def _code(coro: Any) -> tuple[Any, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code(), info.value.details() or ""


async def _read(call: Any, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(call.read(), timeout)


async def test_every_gateway_rpc(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            gw = m.gateway(ch)
            assert list((await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs) == []
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-1", "gw-2"]), metadata=md, timeout=T)
            ids = (await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs
            assert sorted(ids) == ["gw-1", "gw-2"]
            # sub-devices: their uint32 numbers are GatewayInfo.deviceIDs
            store = m.node.store
            assert store is not None
            await store.catalog.create_product("acme", "sensor", "sensor", NodeType.SUBDEVICE)
            subs = [
                await store.devices.create("acme", f"s{i}", "sensor", device_id=f"s{i}", parent_id="gw-1")
                for i in range(3)
            ]
            await store.devices.set_presence("acme", "gw-1", Presence.ONLINE)
            infos = (
                await gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=["gw-1", "gw-2"]), metadata=md, timeout=T)
            ).gatewayInfos
            assert infos[0].gatewayID == "gw-1" and infos[0].isConnected is True
            assert sorted(infos[0].deviceIDs) == sorted(d.number for d in subs)
            assert infos[1].gatewayID == "gw-2" and infos[1].isConnected is False and list(infos[1].deviceIDs) == []

            # certificates
            subject = g.cert_pb2.PKIName(
                country="KR",
                province="Seoul",
                city="Seoul",
                organization="Acme",
                organizationUnit="IoT",
                commonName="gateway one",
            )
            r = await gw.CreateCertificate(
                g.gateway_pb2.CreateCertificateRequest(gatewayID="gw-1", subject=subject, expireAfterYears=2),
                metadata=md,
                timeout=T,
            )
            assert m.node.pki is not None
            ident = parse_certificate(m.node.pki.ca, r.gatewayCert)
            assert (ident.kind.value, ident.tenant_id, ident.gateway_id) == ("gateway", "acme", "gw-1")
            assert ident.subject.commonName == "gateway one" and ident.subject.country == "KR"
            assert 2 * 365 * 86400 - 86400 <= ident.not_after - ident.not_before <= 2 * 366 * 86400 + 120
            assert "PRIVATE KEY" in r.gatewayKey
            cert_obj = x509.load_pem_x509_certificate(r.gatewayCert.encode())
            assert 0 < cert_obj.serial_number < 2**63
            r2 = await gw.CreateCertificate(
                g.gateway_pb2.CreateCertificateRequest(gatewayID="gw-2", expireAfterYears=1), metadata=md, timeout=T
            )
            serial2 = x509.load_pem_x509_certificate(r2.gatewayCert.encode()).serial_number

            hist = (
                await gw.GetIssuanceHistory(
                    g.gateway_pb2.GetIssuanceHistoryRequest(gatewayIDs=["gw-1"]), metadata=md, timeout=T
                )
            ).certInfos
            assert [(c.gatewayID, c.serialNO, c.blacklisted) for c in hist] == [("gw-1", ident.serial, False)]
            assert hist[0].subject.organizationUnit == "IoT"
            assert hist[0].issueDate == ident.not_before and hist[0].expiryDate == ident.not_after
            every = (
                await gw.GetIssuanceHistory(g.gateway_pb2.GetIssuanceHistoryRequest(), metadata=md, timeout=T)
            ).certInfos
            assert {c.serialNO for c in every} == {ident.serial, serial2}

            # blacklist
            await gw.AddCertificateBlacklist(
                g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="gw-1", serialNOs=[ident.serial]),
                metadata=md,
                timeout=T,
            )
            assert m.node.pki.is_blacklisted(ident.serial)
            bl = (
                await gw.GetCertificateBlacklist(
                    g.gateway_pb2.GetCertificateBlacklistRequest(gatewayIDs=[]), metadata=md, timeout=T
                )
            ).certInfos
            assert [(c.serialNO, c.blacklisted) for c in bl] == [(ident.serial, True)]
            code, msg = await _code(
                gw.AddCertificateBlacklist(
                    g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="gw-1", serialNOs=[serial2]),
                    metadata=md,
                    timeout=T,
                )
            )
            assert code == grpc.StatusCode.NOT_FOUND, msg
            await gw.DeleteCertificateBlacklist(
                g.gateway_pb2.DeleteCertificateBlacklistRequest(gatewayID="gw-1", serialNOs=[ident.serial]),
                metadata=md,
                timeout=T,
            )
            assert not m.node.pki.is_blacklisted(ident.serial)
            bl = (
                await gw.GetCertificateBlacklist(g.gateway_pb2.GetCertificateBlacklistRequest(), metadata=md, timeout=T)
            ).certInfos
            assert list(bl) == []

            # delete
            await gw.Delete(g.gateway_pb2.DeleteRequest(gatewayIDs=["gw-2"]), metadata=md, timeout=T)
            assert list((await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs) == [
                "gw-1"
            ]


async def test_errors_are_status_codes(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            gw = m.gateway(ch)
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-1"]), metadata=md, timeout=T)
            cases = [
                (
                    gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=["nope"]), metadata=md, timeout=T),
                    grpc.StatusCode.NOT_FOUND,
                    "nope",
                ),
                (
                    gw.Delete(g.gateway_pb2.DeleteRequest(gatewayIDs=["nope"]), metadata=md, timeout=T),
                    grpc.StatusCode.NOT_FOUND,
                    "nope",
                ),
                (
                    gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-1"]), metadata=md, timeout=T),
                    grpc.StatusCode.ALREADY_EXISTS,
                    "gw-1",
                ),
                (
                    gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["bad id!"]), metadata=md, timeout=T),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "gatewayID",
                ),
                (
                    gw.CreateCertificate(
                        g.gateway_pb2.CreateCertificateRequest(
                            gatewayID="gw-1", subject=g.cert_pb2.PKIName(country="KOR"), expireAfterYears=1
                        ),
                        metadata=md,
                        timeout=T,
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "country",
                ),
                (
                    gw.CreateCertificate(
                        g.gateway_pb2.CreateCertificateRequest(gatewayID="gw-1", expireAfterYears=0),
                        metadata=md,
                        timeout=T,
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "expireAfterYears",
                ),
                (
                    gw.AddCertificateBlacklist(
                        g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="gw-1", serialNOs=[12345]),
                        metadata=md,
                        timeout=T,
                    ),
                    grpc.StatusCode.NOT_FOUND,
                    "12345",
                ),
                (
                    gw.SubscribeStatus(
                        g.gateway_pb2.SubscribeStatusRequest(queueSize=-1), metadata=md, timeout=T
                    ).read(),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "queueSize",
                ),
                (
                    m.tenants(ch).GetList(g.tenant_pb2.GetListRequest(), metadata=md, timeout=T),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "administrator",
                ),
                (gw.GetList(g.gateway_pb2.GetListRequest(), timeout=T), grpc.StatusCode.UNAUTHENTICATED, "token"),
                (
                    gw.GetList(g.gateway_pb2.GetListRequest(), metadata=(("token", "x.y.z"),), timeout=T),
                    grpc.StatusCode.UNAUTHENTICATED,
                    "token",
                ),
            ]
            for coro, want, text in cases:
                code, msg = await _code(coro)
                assert code == want, (want, code, msg)
                assert text in msg, msg
            # nothing changed by the failed batch: a batch with one bad id adds none
            await _code(gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-new", "gw-1"]), metadata=md, timeout=T))
            assert list((await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs) == [
                "gw-1"
            ]


async def test_login_binds_token_to_the_connection_certificate(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        a1 = await m.tenant("acme")
        a2 = await m.registry.create_tenant_certificate("acme", a1.subject, 1)
        async with m.channel(a1) as ch1, m.channel(a2) as ch2:
            # the certificate sent must be the connection's own
            code, msg = await _code(
                m.g.login_pb2_grpc.LoginStub(ch2).Login(g.login_pb2.LoginRequest(tenantCert=a1.cert_pem), timeout=T)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED and "client certificate of this" in msg
            code, _ = await _code(
                m.g.login_pb2_grpc.LoginStub(ch1).Login(g.login_pb2.LoginRequest(tenantCert="not a cert"), timeout=T)
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            code, msg = await _code(
                m.g.login_pb2_grpc.LoginStub(ch1).LoginAdmin(
                    g.login_pb2.LoginAdminRequest(adminTenantCert=a1.cert_pem), timeout=T
                )
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED, msg
            md1 = await m.login(ch1, a1)
            # a token used on another certificate's connection is refused
            code, msg = await _code(m.gateway(ch2).GetList(g.gateway_pb2.GetListRequest(), metadata=md1, timeout=T))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "another client certificate" in msg
            assert await m.gateway(ch1).GetList(g.gateway_pb2.GetListRequest(), metadata=md1, timeout=T) is not None
            # Logout ends the token
            await m.g.login_pb2_grpc.LoginStub(ch1).Logout(g.login_pb2.LogoutRequest(), metadata=md1, timeout=T)
            code, msg = await _code(m.gateway(ch1).GetList(g.gateway_pb2.GetListRequest(), metadata=md1, timeout=T))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "Logout" in msg
        # no client certificate: refused at the handshake
        async with m.channel(None) as ch:
            code, _ = await _code(
                m.g.login_pb2_grpc.LoginStub(ch).Login(g.login_pb2.LoginRequest(tenantCert=a1.cert_pem), timeout=T)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
        # straight to the internal plaintext port, bypassing the TLS relay: refused
        listener = m.node.component(GrpcListener)
        assert listener is not None and listener.relay is not None
        internal = listener.relay.upstream_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{internal}") as ch:
            code, msg = await _code(
                m.g.login_pb2_grpc.LoginStub(ch).Login(g.login_pb2.LoginRequest(tenantCert=a1.cert_pem), timeout=T)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED and "mTLS" in msg


async def test_tenant_service_for_the_administrator(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        admin = await m.admin()
        async with m.channel(admin) as ch:
            md = await m.login(ch, admin)
            ts = m.tenants(ch)
            await ts.Add(
                g.tenant_pb2.AddRequest(
                    tenantInfos=[
                        g.tenant_pb2.TenantInfo(tenantID="t1", gatewayIDs=["a", "b"]),
                        g.tenant_pb2.TenantInfo(tenantID="t2"),
                    ]
                ),
                metadata=md,
                timeout=T,
            )
            assert sorted((await ts.GetList(g.tenant_pb2.GetListRequest(), metadata=md, timeout=T)).tenantIDs) == [
                "t1",
                "t2",
            ]
            await ts.AddGateway(g.tenant_pb2.AddGatewayRequest(tenantID="t2", gatewayIDs=["c"]), metadata=md, timeout=T)
            await ts.DeleteGateway(
                g.tenant_pb2.DeleteGatewayRequest(tenantID="t1", gatewayIDs=["b"]), metadata=md, timeout=T
            )
            infos = (await ts.Get(g.tenant_pb2.GetRequest(tenantIDs=["t1", "t2"]), metadata=md, timeout=T)).tenantInfos
            assert [(i.tenantID, list(i.gatewayIDs)) for i in infos] == [("t1", ["a"]), ("t2", ["c"])]
            for coro, want in [
                (
                    ts.Add(
                        g.tenant_pb2.AddRequest(tenantInfos=[g.tenant_pb2.TenantInfo(tenantID="t1")]),
                        metadata=md,
                        timeout=T,
                    ),
                    grpc.StatusCode.ALREADY_EXISTS,
                ),
                (
                    ts.Add(
                        g.tenant_pb2.AddRequest(tenantInfos=[g.tenant_pb2.TenantInfo(tenantID="administrator")]),
                        metadata=md,
                        timeout=T,
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (ts.Get(g.tenant_pb2.GetRequest(tenantIDs=["zz"]), metadata=md, timeout=T), grpc.StatusCode.NOT_FOUND),
                (
                    ts.AddGateway(
                        g.tenant_pb2.AddGatewayRequest(tenantID="t2", gatewayIDs=["a"]), metadata=md, timeout=T
                    ),
                    grpc.StatusCode.PERMISSION_DENIED,
                ),
                (
                    m.gateway(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
            ]:
                code, msg = await _code(coro)
                assert code == want, (want, code, msg)
            # tenant certificates
            r = await ts.CreateCertificate(
                g.tenant_pb2.CreateCertificateRequest(
                    tenantID="t1", subject=g.cert_pb2.PKIName(country="US"), expireAfterYears=1
                ),
                metadata=md,
                timeout=T,
            )
            serial = x509.load_pem_x509_certificate(r.tenantCert.encode()).serial_number
            hist = (
                await ts.GetIssuanceHistory(
                    g.tenant_pb2.GetIssuanceHistoryRequest(tenantIDs=["t1"]), metadata=md, timeout=T
                )
            ).certInfos
            assert [(c.tenantID, c.serialNO) for c in hist] == [("t1", serial)]
            await ts.AddCertificateBlacklist(
                g.tenant_pb2.AddCertificateBlacklistRequest(tenantID="t1", serialNOs=[serial]), metadata=md, timeout=T
            )
            bl = (
                await ts.GetCertificateBlacklist(g.tenant_pb2.GetCertificateBlacklistRequest(), metadata=md, timeout=T)
            ).certInfos
            assert [c.serialNO for c in bl] == [serial]
            await ts.DeleteCertificateBlacklist(
                g.tenant_pb2.DeleteCertificateBlacklistRequest(tenantID="t1", serialNOs=[serial]),
                metadata=md,
                timeout=T,
            )
            # LoginAdmin with a tenantID manages that tenant's gateways
            md_t1 = (
                (
                    "token",
                    (
                        await m.g.login_pb2_grpc.LoginStub(ch).LoginAdmin(
                            g.login_pb2.LoginAdminRequest(adminTenantCert=admin.cert_pem, tenantID="t1"), timeout=T
                        )
                    ).jwtToken,
                ),
            )
            assert list(
                (await m.gateway(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md_t1, timeout=T)).gatewayIDs
            ) == ["a"]
            await ts.Delete(g.tenant_pb2.DeleteRequest(tenantIDs=["t2"]), metadata=md, timeout=T)
            assert (await ts.GetList(g.tenant_pb2.GetListRequest(), metadata=md, timeout=T)).tenantIDs == ["t1"]
        # the new tenant certificate logs in with Login
        t1 = dataclasses.replace(
            admin, serial=serial, kind=CertKind.TENANT, tenant_id="t1", cert_pem=r.tenantCert, key_pem=r.tenantKey
        )
        async with m.channel(t1) as ch:
            md = await m.login(ch, t1)
            ids = (await m.gateway(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs
            assert list(ids) == ["a"]


async def test_subscribe_status_fan_out_and_order(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        cert = await m.tenant("acme")
        other = await m.tenant("other")
        store = m.node.store
        assert store is not None
        async with m.channel(cert) as ch, m.channel(other) as och:
            md = await m.login(ch, cert)
            omd = await m.login(och, other)
            gw = m.gateway(ch)
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-1", "gw-2"]), metadata=md, timeout=T)
            await m.gateway(och).Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-x"]), metadata=omd, timeout=T)
            calls = [
                gw.SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(queueSize=100), metadata=md) for _ in range(5)
            ]
            ocall = m.gateway(och).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(), metadata=omd)
            for c in [*calls, ocall]:
                await asyncio.wait_for(c.initial_metadata(), 5)
            before = int(time.time())
            changes = [
                ("gw-1", Presence.ONLINE),
                ("gw-2", Presence.ONLINE),
                ("gw-1", Presence.OFFLINE),
                ("gw-1", Presence.ONLINE),
                ("gw-2", Presence.OFFLINE),
            ]
            for dev, presence in changes:
                await store.devices.set_presence("acme", dev, presence)
            await store.devices.set_presence("other", "gw-x", Presence.ONLINE)
            want = [
                (d, g.gateway_pb2.CONNECTED if p is Presence.ONLINE else g.gateway_pb2.DISCONNECTED) for d, p in changes
            ]
            for c in calls:
                got = [await _read(c) for _ in changes]
                assert [(x.gatewayID, x.status) for x in got] == want
                assert all(before - 1 <= x.timestamp <= time.time() + 1 for x in got)
            x = await _read(ocall)
            assert (x.gatewayID, x.status) == ("gw-x", g.gateway_pb2.CONNECTED)  # only its own tenant's
            # a sub-device's presence is not a gateway status change
            await store.catalog.create_product("acme", "sensor", "sensor", NodeType.SUBDEVICE)
            await store.devices.create("acme", "s1", "sensor", device_id="s1", parent_id="gw-1")
            await store.devices.set_presence("acme", "s1", Presence.ONLINE)
            await store.devices.set_presence("acme", "gw-2", Presence.ONLINE)
            assert (await _read(calls[0])).gatewayID == "gw-2"
            for c in [*calls, ocall]:
                c.cancel()


async def test_slow_subscriber_is_told_and_others_are_not_stalled(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        g = m.g
        cert = await m.tenant("acme")
        long_id = "g" * 120
        await m.registry.add_gateways("acme", [long_id])
        # the slow client: small HTTP/2 windows, never reads until the end
        async with m.channel(cert, **{"grpc.http2.bdp_probe": 0}) as slow_ch, m.channel(cert) as ch:
            md = await m.login(ch, cert)
            smd = await m.login(slow_ch, cert)
            slow = m.gateway(slow_ch).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(queueSize=10), metadata=smd)
            fast = m.gateway(ch).SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(queueSize=100_000), metadata=md)
            await asyncio.wait_for(slow.initial_metadata(), 5)
            await asyncio.wait_for(fast.initial_metadata(), 5)
            total = 20_000  # ~2.7 MB of StatusChange messages: more than the windows and socket buffers hold
            received = 0

            async def reader() -> None:
                nonlocal received
                while received < total:
                    x = await _read(fast, 10)
                    assert x.status == (received % 2)
                    received += 1

            task = asyncio.create_task(reader())
            t0 = time.perf_counter()
            for i in range(total):
                m.node.bus.publish(
                    f"t.acme.status.{long_id}",
                    {
                        "type": "status",
                        "deviceId": long_id,
                        "kind": "gateway",
                        "presence": "online" if i % 2 else "offline",
                        "ts": 1_700_000_000_000 + i,
                    },
                )
                if i % 500 == 499:
                    await asyncio.sleep(0.002)
            await asyncio.wait_for(task, 30)
            assert received == total
            assert time.perf_counter() - t0 < 30
            # the slow one reads what was buffered, then learns it fell behind
            code = None
            n = 0
            try:
                while True:
                    await _read(slow, 10)
                    n += 1
            except grpc.aio.AioRpcError as exc:
                code, msg = exc.code(), exc.details() or ""
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, n)
            assert "fell more than 10" in msg
            assert n < total
            fast.cancel()
