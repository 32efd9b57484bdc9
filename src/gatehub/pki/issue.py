"""Issuing certificates from the hub CA.

Four kinds (see :mod:`gatehub.pki.names` for the identity URI each carries):

- **server**: the hub's TLS listeners; DNS and IP subject alternative names, ``serverAuth``;
- **gateway**: a device gateway's client certificate, bound to a tenant id and a gateway id;
- **tenant**: an API client of one tenant (G-SDK ``Login``);
- **admin**: the administrator (tenant id ``administrator``, G-SDK ``LoginAdmin``).

Every certificate gets a fresh random serial in 1..2**63-1 (it fits G-SDK's int64
``serialNO``) that the caller's ``serial_in_use`` (a collection or a callback) does not know and
that is not the CA's own. The private key of the new certificate is returned once, in
:class:`IssuedCertificate`, and kept nowhere by the CA. Validity starts one minute before
``now`` (clock skew) and ends ``years`` calendar years after ``now``; it may not outlast the CA.
``now`` may be given to issue as of another time (tests use it to make expired certificates).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gatehub.errors import InvalidInput
from gatehub.pki.ca import (
    CertificateAuthority,
    KeyType,
    SerialInUse,
    generate_private_key,
    new_serial,
    private_key_pem,
)
from gatehub.pki.names import ADMIN_TENANT_ID, CertKind, PKIName, identity_uri, validate_id

__all__ = [
    "MAX_VALIDITY_YEARS",
    "IssuedCertificate",
    "issue_admin_certificate",
    "issue_gateway_certificate",
    "issue_server_certificate",
    "issue_tenant_certificate",
    "server_subject_alt_names",
]

MAX_VALIDITY_YEARS = 25
_SKEW = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate just issued, with its private key (returned once, stored nowhere)."""

    serial: int
    kind: CertKind
    tenant_id: str | None
    gateway_id: str | None
    subject: PKIName
    not_before: int
    """Unix seconds."""
    not_after: int
    """Unix seconds."""
    cert_pem: str
    key_pem: str

    @property
    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii")).public_bytes(serialization.Encoding.DER)


def _add_years(when: dt.datetime, years: int) -> dt.datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February
        return when.replace(year=when.year + years, day=28)


def _validity(ca: CertificateAuthority, years: object, now: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= MAX_VALIDITY_YEARS:
        raise InvalidInput(f"expireAfterYears must be an integer from 1 to {MAX_VALIDITY_YEARS}, got {years!r}")
    start = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    end = _add_years(start, years)
    if end > ca.not_after:
        raise InvalidInput(f"expireAfterYears={years} would outlast the CA, which expires {ca.not_after:%Y-%m-%d}")
    return start - _SKEW, end


def _key_usage(key_type: KeyType) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_type == "rsa",
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca: CertificateAuthority,
    *,
    kind: CertKind,
    tenant_id: str | None,
    gateway_id: str | None,
    subject: PKIName,
    years: int,
    alt_names: list[x509.GeneralName],
    serial_in_use: SerialInUse,
    key_type: KeyType | None,
    now: dt.datetime | None,
) -> IssuedCertificate:
    not_before, not_after = _validity(ca, years, now)
    name = subject.to_x509()
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise InvalidInput("PKIName.commonName must not be empty")
    ktype: KeyType = key_type or ca.key_type
    key = generate_private_key(ktype)
    public = key.public_key()
    serial = new_serial(serial_in_use, reserved=(ca.serial,))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind is CertKind.SERVER else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ktype), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [*alt_names, x509.UniformResourceIdentifier(identity_uri(kind, tenant_id, gateway_id))]
            ),
            critical=False,
        )
    )
    cert = ca.sign_certificate(builder)
    return IssuedCertificate(
        serial=serial,
        kind=kind,
        tenant_id=tenant_id,
        gateway_id=gateway_id,
        subject=PKIName.from_x509(cert.subject),
        not_before=int(not_before.timestamp()),
        not_after=int(not_after.timestamp()),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        key_pem=private_key_pem(key),
    )


