"""Who a peer certificate says it is, once we know our CA signed it.

:func:`parse_certificate` takes what a transport has in hand (DER bytes from
``ssl_object.getpeercert(binary_form=True)``, or the PEM a G-SDK ``Login`` sends), checks that
the hub CA signed it (and, unless told otherwise, that it is valid now), and returns its
:class:`CertificateIdentity`: kind, tenant id, gateway id from the identity URI (see
:mod:`gatehub.pki.names`), serial, subject and validity. The TLS handshake has already refused
revoked, expired and foreign certificates; this is the identity read after it, and the check
for certificates that arrive as data rather than in a handshake.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gatehub.errors import InvalidInput, Unauthenticated
from gatehub.pki.ca import CertificateAuthority
from gatehub.pki.names import URI_PREFIX, CertKind, PKIName, parse_identity_uri

__all__ = ["CertificateIdentity", "certificate_der", "load_certificate", "parse_certificate", "peer_identity"]


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    serial: int
    kind: CertKind
    tenant_id: str | None
    gateway_id: str | None
    subject: PKIName
    not_before: int
    """Unix seconds."""
    not_after: int
    """Unix seconds."""
    fingerprint: str
    """SHA-256 of the DER certificate, lowercase hex: compare it to tell two certificates apart."""


def load_certificate(data: bytes | str) -> x509.Certificate:
    """Read one certificate from DER bytes or PEM (str or bytes); :class:`InvalidInput` if not one."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise InvalidInput(f"not a valid X.509 certificate: {exc}") from exc


def _identity_of(cert: x509.Certificate) -> tuple[CertKind, str | None, str | None]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise Unauthenticated("the certificate carries no gatehub identity") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URI_PREFIX)]
    if len(uris) != 1:
        raise Unauthenticated(f"the certificate must carry exactly one gatehub identity URI, has {len(uris)}")
    parsed = parse_identity_uri(uris[0])
    if parsed is None:
        raise Unauthenticated(f"malformed gatehub identity URI {uris[0]!r}")
    return parsed


def parse_certificate(
    ca: CertificateAuthority,
    data: bytes | str | x509.Certificate,
    *,
    check_validity: bool = True,
    now: dt.datetime | None = None,
) -> CertificateIdentity:
    """Verify ``data`` was issued by ``ca`` (and is valid at ``now``) and return its identity.

    Raises :class:`InvalidInput` if ``data`` is not a certificate and :class:`Unauthenticated`
    if ``ca`` did not sign it, it is outside its validity, or it carries no gatehub identity.
    Revocation is not checked here: ask the blacklist (or rely on the TLS handshake).
    """
    cert = data if isinstance(data, x509.Certificate) else load_certificate(data)
    if not ca.issued(cert):
        raise Unauthenticated("the certificate was not issued by this hub's CA")
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if check_validity:
        moment = now or dt.datetime.now(dt.UTC)
        if moment < not_before:
            raise Unauthenticated("the certificate is not valid yet")
        if moment > not_after:
            raise Unauthenticated("the certificate has expired")
    kind, tenant_id, gateway_id = _identity_of(cert)
    return CertificateIdentity(
        serial=cert.serial_number,
        kind=kind,
        tenant_id=tenant_id,
        gateway_id=gateway_id,
        subject=PKIName.from_x509(cert.subject),
        not_before=int(not_before.timestamp()),
        not_after=int(not_after.timestamp()),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def peer_identity(ca: CertificateAuthority, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> CertificateIdentity:
    """The identity of the client certificate of a finished handshake.

    :class:`Unauthenticated` if the peer sent none.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise Unauthenticated("the peer presented no client certificate")
    return parse_certificate(ca, der)


def certificate_der(data: bytes | str) -> bytes:
    """DER bytes of a PEM or DER certificate."""
    return load_certificate(data).public_bytes(serialization.Encoding.DER)
