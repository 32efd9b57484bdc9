"""Every G-SDK service of a ``gatehub serve`` process (uvloop) with a client generated from
``proto/``: Login (admin and tenant), Tenant, Gateway registry, certificates and their issuance
history, the SubscribeStatus stream seeing a gateway connect and disconnect over MQTTS, and
AddCertificateBlacklist closing that gateway's live MQTTS session.

Before the relay fix (issue 19, defect 1) every call here died right after the TLS handshake:
the relay asserted ``isinstance(transport, asyncio.Transport)``, which uvloop's are not.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess
from tests.integration.gsdk_client import CALL_TIMEOUT as T
from tests.integration.gsdk_client import gsdk
from tests.integration.mqtt_helpers import V5, Paho


def _channel(hub: HubProcess, cert_pem: bytes, key_pem: bytes) -> Any:
    creds = grpc.ssl_channel_credentials(hub.ca_file.read_bytes(), key_pem, cert_pem)
    return grpc.aio.secure_channel(
        f"127.0.0.1:{hub.ports.grpc}", creds, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def _status(call: Any, timeout: float = 10.0) -> tuple[str, int]:
    msg = await asyncio.wait_for(call.read(), timeout)
    return msg.gatewayID, msg.status


async def test_every_gsdk_service(e2e_hub: HubProcess, tmp_path: Path) -> None:
    g = gsdk()
    tenant = unique("gsdk")
    line1, gw_a, gw_b = f"{tenant}-line-1", f"{tenant}-gw-a", f"{tenant}-gw-b"  # device ids are hub-wide
    admin_crt, admin_key = (e2e_hub.certs / "admin.crt").read_bytes(), (e2e_hub.certs / "admin.key").read_bytes()

    # the administrator: Tenant service
    async with _channel(e2e_hub, admin_crt, admin_key) as ch:
        login = g.login_pb2_grpc.LoginStub(ch)
        r = await login.LoginAdmin(g.login_pb2.LoginAdminRequest(adminTenantCert=admin_crt.decode()), timeout=T)
        md = (("token", r.jwtToken),)
        ts = g.tenant_pb2_grpc.TenantStub(ch)
        await ts.Add(
            g.tenant_pb2.AddRequest(tenantInfos=[g.tenant_pb2.TenantInfo(tenantID=tenant, gatewayIDs=[gw_a])]),
            metadata=md,
            timeout=T,
        )
        assert tenant in (await ts.GetList(g.tenant_pb2.GetListRequest(), metadata=md, timeout=T)).tenantIDs
        await ts.AddGateway(g.tenant_pb2.AddGatewayRequest(tenantID=tenant, gatewayIDs=[gw_b]), metadata=md, timeout=T)
        await ts.DeleteGateway(
            g.tenant_pb2.DeleteGatewayRequest(tenantID=tenant, gatewayIDs=[gw_a]), metadata=md, timeout=T
        )
        infos = (await ts.Get(g.tenant_pb2.GetRequest(tenantIDs=[tenant]), metadata=md, timeout=T)).tenantInfos
        assert [(i.tenantID, list(i.gatewayIDs)) for i in infos] == [(tenant, [gw_b])]
        made = await ts.CreateCertificate(
            g.tenant_pb2.CreateCertificateRequest(
                tenantID=tenant, subject=g.cert_pb2.PKIName(country="KR", commonName=tenant), expireAfterYears=1
            ),
            metadata=md,
            timeout=T,
        )
        serial = x509.load_pem_x509_certificate(made.tenantCert.encode()).serial_number
        hist = (
            await ts.GetIssuanceHistory(
                g.tenant_pb2.GetIssuanceHistoryRequest(tenantIDs=[tenant]), metadata=md, timeout=T
            )
        ).certInfos
        assert [(c.tenantID, c.serialNO) for c in hist] == [(tenant, serial)]
        await login.Logout(g.login_pb2.LogoutRequest(), metadata=md, timeout=T)

    # the tenant, with the certificate the Tenant service issued: Gateway service
    async with _channel(e2e_hub, made.tenantCert.encode(), made.tenantKey.encode()) as ch:
        login = g.login_pb2_grpc.LoginStub(ch)
        r = await login.Login(g.login_pb2.LoginRequest(tenantCert=made.tenantCert), timeout=T)
        md = (("token", r.jwtToken),)
        gw = g.gateway_pb2_grpc.GatewayStub(ch)
        await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=[line1]), metadata=md, timeout=T)
        ids = (await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)).gatewayIDs
        assert sorted(ids) == sorted([gw_b, line1])
        await gw.Delete(g.gateway_pb2.DeleteRequest(gatewayIDs=[gw_b]), metadata=md, timeout=T)
        call = gw.SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(queueSize=100), metadata=md)
        await asyncio.wait_for(call.initial_metadata(), T)
        cert = await gw.CreateCertificate(
            g.gateway_pb2.CreateCertificateRequest(
                gatewayID=line1, subject=g.cert_pb2.PKIName(country="KR", commonName="line 1"), expireAfterYears=1
            ),
            metadata=md,
            timeout=T,
        )
        hist = (
            await gw.GetIssuanceHistory(
                g.gateway_pb2.GetIssuanceHistoryRequest(gatewayIDs=[line1]), metadata=md, timeout=T
            )
        ).certInfos
        gw_serial = x509.load_pem_x509_certificate(cert.gatewayCert.encode()).serial_number
        assert [c.serialNO for c in hist] == [gw_serial]

        # the gateway connects over MQTTS with that certificate: the stream and Get see it
        (tmp_path / "gw.crt").write_text(cert.gatewayCert)
        (tmp_path / "gw.key").write_text(cert.gatewayKey)
        tls = e2e_hub.client_tls(tmp_path / "gw.crt", tmp_path / "gw.key")
        c = Paho("gsdk-line-1-tls", V5)
        try:
            rc, _ = await c.connect(e2e_hub.ports.mqtts, tls=tls)
            assert rc == 0
            assert await _status(call) == (line1, g.gateway_pb2.CONNECTED)
            info = await gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=[line1]), metadata=md, timeout=T)
            assert info.gatewayInfos[0].isConnected is True

            # blacklisting its certificate closes the live session (MQTT 5: DISCONNECT 0x87)
            started = time.monotonic()
            await gw.AddCertificateBlacklist(
                g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID=line1, serialNOs=[gw_serial]),
                metadata=md,
                timeout=T,
            )
            assert await c.disconnected(timeout=5) == 0x87
            elapsed = time.monotonic() - started
            assert elapsed < 2.0, elapsed
            assert await _status(call) == (line1, g.gateway_pb2.DISCONNECTED)
        finally:
            c.stop()
        bl = (
            await gw.GetCertificateBlacklist(
                g.gateway_pb2.GetCertificateBlacklistRequest(gatewayIDs=[line1]), metadata=md, timeout=T
            )
        ).certInfos
        assert [b.serialNO for b in bl] == [gw_serial]
        await gw.DeleteCertificateBlacklist(
            g.gateway_pb2.DeleteCertificateBlacklistRequest(gatewayID=line1, serialNOs=[gw_serial]),
            metadata=md,
            timeout=T,
        )
        call.cancel()
        await login.Logout(g.login_pb2.LogoutRequest(), metadata=md, timeout=T)


async def test_cli_tenant_certificate_logs_in(e2e_hub: HubProcess) -> None:
    """``gatehub cert tenant`` (the CLI's -ct) gives a certificate a G-SDK client logs in with."""
    g = gsdk()
    tenant = unique("gsdk-cli")
    e2e_hub.tenant(tenant)
    out = e2e_hub.cli("cert", "tenant", tenant, "--out", str(e2e_hub.certs))
    crt = (e2e_hub.certs / f"{tenant}.crt").read_bytes()
    key = (e2e_hub.certs / f"{tenant}.key").read_bytes()
    assert out["kind"] == "tenant" and out["tenantId"] == tenant
    async with _channel(e2e_hub, crt, key) as ch:
        r = await g.login_pb2_grpc.LoginStub(ch).Login(g.login_pb2.LoginRequest(tenantCert=crt.decode()), timeout=T)
        md = (("token", r.jwtToken),)
        ids = (
            await g.gateway_pb2_grpc.GatewayStub(ch).GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=T)
        ).gatewayIDs
        assert list(ids) == []
