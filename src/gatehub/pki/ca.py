"""The hub's certificate authority on disk.

Layout of the CA directory (default ``var/pki``, created with mode 0700):

``ca.key``
    the CA private key, PKCS#8 PEM, mode 0600, never leaves this process;
``ca.crt``
    the self-signed CA certificate, PEM (this is what clients trust);
``server.key`` / ``server.crt``
    the hub's own TLS server certificate (see :mod:`gatehub.pki.tls`).

The CA is created on first use and only then: loading an existing CA never regenerates it,
and a directory holding only one of ``ca.key`` / ``ca.crt`` is an error (regenerating would
silently invalidate every certificate issued so far). Files are written atomically (a
temporary file in the same directory, fsync, rename). Creation holds an ``flock`` on
``.lock`` so that two processes starting together end up with the same CA.

The CA never stores the private keys of the certificates it issues.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import stat
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gatehub.errors import ConfigError, Conflict

try:  # POSIX only; elsewhere creation is not guarded against a concurrent creator
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_CA_DIR",
    "MAX_SERIAL",
    "CertificateAuthority",
    "KeyType",
    "PrivateKey",
    "SerialInUse",
    "generate_private_key",
    "new_serial",
    "private_key_pem",
    "write_atomic",
]

log = logging.getLogger(__name__)

DEFAULT_CA_DIR = Path("var/pki")
CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_VALIDITY_YEARS = 30
MAX_SERIAL = 2**63 - 1
"""Serial numbers are 1..2**63-1: positive and representable as G-SDK's int64 ``serialNO``."""

KeyType: TypeAlias = Literal["ec", "rsa"]
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SerialInUse: TypeAlias = Callable[[int], bool] | Collection[int] | None
"""Serials already issued: a collection, or a callback answering "is this serial taken?"."""

_RSA_BITS = 3072


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """A fresh EC P-256 or RSA-3072 private key."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    raise ConfigError(f"unknown key type {key_type!r}; use 'ec' or 'rsa'")


def private_key_pem(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM of ``key``."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed or (never) widened it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def new_serial(in_use: SerialInUse = None, *, reserved: Collection[int] = ()) -> int:
    """A random serial in 1..2**63-1 that ``in_use`` does not know and ``reserved`` lacks."""
    taken: Callable[[int], bool]
    if in_use is None:
        taken = lambda _serial: False  # noqa: E731
    elif callable(in_use):
        taken = in_use
    else:
        taken = in_use.__contains__
    for _ in range(32):
        serial = secrets.randbits(63)
        if serial > 0 and serial not in reserved and not taken(serial):
            return serial
    raise Conflict("could not find an unused certificate serial number")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class CertificateAuthority:
    """The hub CA: its certificate, and signing with its key (which it keeps to itself)."""

    __slots__ = ("_cert", "_cert_pem", "_directory", "_key")

    def __init__(self, directory: Path, certificate: x509.Certificate, key: PrivateKey) -> None:
        if certificate.public_key() != key.public_key():
            raise ConfigError(f"{directory}: {CA_CERT_FILE} does not match {CA_KEY_FILE}")
        self._directory = directory
        self._cert = certificate
        self._key = key
        self._cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    # -- creation and loading -------------------------------------------------------------

    @classmethod
    def load_or_create(
        cls,
        directory: str | os.PathLike[str] = DEFAULT_CA_DIR,
        *,
        key_type: KeyType = "ec",
        common_name: str | None = None,
    ) -> CertificateAuthority:
        """Load the CA in ``directory``; create it (and the directory, 0700) if absent."""
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the CA directory {path}: {exc}") from exc
        with _locked(path):
            if (path / CA_KEY_FILE).exists() or (path / CA_CERT_FILE).exists():
                return cls.load(path)
            return cls._create(path, key_type, common_name)

    @classmethod
    def load(cls, directory: str | os.PathLike[str] = DEFAULT_CA_DIR) -> CertificateAuthority:
        """Load an existing CA; :class:`ConfigError` if it is missing or damaged."""
        path = Path(directory)
        key_path, cert_path = path / CA_KEY_FILE, path / CA_CERT_FILE
        missing = [p.name for p in (key_path, cert_path) if not p.exists()]
        if missing:
            raise ConfigError(f"CA directory {path} lacks {' and '.join(missing)}; refusing to regenerate")
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            log.warning("CA key %s has mode %o; it should be 0600", key_path, mode)
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the CA in {path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigError(f"{key_path}: unsupported key type {type(key).__name__}")
        return cls(path, cert, key)

    @classmethod
    def _create(cls, path: Path, key_type: KeyType, common_name: str | None) -> CertificateAuthority:
        key = generate_private_key(key_type)
        now = _utcnow()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatehub"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"gatehub root CA {secrets.token_hex(4)}"),
            ]
        )
        public = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(new_serial())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now.replace(year=now.year + CA_VALIDITY_YEARS, day=min(now.day, 28)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        cert = builder.sign(key, hashes.SHA256())
        # Key first: a crash between the two writes leaves a key without a certificate,
        # which load() reports instead of silently making a new CA.
        write_atomic(path / CA_KEY_FILE, private_key_pem(key).encode("ascii"), 0o600)
        write_atomic(path / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("created a new certificate authority in %s", path)
        return cls(path, cert, key)

    # -- what it is -----------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def cert_pem(self) -> str:
        """The CA certificate in PEM: what clients trust."""
        return self._cert_pem

    @property
    def serial(self) -> int:
        return self._cert.serial_number

    @property
    def key_type(self) -> KeyType:
        return "ec" if isinstance(self._key, ec.EllipticCurvePrivateKey) else "rsa"

    @property
    def not_after(self) -> dt.datetime:
        return self._cert.not_valid_after_utc

    @property
    def cert_path(self) -> Path:
        return self._directory / CA_CERT_FILE

    # -- signing --------------------------------------------------------------------------

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign ``builder`` as issued by this CA (issuer name and authority key id are set here)."""
        builder = builder.issuer_name(self._cert.subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
        )
        return builder.sign(self._key, hashes.SHA256())

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        """Sign a CRL as issued by this CA."""
        builder = builder.issuer_name(self._cert.subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
        )
        return builder.sign(self._key, hashes.SHA256())

    def issued(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` carries this CA's name as issuer and a valid signature by its key."""
        try:
            cert.verify_directly_issued_by(self._cert)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def signed_crl(self, crl: x509.CertificateRevocationList) -> bool:
        """True if ``crl`` names this CA as issuer and its signature verifies."""
        return crl.issuer == self._cert.subject and crl.is_signature_valid(self._key.public_key())

    def __repr__(self) -> str:
        return f"<CertificateAuthority {self._cert.subject.rfc4514_string()!r} in {str(self._directory)!r}>"