def issue_gateway_certificate(
    ca: CertificateAuthority,
    tenant_id: str,
    gateway_id: str,
    subject: PKIName,
    expire_after_years: int,
    *,
    serial_in_use: SerialInUse = None,
    key_type: KeyType | None = None,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """A device gateway's client certificate; an empty commonName defaults to the gateway id."""
    validate_id(tenant_id, "tenantID")
    validate_id(gateway_id, "gatewayID")
    subject = subject.validate().with_default_common_name(gateway_id)
    return _issue(
        ca,
        kind=CertKind.GATEWAY,
        tenant_id=tenant_id,
        gateway_id=gateway_id,
        subject=subject,
        years=expire_after_years,
        alt_names=[],
        serial_in_use=serial_in_use,
        key_type=key_type,
        now=now,
    )


def issue_tenant_certificate(
    ca: CertificateAuthority,
    tenant_id: str,
    subject: PKIName,
    expire_after_years: int,
    *,
    serial_in_use: SerialInUse = None,
    key_type: KeyType | None = None,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """A tenant's API client certificate; an empty commonName defaults to the tenant id."""
    validate_id(tenant_id, "tenantID")
    if tenant_id == ADMIN_TENANT_ID:
        raise InvalidInput(f"tenantID {ADMIN_TENANT_ID!r} is reserved; issue an admin certificate")
    subject = subject.validate().with_default_common_name(tenant_id)
    return _issue(
        ca,
        kind=CertKind.TENANT,
        tenant_id=tenant_id,
        gateway_id=None,
        subject=subject,
        years=expire_after_years,
        alt_names=[],
        serial_in_use=serial_in_use,
        key_type=key_type,
        now=now,
    )


def issue_admin_certificate(
    ca: CertificateAuthority,
    subject: PKIName | None = None,
    expire_after_years: int = 1,
    *,
    serial_in_use: SerialInUse = None,
    key_type: KeyType | None = None,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """The administrator's client certificate (tenant id ``administrator``)."""
    subject = (subject or PKIName()).validate().with_default_common_name(ADMIN_TENANT_ID)
    return _issue(
        ca,
        kind=CertKind.ADMIN,
        tenant_id=ADMIN_TENANT_ID,
        gateway_id=None,
        subject=subject,
        years=expire_after_years,
        alt_names=[],
        serial_in_use=serial_in_use,
        key_type=key_type,
        now=now,
    )


def server_subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses (each string is an IP address if it parses as one)."""
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        if not isinstance(host, str) or not host.strip():
            raise InvalidInput("server host names must be non-empty strings")
        host = host.strip()
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            dns = host.lower().rstrip(".")
            if dns in seen:
                continue
            seen.add(dns)
            try:
                names.append(x509.DNSName(dns))
            except ValueError as exc:
                raise InvalidInput(f"invalid server host name {host!r}: {exc}") from exc
        else:
            if str(ip) in seen:
                continue
            seen.add(str(ip))
            names.append(x509.IPAddress(ip))
    if not names:
        raise InvalidInput("a server certificate needs at least one host name or IP address")
    return names


def issue_server_certificate(
    ca: CertificateAuthority,
    hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
    *,
    expire_after_years: int = 1,
    subject: PKIName | None = None,
    serial_in_use: SerialInUse = None,
    key_type: KeyType | None = None,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """A TLS server certificate for the hub's listeners, valid for ``hosts``."""
    alt_names = server_subject_alt_names(hosts)
    first = alt_names[0].value
    subject = (subject or PKIName(organization="gatehub")).validate().with_default_common_name(str(first))
    return _issue(
        ca,
        kind=CertKind.SERVER,
        tenant_id=None,
        gateway_id=None,
        subject=subject,
        years=expire_after_years,
        alt_names=alt_names,
        serial_in_use=serial_in_use,
        key_type=key_type,
        now=now,
    )
