from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from gatehub.errors import InvalidInput
from gatehub.pki import CertificateAuthority, build_crl, revoked_serials


def test_crl_lists_serials_and_is_signed(ca: CertificateAuthority) -> None:
    revoked_at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    bundle = build_crl(ca, [(12345, revoked_at), (2**63 - 1, 1_700_000_000), (12345, revoked_at)])
    assert bundle.serials == {12345, 2**63 - 1}
    crl = x509.load_pem_x509_crl(bundle.pem.encode())
    assert crl.public_bytes(Encoding.DER) == bundle.der
    assert ca.signed_crl(crl)
    public = ca.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public)
    assert crl.issuer == ca.certificate.subject
    assert {r.serial_number for r in crl} == {12345, 2**63 - 1}
    entry = crl.get_revoked_certificate_by_serial_number(12345)
    assert entry is not None and entry.revocation_date_utc == revoked_at
    assert crl.get_revoked_certificate_by_serial_number(99) is None
    # next update about a week on; this update slightly in the past
    now = dt.datetime.now(dt.UTC)
    assert crl.next_update_utc is not None
    assert dt.timedelta(days=6) < crl.next_update_utc - now <= dt.timedelta(days=7)
    assert crl.last_update_utc <= now
    assert bundle.next_update == int(crl.next_update_utc.timestamp())
    assert revoked_serials(ca, bundle.der) == revoked_serials(ca, bundle.pem) == {12345, 2**63 - 1}
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == bundle.number


def test_mapping_and_empty(ca: CertificateAuthority) -> None:
    assert build_crl(ca, {}).serials == frozenset()
    bundle = build_crl(ca, {7: 1_700_000_000.5}, lifetime=dt.timedelta(hours=1), number=3)
    crl = x509.load_der_x509_crl(bundle.der)
    assert bundle.number == 3 and {r.serial_number for r in crl} == {7}
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)


def test_foreign_crl_rejected(ca: CertificateAuthority, other_ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidInput, match="not signed"):
        revoked_serials(ca, build_crl(other_ca, [(1, 0)]).pem)
    with pytest.raises(InvalidInput):
        revoked_serials(ca, b"garbage")


@pytest.mark.parametrize("serial", [0, -1, 2**63, True])
def test_bad_serial(ca: CertificateAuthority, serial: int) -> None:
    with pytest.raises(InvalidInput, match="serial"):
        build_crl(ca, [(serial, 0)])
