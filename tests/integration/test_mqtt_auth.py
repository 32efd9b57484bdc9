"""Who may connect: the anonymous tenant, access tokens, client certificates (mTLS) and revocation;
and tenant isolation of every topic."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from pathlib import Path

import pytest

from gatehub.domain.model import Presence
from gatehub.pki import CertificateAuthority, PKIName, issue_gateway_certificate
from gatehub.protocols.mqtt import ConnackPacket
from tests.integration.mqtt_helpers import V5, V311, MqttNode, Paho, RawClient, eventually, mqtt_node

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _connack(port: int, version: int, **fields: object) -> ConnackPacket:
    raw = await RawClient.open(port, version)
    try:
        ack = await raw.connect("c1", **fields)  # type: ignore[arg-type]
        if ack.reason_code:
            assert await raw.closed() == []  # refused: the server closes the connection
        return ack
    finally:
        await raw.close()


async def test_anonymous_tenant_on_and_off(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path / "on", db_url) as h:
        assert (await _connack(h.port, 5)).reason_code == 0
        assert (await _connack(h.port, 4)).reason_code == 0
        with Paho("anon") as c:
            assert await c.connect(h.port) == (0, False)
            live = next(iter(h.hub.live.values()))
            assert live.principal is not None
            assert (live.principal.tenant_id, live.principal.device_id, live.principal.method) == (
                "anon",
                None,
                "anonymous",
            )
            await c.disconnect()
    async with mqtt_node(
        tmp_path / "off", f"sqlite+aiosqlite:///{tmp_path / 'off.db'}", mqtt_anonymous_tenant=None
    ) as h:
        assert (await _connack(h.port, 5)).reason_code == 0x87  # not authorized
        assert (await _connack(h.port, 4)).reason_code == 5  # 3.1.1: not authorized
        with Paho("anon") as c:
            assert (await c.connect(h.port))[0] == 0x87
        assert not h.hub.live and not h.hub.connections


async def test_access_token_auth(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("acme", ("dev1", "tok-dev1"))
        assert (await _connack(h.port, 5, username="wrong-token")).reason_code == 0x86  # bad user name or password
        assert (await _connack(h.port, 4, username="wrong-token")).reason_code == 4  # 3.1.1: bad user name or password
        assert (await _connack(h.port, 5)).reason_code == 0x87  # no credentials at all: not authorized
        for version in (V311, V5):
            with Paho(f"dev1-{version}", version) as c:
                assert await c.connect(h.port, username="tok-dev1") == (0, False)
                session = await eventually(lambda: h.hub.by_device.get("dev1"))
                assert session.principal.tenant_id == "acme"
                assert session.principal.method == "token"
                dev = await eventually_online(h, "acme", "dev1")
                assert dev.presence is Presence.ONLINE
                await c.disconnect()
        await eventually_async(lambda: presence_is(h, "acme", "dev1", Presence.OFFLINE))


async def presence_is(h: MqttNode, tenant: str, dev: str, presence: Presence) -> bool:
    return bool((await h.store.devices.get(tenant, dev)).presence is presence)


async def eventually_async(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def eventually_online(h: MqttNode, tenant: str, dev: str) -> object:
    await eventually_async(lambda: presence_is(h, tenant, dev, Presence.ONLINE))
    return await h.store.devices.get(tenant, dev)


async def test_tenant_isolation(tmp_path: Path, db_url: str) -> None:
    """Devices of tenants A and B use the same topics and client ids and never see each other."""
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("ta", ("a1", "tok-a1"), ("a2", "tok-a2"))
        await h.tenant_with_devices("tb", ("b1", "tok-b1"), ("b2", "tok-b2"))
        with (
            Paho("same-id", V5) as a_sub,
            Paho("same-id", V311) as b_sub,
            Paho("pub-a", V5) as a_pub,
            Paho("pub-b", V311) as b_pub,
        ):
            assert await a_sub.connect(h.port, username="tok-a1") == (0, False)
            assert await b_sub.connect(h.port, username="tok-b1") == (0, False)  # same client id: no takeover
            await a_sub.subscribe("#", 1)
            await b_sub.subscribe("#", 1)
            await a_sub.subscribe("$share/g/#", 1)
            await b_sub.subscribe("$share/g/#", 1)
            await a_pub.connect(h.port, username="tok-a2")
            await b_pub.connect(h.port, username="tok-b2")
            await a_pub.publish("shared/topic", b"from A", 1)
            await a_pub.publish("retained/x", b"A retained", 1, retain=True)
            await b_pub.publish("shared/topic", b"from B", 1)
            a_got = [(m.topic, m.payload) for m in await a_sub.expect(4)]
            b_got = [(m.topic, m.payload) for m in await b_sub.expect(2)]
            assert sorted(a_got) == sorted([("shared/topic", b"from A")] * 2 + [("retained/x", b"A retained")] * 2)
            assert b_got == [("shared/topic", b"from B")] * 2
            await a_sub.nothing(0.2)
            await b_sub.nothing(0.2)
            assert a_sub.client.is_connected() and b_sub.client.is_connected()
            for c in (a_sub, b_sub, a_pub, b_pub):
                await c.disconnect()
        # retained messages are per tenant too
        with Paho("late-b", V5) as late_b, Paho("late-a", V5) as late_a:
            await late_b.connect(h.port, username="tok-b1")
            await late_b.subscribe("#", 1)
            await late_b.nothing(0.3)
            await late_a.connect(h.port, username="tok-a1")
            await late_a.subscribe("#", 1)
            assert [(m.topic, m.payload, m.retain) for m in await late_a.expect(1)] == [
                ("retained/x", b"A retained", True)
            ]
            await late_a.disconnect()
            await late_b.disconnect()


# --- mTLS --------------------------------------------------------------------------------------
def _tls12(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a refused certificate then fails the handshake itself
    return ctx


async def _refused_at_handshake(h: MqttNode, ctx12: ssl.SSLContext, ctx13: ssl.SSLContext) -> None:
    before = set(h.hub.connections)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", h.tls_port, ssl=ctx12)
    # TLS 1.3: the client finishes first; the server's alert ends the connection before any MQTT
    try:
        r, w = await asyncio.open_connection("127.0.0.1", h.tls_port, ssl=ctx13)
    except (ssl.SSLError, ConnectionResetError):
        pass
    else:
        w.write(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            data = await asyncio.wait_for(r.read(100), 5)
            assert data == b"", data  # never a CONNACK
            raise ConnectionResetError
        w.close()
    assert not h.hub.connections - before  # no MQTT session was ever made


async def test_mtls_refuses_bad_certificates_and_accepts_hub_gateway(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("acme", ("gw1", "tok-gw1"), gateway=True)
        # no client certificate
        await _refused_at_handshake(h, _tls12(h.client_tls(tmp_path)), h.client_tls(tmp_path))
        # a certificate of another CA
        other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
        foreign = issue_gateway_certificate(other, "acme", "gw1", PKIName(), 1)
        await _refused_at_handshake(h, _tls12(h.client_tls(tmp_path, foreign)), h.client_tls(tmp_path, foreign))
        # an expired certificate of the hub CA
        expired = await h.gateway_cert("acme", "gw1", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
        await _refused_at_handshake(h, _tls12(h.client_tls(tmp_path, expired)), h.client_tls(tmp_path, expired))
        # a valid gateway certificate: the session's principal is the gateway
        good = await h.gateway_cert("acme", "gw1")
        with Paho("gw1-client") as c:
            assert await c.connect(h.tls_port, tls=h.client_tls(tmp_path, good)) == (0, False)
            session = await eventually(lambda: h.hub.by_device.get("gw1"))
            p = session.principal
            assert (p.tenant_id, p.device_id, p.method, p.cert_serial) == ("acme", "gw1", "certificate", good.serial)
            await eventually_online(h, "acme", "gw1")
            await c.subscribe("cmd/#", 1)
            await c.publish("cmd/x", b"over tls", 1)
            assert [m.payload for m in await c.expect(1)] == [b"over tls"]
            await c.disconnect()


async def test_revocation_closes_live_session_and_readmits_after_removal(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("acme", ("gw1", "tok-gw1"), ("gw2", "tok-gw2"), gateway=True)
        cert = await h.gateway_cert("acme", "gw1")
        other = await h.gateway_cert("acme", "gw2")
        with Paho("gw1") as c, Paho("bystander") as b:
            assert await c.connect(h.tls_port, tls=h.client_tls(tmp_path, cert)) == (0, False)
            assert await b.connect(h.tls_port, tls=h.client_tls(tmp_path, other)) == (0, False)
            t0 = time.monotonic()
            await h.store.certificates.set_blacklisted([cert.serial], True)
            await h.node.reload_blacklist()
            assert await c.disconnected(timeout=1.0) == 0x87  # not authorized
            assert time.monotonic() - t0 < 1.0
            assert b.client.is_connected()  # other certificates are unaffected
            await b.disconnect()
        await _refused_at_handshake(h, _tls12(h.client_tls(tmp_path, cert)), h.client_tls(tmp_path, cert))
        await h.store.certificates.set_blacklisted([cert.serial], False)
        await h.node.reload_blacklist()
        with Paho("gw1") as again:
            assert await again.connect(h.tls_port, tls=h.client_tls(tmp_path, cert)) == (0, False)
            await again.disconnect()
