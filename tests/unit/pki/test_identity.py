from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gatehub.errors import InvalidInput, Unauthenticated
from gatehub.pki import (
    CertificateAuthority,
    CertKind,
    PKIName,
    certificate_der,
    issue_admin_certificate,
    issue_gateway_certificate,
    issue_tenant_certificate,
    parse_certificate,
)


def test_parse_pem_and_der(ca: CertificateAuthority) -> None:
    issued = issue_gateway_certificate(ca, "acme", "gw:1", PKIName(commonName="free text"), 2)
    for data in (
        issued.cert_pem,
        issued.cert_pem.encode(),
        issued.cert_der,
        certificate_der(issued.cert_pem),
    ):
        ident = parse_certificate(ca, data)
        assert ident.kind is CertKind.GATEWAY
        assert (ident.tenant_id, ident.gateway_id) == ("acme", "gw:1")
        assert ident.serial == issued.serial
        assert ident.not_after == issued.not_after
        assert ident.subject.commonName == "free text"
    tenant = parse_certificate(ca, issue_tenant_certificate(ca, "acme", PKIName(), 1).cert_pem)
    assert (tenant.kind, tenant.tenant_id, tenant.gateway_id) == (CertKind.TENANT, "acme", None)
    admin = parse_certificate(ca, issue_admin_certificate(ca).cert_pem)
    assert (admin.kind, admin.tenant_id) == (CertKind.ADMIN, "administrator")
    assert admin.fingerprint != tenant.fingerprint and len(admin.fingerprint) == 64


def test_foreign_certificate_refused(ca: CertificateAuthority, other_ca: CertificateAuthority) -> None:
    issued = issue_gateway_certificate(other_ca, "acme", "gw", PKIName(), 1)
    with pytest.raises(Unauthenticated, match="not issued by this hub"):
        parse_certificate(ca, issued.cert_der)


def test_same_name_different_key_refused(ca: CertificateAuthority) -> None:
    """A forger copying our CA's name (and even the identity URI) fails the signature check."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:gatehub:tenant:administrator")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(Unauthenticated):
        parse_certificate(ca, cert.public_bytes(serialization.Encoding.PEM).decode())


def test_expired_and_future(ca: CertificateAuthority) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3 * 366)
    expired = issue_gateway_certificate(ca, "t", "g", PKIName(), 1, now=past)
    with pytest.raises(Unauthenticated, match="expired"):
        parse_certificate(ca, expired.cert_pem)
    assert parse_certificate(ca, expired.cert_pem, check_validity=False).gateway_id == "g"
    assert parse_certificate(ca, expired.cert_pem, now=past + dt.timedelta(days=10)).serial == expired.serial
    with pytest.raises(Unauthenticated, match="not valid yet"):
        parse_certificate(ca, expired.cert_pem, now=past - dt.timedelta(days=1))


def test_garbage_is_invalid_input(ca: CertificateAuthority) -> None:
    for data in (
        b"",
        b"\x30\x03\x02\x01\x01",
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(InvalidInput):
            parse_certificate(ca, data)


def test_certificate_without_identity(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    cert = ca.sign_certificate(builder)
    with pytest.raises(Unauthenticated, match="no gatehub identity"):
        parse_certificate(ca, cert)
