from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gatehub.errors import InvalidInput
from gatehub.pki import (
    CertificateAuthority,
    CertKind,
    PKIName,
    identity_uri,
    issue_admin_certificate,
    issue_gateway_certificate,
    issue_server_certificate,
    issue_tenant_certificate,
    parse_identity_uri,
)

SUBJECT = PKIName(
    country="KR",
    province="Gyeonggi",
    city="Seongnam",
    organization="Acme",
    organizationUnit="Plant 3",
    commonName="line-7 gateway",
)


def _uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_gateway_certificate_fields(ca: CertificateAuthority) -> None:
    before = dt.datetime.now(dt.UTC)
    issued = issue_gateway_certificate(ca, "tenant-1", "gw-42", SUBJECT, 3)
    cert = _load(issued.cert_pem)
    assert issued.kind is CertKind.GATEWAY
    assert (issued.tenant_id, issued.gateway_id) == ("tenant-1", "gw-42")
    assert issued.subject == SUBJECT
    assert PKIName.from_x509(cert.subject) == SUBJECT
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "KR"
    assert _uris(cert) == ["urn:gatehub:tenant:tenant-1:gateway:gw-42"]
    assert cert.issuer == ca.certificate.subject
    assert ca.issued(cert)
    # validity: years from now, int64 serial
    assert issued.serial == cert.serial_number
    assert 0 < issued.serial <= 2**63 - 1
    assert cert.not_valid_after_utc.year == before.year + 3
    assert abs(issued.not_after - (int(before.timestamp()) + 3 * 365 * 86400)) < 2 * 86400
    assert issued.not_before <= int(before.timestamp()) <= issued.not_after
    assert issued.not_before == int(cert.not_valid_before_utc.timestamp())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE KEY" in issued.key_pem
    assert "PRIVATE KEY" not in "".join(p.read_text() for p in ca.directory.glob("*.crt"))


def test_common_name_defaults_to_gateway_id(ca: CertificateAuthority) -> None:
    issued = issue_gateway_certificate(ca, "t", "gw-1", PKIName(country="DE"), 1)
    assert issued.subject == PKIName(country="DE", commonName="gw-1")


def test_tenant_and_admin_certificates(ca: CertificateAuthority) -> None:
    tenant = issue_tenant_certificate(ca, "acme", PKIName(commonName="acme api"), 1)
    assert tenant.kind is CertKind.TENANT and tenant.gateway_id is None
    assert _uris(_load(tenant.cert_pem)) == ["urn:gatehub:tenant:acme"]
    admin = issue_admin_certificate(ca)
    assert admin.kind is CertKind.ADMIN and admin.tenant_id == "administrator"
    assert _uris(_load(admin.cert_pem)) == ["urn:gatehub:tenant:administrator"]
    with pytest.raises(InvalidInput, match="reserved"):
        issue_tenant_certificate(ca, "administrator", PKIName(), 1)
    with pytest.raises(InvalidInput, match="reserved"):
        issue_gateway_certificate(ca, "administrator", "gw", PKIName(), 1)


def test_server_certificate_sans(ca: CertificateAuthority) -> None:
    issued = issue_server_certificate(ca, ["localhost", "127.0.0.1", "::1", "Hub.Example.", "[::1]"])
    cert = _load(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "hub.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert _uris(cert) == ["urn:gatehub:server"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert issued.kind is CertKind.SERVER
    with pytest.raises(InvalidInput):
        issue_server_certificate(ca, [])


@pytest.mark.parametrize("country", ["kr", "KOR", "K", "K1", "ÄB", " KR"])
def test_invalid_country(ca: CertificateAuthority, country: str) -> None:
    with pytest.raises(InvalidInput, match="country") as info:
        issue_gateway_certificate(ca, "t", "g", PKIName(country=country), 1)
    assert "2 letters" in info.value.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("organization", "x" * 65),
        ("organizationUnit", "x" * 65),
        ("commonName", "x" * 65),
        ("province", "x" * 129),
        ("city", "x" * 129),
        ("city", "bad\x00city"),
        ("commonName", "   "),
    ],
)
def test_invalid_name_fields(ca: CertificateAuthority, field: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        issue_tenant_certificate(ca, "t", PKIName(**{field: value}), 1)


def test_limits_are_inclusive() -> None:
    PKIName(country="US", province="p" * 128, organization="o" * 64, commonName="c" * 64).validate()


@pytest.mark.parametrize("years", [0, -1, 26, True, "2"])
def test_invalid_years(ca: CertificateAuthority, years: object) -> None:
    with pytest.raises(InvalidInput, match="expireAfterYears"):
        issue_gateway_certificate(ca, "t", "g", PKIName(), years)  # type: ignore[arg-type]


@pytest.mark.parametrize(("tenant", "gateway"), [("", "g"), ("t", ""), ("t" * 129, "g"), ("t", "g\n")])
def test_invalid_ids(ca: CertificateAuthority, tenant: str, gateway: str) -> None:
    with pytest.raises(InvalidInput, match=r"tenantID|gatewayID"):
        issue_gateway_certificate(ca, tenant, gateway, PKIName(), 1)


def test_serials_never_reused(ca: CertificateAuthority) -> None:
    issued: set[int] = set()
    for i in range(20):
        cert = issue_gateway_certificate(ca, "t", f"g{i}", PKIName(), 1, serial_in_use=issued)
        assert cert.serial not in issued and cert.serial != ca.serial
        issued.add(cert.serial)
    seen: list[int] = []

    def in_use(serial: int) -> bool:
        seen.append(serial)
        return len(seen) < 2

    cert = issue_tenant_certificate(ca, "t", PKIName(), 1, serial_in_use=in_use)
    assert cert.serial == seen[-1] and len(seen) == 2


def test_identity_uri_escapes_separators() -> None:
    uri = identity_uri(CertKind.GATEWAY, "a:b", "gw:gateway:x/ü %")
    assert uri == "urn:gatehub:tenant:a%3Ab:gateway:gw%3Agateway%3Ax%2F%C3%BC%20%25"
    assert parse_identity_uri(uri) == (CertKind.GATEWAY, "a:b", "gw:gateway:x/ü %")
    assert parse_identity_uri("urn:gatehub:tenant:acme") == (CertKind.TENANT, "acme", None)
    assert parse_identity_uri("urn:gatehub:tenant:administrator") == (CertKind.ADMIN, "administrator", None)
    assert parse_identity_uri("urn:gatehub:server") == (CertKind.SERVER, None, None)
    for bad in (
        "urn:gatehub:tenant:",
        "urn:gatehub:tenant:a:b",
        "urn:gatehub:tenant:a:gateway:",
        "urn:gatehub:tenant:administrator:gateway:g",
        "urn:gatehub:tenant:%FF",
        "urn:other:tenant:a",
    ):
        assert parse_identity_uri(bad) is None, bad


def test_rsa_leaf_from_ec_ca(ca: CertificateAuthority) -> None:
    issued = issue_gateway_certificate(ca, "t", "g", PKIName(), 1, key_type="rsa")
    assert ca.issued(_load(issued.cert_pem))
    assert "BEGIN PRIVATE KEY" in issued.key_pem
