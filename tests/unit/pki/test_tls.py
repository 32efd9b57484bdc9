"""Real TLS handshakes over 127.0.0.1 against an asyncio server using the provider's context."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import stat
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from gatehub.pki import (
    CertificateAuthority,
    CertificateIdentity,
    CertKind,
    IssuedCertificate,
    PKIName,
    TlsContextProvider,
    client_context,
    issue_gateway_certificate,
    peer_identity,
)


@dataclass
class Listener:
    port: int
    identities: list[CertificateIdentity | None] = field(default_factory=list)


@asynccontextmanager
async def serving(provider: TlsContextProvider, ctx: ssl.SSLContext) -> AsyncIterator[Listener]:
    listener = Listener(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        listener.identities.append(peer_identity(provider.ca, ssl_object) if der else None)
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


async def attempt(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> bool:
    """True if the handshake succeeded and the server answered."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_hostname), 5
        )
    except (ssl.SSLError, ConnectionError):
        return False
    try:
        data = await asyncio.wait_for(reader.read(2), 5)
    except (ssl.SSLError, ConnectionError):
        return False
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass
    return data == b"ok"


@pytest.fixture
def gateway(ca: CertificateAuthority) -> IssuedCertificate:
    return issue_gateway_certificate(ca, "acme", "gw-1", PKIName(country="KR", commonName="gw one"), 1)


async def test_accepts_hub_certificate_and_reads_identity(
    provider: TlsContextProvider, gateway: IssuedCertificate
) -> None:
    async with serving(provider, provider.server_context(require_client_cert=True)) as srv:
        ctx = provider.client_context(gateway.cert_pem, gateway.key_pem)
        assert await attempt(srv.port, ctx)
        assert await attempt(srv.port, ctx, server_hostname="127.0.0.1")  # IP SAN
    [ident, _] = srv.identities
    assert ident is not None
    assert (ident.kind, ident.tenant_id, ident.gateway_id, ident.serial) == (
        CertKind.GATEWAY,
        "acme",
        "gw-1",
        gateway.serial,
    )


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_2_minimum(provider: TlsContextProvider, gateway: IssuedCertificate) -> None:
    ctx = provider.server_context(True)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    async with serving(provider, ctx) as srv:
        client = provider.client_context(gateway.cert_pem, gateway.key_pem)
        client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_2
        assert await attempt(srv.port, client)
        old = provider.client_context(gateway.cert_pem, gateway.key_pem)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            refused = not await attempt(srv.port, old)
        except ssl.SSLError:  # the local OpenSSL may refuse to even try TLS 1.1
            refused = True
        assert refused


async def test_refuses_missing_foreign_and_expired(
    ca: CertificateAuthority, other_ca: CertificateAuthority, provider: TlsContextProvider
) -> None:
    foreign = issue_gateway_certificate(other_ca, "acme", "gw-1", PKIName(), 1)
    expired = issue_gateway_certificate(
        ca, "acme", "gw-1", PKIName(), 1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    )
    async with serving(provider, provider.server_context(True)) as srv:
        assert not await attempt(srv.port, provider.client_context())
        assert not await attempt(srv.port, provider.client_context(foreign.cert_pem, foreign.key_pem))
        assert not await attempt(srv.port, provider.client_context(expired.cert_pem, expired.key_pem))
    assert srv.identities == []


async def test_blacklist_applies_to_running_listener(
    ca: CertificateAuthority, provider: TlsContextProvider, gateway: IssuedCertificate
) -> None:
    other = issue_gateway_certificate(ca, "acme", "gw-2", PKIName(), 1)
    ctx = provider.client_context(gateway.cert_pem, gateway.key_pem)
    other_ctx = provider.client_context(other.cert_pem, other.key_pem)
    async with serving(provider, provider.server_context(True)) as srv:
        assert await attempt(srv.port, ctx)
        provider.update_blacklist([gateway.serial])
        assert provider.is_blacklisted(gateway.serial)
        assert not await attempt(srv.port, ctx)
        assert await attempt(srv.port, other_ctx)  # only that serial
        provider.update_blacklist([])
        assert await attempt(srv.port, ctx)
    assert [i.gateway_id for i in srv.identities if i] == ["gw-1", "gw-2", "gw-1"]


async def test_optional_client_certificate(
    ca: CertificateAuthority, provider: TlsContextProvider, gateway: IssuedCertificate
) -> None:
    async with serving(provider, provider.server_context(require_client_cert=False)) as srv:
        assert await attempt(srv.port, provider.client_context())
        assert await attempt(srv.port, provider.client_context(gateway.cert_pem, gateway.key_pem))
        provider.update_blacklist({gateway.serial: time.time()})
        assert not await attempt(srv.port, provider.client_context(gateway.cert_pem, gateway.key_pem))
        assert await attempt(srv.port, provider.client_context())
    assert [i.gateway_id if i else None for i in srv.identities] == [None, "gw-1", None]
    no_ask = provider.server_context(False, ask_client_cert=False)
    assert no_ask.verify_mode == ssl.CERT_NONE
    async with serving(provider, no_ask) as srv:
        assert await attempt(srv.port, provider.client_context(gateway.cert_pem, gateway.key_pem))
    assert srv.identities == [None]


