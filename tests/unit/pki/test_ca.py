from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gatehub.errors import ConfigError, Conflict
from gatehub.pki import MAX_SERIAL, CertificateAuthority, new_serial
from gatehub.pki.ca import write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_with_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "pki"
    ca = CertificateAuthority.load_or_create(directory)
    assert _mode(directory) == 0o700
    assert _mode(directory / "ca.key") == 0o600
    assert (directory / "ca.crt").read_text() == ca.cert_pem
    cert = ca.certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca.key_type == "ec"
    assert 0 < ca.serial <= MAX_SERIAL
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_reload_does_not_regenerate(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = CertificateAuthority.load_or_create(directory)
    key_bytes = (directory / "ca.key").read_bytes()
    key_mtime = (directory / "ca.key").stat().st_mtime_ns
    second = CertificateAuthority.load_or_create(directory)
    third = CertificateAuthority.load(directory)
    assert second.cert_pem == first.cert_pem == third.cert_pem
    assert (directory / "ca.key").read_bytes() == key_bytes
    assert (directory / "ca.key").stat().st_mtime_ns == key_mtime
    assert _mode(directory / "ca.key") == 0o600


def test_partial_ca_is_an_error_not_a_new_ca(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    CertificateAuthority.load_or_create(directory)
    (directory / "ca.crt").unlink()
    with pytest.raises(ConfigError, match=r"ca\.crt"):
        CertificateAuthority.load_or_create(directory)
    assert not (directory / "ca.crt").exists()


def test_load_missing_ca(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CertificateAuthority.load(tmp_path / "nothing")


def test_mismatched_key_and_cert(tmp_path: Path) -> None:
    a = CertificateAuthority.load_or_create(tmp_path / "a")
    CertificateAuthority.load_or_create(tmp_path / "b")
    (tmp_path / "b" / "ca.crt").write_text(a.cert_pem)
    with pytest.raises(ConfigError, match="does not match"):
        CertificateAuthority.load(tmp_path / "b")


def test_rsa_option(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "pki", key_type="rsa")
    assert isinstance(ca.certificate.public_key(), rsa.RSAPublicKey)
    assert ca.key_type == "rsa"
    assert CertificateAuthority.load(tmp_path / "pki").key_type == "rsa"


def test_write_atomic_replaces_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    write_atomic(target, b"new", 0o600)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_serials_are_positive_int64_and_avoid_used_ones() -> None:
    serials = {new_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(0 < s <= 2**63 - 1 for s in serials)
    assert max(serials).bit_length() > 56  # random over the whole range

    rejected: list[int] = []

    def taken(serial: int) -> bool:
        if len(rejected) < 3:
            rejected.append(serial)
            return True
        return False

    chosen = new_serial(taken)
    assert chosen not in rejected and len(rejected) == 3
    with pytest.raises(Conflict):
        new_serial(lambda _s: True)