async def test_initial_blacklist(ca: CertificateAuthority, gateway: IssuedCertificate) -> None:
    provider = TlsContextProvider(ca, blacklist=[gateway.serial])
    assert provider.crl.serials == {gateway.serial}
    async with serving(provider, provider.server_context(True)) as srv:
        assert not await attempt(srv.port, provider.client_context(gateway.cert_pem, gateway.key_pem))


def test_revoked_client_cannot_resume_a_session(provider: TlsContextProvider, gateway: IssuedCertificate) -> None:
    """No tickets are issued, so an old session cannot skip the revocation check (TLS 1.2 and 1.3)."""
    server_ctx = provider.server_context(True)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> bool:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                return bool(tls.session_reused)
        except (ssl.SSLError, OSError):
            return False

    def connect(client: ssl.SSLContext, session: ssl.SSLSession | None) -> tuple[bool, ssl.SSLSession | None]:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            try:
                with client.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    ok = tls.recv(2) == b"ok"
                    return ok, tls.session
            except (ssl.SSLError, OSError):
                return False, None

    try:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            provider.update_blacklist([])
            client = provider.client_context(gateway.cert_pem, gateway.key_pem)
            client.maximum_version = version
            results: list[bool] = []

            def record(into: list[bool] = results) -> None:
                into.append(serve_one())

            for step in range(3):
                t = threading.Thread(target=record)
                t.start()
                if step == 0:
                    ok, session = connect(client, None)
                    assert ok and session is not None
                elif step == 1:
                    ok, _ = connect(client, session)
                    assert ok  # a full handshake, not a resumption
                else:
                    provider.update_blacklist([gateway.serial])
                    ok, _ = connect(client, session)
                    assert not ok
                t.join(5)
            assert results == [False, False, False]  # never resumed
    finally:
        listener.close()


def test_server_certificate_cached_and_reissued(ca: CertificateAuthority) -> None:
    first = TlsContextProvider(ca).server_certificate
    key_path = ca.directory / "server.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert (ca.directory / "server.crt").read_text() == first.cert_pem
    assert first.hosts == {"dns:localhost", "ip:127.0.0.1", "ip:::1"}
    again = TlsContextProvider(ca, server_hosts=["127.0.0.1", "LOCALHOST", "::1"]).server_certificate
    assert again.serial == first.serial  # same set of names: reused from disk
    issued: list[IssuedCertificate] = []
    changed = TlsContextProvider(
        ca, server_hosts=["hub.example", "10.0.0.5"], on_server_issued=issued.append
    ).server_certificate
    assert changed.serial != first.serial
    assert [i.serial for i in issued] == [changed.serial]
    cert = x509.load_pem_x509_certificate(changed.cert_pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.example"]
    # expiring soon -> re-issued
    soon = TlsContextProvider(
        ca, server_hosts=["hub.example", "10.0.0.5"], renew_before=dt.timedelta(days=400)
    ).server_certificate
    assert soon.serial != changed.serial


def test_server_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    first_ca = CertificateAuthority.load_or_create(tmp_path / "a")
    stale = TlsContextProvider(first_ca).server_certificate
    second_ca = CertificateAuthority.load_or_create(tmp_path / "b")
    for name in ("server.crt", "server.key"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    assert TlsContextProvider(second_ca).server_certificate.serial != stale.serial


async def test_crl_refreshed_lazily_on_handshake(provider: TlsContextProvider, gateway: IssuedCertificate) -> None:
    provider.update_blacklist([123])
    before = provider.crl
    provider._next_check = 0  # pretend the refresh is due
    provider._crl = type(before)(before.pem, before.der, before.serials, 0, before.next_update, before.number)
    async with serving(provider, provider.server_context(True)) as srv:
        assert await attempt(srv.port, provider.client_context(gateway.cert_pem, gateway.key_pem))
    assert provider.crl.number > before.number
    assert provider.crl.serials == {123}


async def test_client_context_from_ca_pem(provider: TlsContextProvider, gateway: IssuedCertificate) -> None:
    ctx = client_context(provider.ca.cert_pem, gateway.cert_pem, gateway.key_pem)
    async with serving(provider, provider.server_context(True)) as srv:
        assert await attempt(srv.port, ctx)
        wrong_name = client_context(provider.ca.cert_pem, gateway.cert_pem, gateway.key_pem)
        assert not await attempt(srv.port, wrong_name, server_hostname="elsewhere.example")
