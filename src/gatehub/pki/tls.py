"""TLS contexts for the hub's listeners, with revocation that takes effect at once.

A listener is given one ``ssl.SSLContext`` when it starts (asyncio ``start_server``,
``create_server``, uvicorn) and keeps it. To make a blacklist change apply to the very next
handshake without restarting anything, :class:`TlsContextProvider` hands out *outer* contexts
whose ``sni_callback`` (which OpenSSL runs on every ClientHello, with or without SNI) swaps the
connection over to the provider's current *inner* context. The inner context holds the server
certificate, trusts only the hub CA, and checks the client certificate against the current CRL
(``VERIFY_CRL_CHECK_LEAF``); :meth:`TlsContextProvider.update_blacklist` builds a new CRL and a
new inner context and swaps the reference. OpenSSL verifies the client certificate against the
store of the context the connection ends up with, so expired certificates, certificates of other
CAs and revoked ones are refused in the handshake itself.

Session resumption would skip that check (a resumed session is not re-verified), so the
contexts issue no session tickets (``OP_NO_TICKET``, ``num_tickets = 0``); with them off, a
client offering an old session gets a full handshake (the tests check that a revoked client
cannot resume a session it had before).

The hub's server certificate is issued on first use and cached in the CA directory
(``server.crt``, ``server.key`` 0600); it is re-issued when the wanted host names differ from
the cached ones, when it was not issued by the current CA, or when it expires within
``renew_before``. The CRL is rebuilt daily (its ``nextUpdate`` is 7 days on), lazily from the
handshake callback, as is a server certificate that comes near expiry while the hub runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gatehub.errors import ConfigError
from gatehub.pki.ca import CertificateAuthority, SerialInUse, write_atomic
from gatehub.pki.crl import DEFAULT_CRL_LIFETIME, CrlBundle, build_crl
from gatehub.pki.issue import IssuedCertificate, issue_server_certificate, server_subject_alt_names
from gatehub.pki.names import CertKind, parse_identity_uri

__all__ = [
    "DEFAULT_SERVER_HOSTS",
    "ServerCertificate",
    "TlsContextProvider",
    "client_context",
]

log = logging.getLogger(__name__)

DEFAULT_SERVER_HOSTS = ("localhost", "127.0.0.1", "::1")
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
_RETRY_AFTER_FAILURE = 60.0


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The hub's TLS server certificate and key (PEM)."""

    serial: int
    hosts: frozenset[str]
    not_after: int
    """Unix seconds."""
    cert_pem: str
    key_pem: str


def _san_set(names: Iterable[x509.GeneralName]) -> frozenset[str]:
    out: set[str] = set()
    for name in names:
        if isinstance(name, x509.DNSName):
            out.add(f"dns:{name.value.lower()}")
        elif isinstance(name, x509.IPAddress):
            out.add(f"ip:{name.value}")
    return frozenset(out)


@contextlib.contextmanager
def _temp_pem(data: str, directory: Path | None) -> Iterator[str]:
    """A 0600 temporary file holding ``data`` (ssl loads keys and CRLs only from files)."""
    fd, name = tempfile.mkstemp(prefix=".tls-", suffix=".pem", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(data)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _base_context(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def client_context(
    ca: CertificateAuthority | str,
    cert_pem: str | None = None,
    key_pem: str | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context trusting only the hub CA, presenting ``cert_pem``/``key_pem`` if given.

    ``ca`` is the CA itself or its certificate in PEM (what a gateway agent has).
    """
    ca_pem = ca.cert_pem if isinstance(ca, CertificateAuthority) else ca
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_pem)
    if cert_pem is not None:
        if key_pem is None:
            raise ConfigError("a client certificate needs its private key")
        with (
            tempfile.TemporaryDirectory(prefix="gatehub-tls-") as tmp,
            _temp_pem(cert_pem.rstrip("\n") + "\n" + key_pem, Path(tmp)) as chain,
        ):
            ctx.load_cert_chain(chain)
    return ctx


class TlsContextProvider:
    """The TLS contexts of the hub's listeners; see the module docstring.

    ``blacklist`` is the initial set of revoked serials (or a mapping serial -> revoked at,
    unix seconds). ``serial_in_use`` is passed on when a server certificate is issued, and
    ``on_server_issued`` is told about it (so the store can record it in the issuance history).
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        server_hosts: Iterable[str] = DEFAULT_SERVER_HOSTS,
        blacklist: Iterable[int] | Mapping[int, int | float] = (),
        serial_in_use: SerialInUse = None,
        on_server_issued: Callable[[IssuedCertificate], None] | None = None,
        crl_lifetime: dt.timedelta = DEFAULT_CRL_LIFETIME,
        crl_refresh: dt.timedelta = dt.timedelta(days=1),
        server_years: int = 1,
        renew_before: dt.timedelta = dt.timedelta(days=30),
    ) -> None:
        if crl_refresh >= crl_lifetime:
            raise ConfigError("the CRL must be refreshed before it expires (crl_refresh < crl_lifetime)")
        self._ca = ca
        self._hosts = tuple(server_hosts)
        self._wanted_sans = _san_set(server_subject_alt_names(self._hosts))
        self._serial_in_use = serial_in_use
        self._on_server_issued = on_server_issued
        self._crl_lifetime = crl_lifetime
        self._crl_refresh = crl_refresh.total_seconds()
        self._server_years = server_years
        self._renew_before = renew_before
        self._lock = threading.RLock()
        self._revoked: dict[int, float] = self._merge_blacklist({}, blacklist)
        self._outer: dict[ssl.VerifyMode, ssl.SSLContext] = {}
        self._server = self._ensure_server_certificate()
        self._crl = build_crl(self._ca, self._revoked.items(), lifetime=self._crl_lifetime)
        self._inner = self._build_context(ssl.CERT_REQUIRED)
        self._next_check = self._due_time()

    # -- public ---------------------------------------------------------------------------

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    @property
    def server_certificate(self) -> ServerCertificate:
        return self._server

    @property
    def crl(self) -> CrlBundle:
        """The CRL the handshakes are checked against now."""
        return self._crl

    @property
    def blacklist(self) -> frozenset[int]:
        return frozenset(self._revoked)

    def is_blacklisted(self, serial: int) -> bool:
        return serial in self._revoked

    def server_context(self, require_client_cert: bool = True, *, ask_client_cert: bool = True) -> ssl.SSLContext:
        """The context to give a listener once; it follows every later blacklist change.

        With ``require_client_cert`` a client without a valid hub certificate is refused;
        without it, a client certificate is asked for (unless ``ask_client_cert`` is false)
        but optional, and one that is sent must still be valid and not revoked.
        """
        if require_client_cert:
            mode = ssl.CERT_REQUIRED
        else:
            mode = ssl.CERT_OPTIONAL if ask_client_cert else ssl.CERT_NONE
        with self._lock:
            ctx = self._outer.get(mode)
            if ctx is None:
                ctx = self._build_context(mode)
                ctx.sni_callback = self._on_client_hello
                self._outer[mode] = ctx
            return ctx

    def client_context(
        self, cert_pem: str | None = None, key_pem: str | None = None, *, check_hostname: bool = True
    ) -> ssl.SSLContext:
        """A client context trusting the hub CA (see :func:`client_context`)."""
        return client_context(self._ca, cert_pem, key_pem, check_hostname=check_hostname)

    def update_blacklist(self, serials: Iterable[int] | Mapping[int, int | float]) -> None:
        """Replace the blacklist; new handshakes are checked against it from now on.

        A plain iterable keeps the revocation time of serials already listed and stamps new
        ones with the current time; a mapping gives each serial's revocation time.
        """
        with self._lock:
            revoked = self._merge_blacklist(self._revoked, serials)
            self._install(self._new_crl(revoked), revoked)

    def refresh(self, *, force: bool = False) -> None:
        """Rebuild the CRL (and re-issue the server certificate) if due, or always if ``force``."""
        with self._lock:
            now = time.time()
            if force or now >= self._crl.this_update + self._crl_refresh or self._server_expiring(now):
                if self._server_expiring(now):
                    self._server = self._ensure_server_certificate()
                self._install(self._new_crl(self._revoked), self._revoked)

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _merge_blacklist(
        old: Mapping[int, float], serials: Iterable[int] | Mapping[int, int | float]
    ) -> dict[int, float]:
        now = time.time()
        if isinstance(serials, Mapping):
            return {int(s): float(t) for s, t in serials.items()}
        return {int(s): old.get(int(s), now) for s in serials}

    def _new_crl(self, revoked: Mapping[int, float]) -> CrlBundle:
        number = max(self._crl.number + 1, time.time_ns() // 1_000_000)
        return build_crl(self._ca, revoked.items(), lifetime=self._crl_lifetime, number=number)

    def _install(self, crl: CrlBundle, revoked: dict[int, float]) -> None:
        inner = self._build_context(ssl.CERT_REQUIRED, crl)
        self._revoked = revoked
        self._crl = crl
        self._inner = inner  # one reference swap: the next ClientHello sees it
        self._next_check = self._due_time()

    def _due_time(self) -> float:
        server_due = self._server.not_after - self._renew_before.total_seconds()
        return min(self._crl.this_update + self._crl_refresh, server_due)

    def _server_expiring(self, now: float) -> bool:
        return now >= self._server.not_after - self._renew_before.total_seconds()

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        if time.time() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self.refresh()
            except Exception:
                log.exception("could not refresh the CRL or server certificate; retrying later")
                self._next_check = time.time() + _RETRY_AFTER_FAILURE
            finally:
                self._lock.release()
        ssl_object.context = self._inner

    def _build_context(self, mode: ssl.VerifyMode, crl: CrlBundle | None = None) -> ssl.SSLContext:
        crl = crl or self._crl
        ctx = _base_context(ssl.PROTOCOL_TLS_SERVER)
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        ctx.verify_mode = mode
        directory = self._ca.directory
        with _temp_pem(self._server.cert_pem.rstrip("\n") + "\n" + self._server.key_pem, directory) as chain:
            ctx.load_cert_chain(chain)
        ctx.load_verify_locations(cadata=self._ca.cert_pem)
        with _temp_pem(crl.pem, directory) as crl_file:
            ctx.load_verify_locations(cafile=crl_file)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
        return ctx

    def _load_cached_server(self) -> ServerCertificate | None:
        directory = self._ca.directory
        cert_path, key_path = directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE
        if not (cert_path.exists() and key_path.exists()):
            return None
        try:
            cert_pem = cert_path.read_text("ascii")
            key_pem = key_path.read_text("ascii")
            cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, TypeError, x509.ExtensionNotFound) as exc:
            log.warning("ignoring the cached server certificate in %s: %s", directory, exc)
            return None
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        identity = [parse_identity_uri(u) for u in uris]
        if (
            cert.public_key() != key.public_key()
            or not self._ca.issued(cert)
            or (CertKind.SERVER, None, None) not in identity
            or _san_set(san) != self._wanted_sans
        ):
            return None
        not_after = int(cert.not_valid_after_utc.timestamp())
        if self._server_expiring_at(not_after, time.time()):
            return None
        return ServerCertificate(cert.serial_number, self._wanted_sans, not_after, cert_pem, key_pem)

    def _server_expiring_at(self, not_after: float, now: float) -> bool:
        return now >= not_after - self._renew_before.total_seconds()

    def _ensure_server_certificate(self) -> ServerCertificate:
        cached = self._load_cached_server()
        if cached is not None:
            return cached
        issued = issue_server_certificate(
            self._ca,
            self._hosts,
            expire_after_years=self._server_years,
            serial_in_use=self._serial_in_use,
        )
        directory = self._ca.directory
        write_atomic(directory / SERVER_KEY_FILE, issued.key_pem.encode("ascii"), 0o600)
        write_atomic(directory / SERVER_CERT_FILE, issued.cert_pem.encode("ascii"), 0o644)
        log.info("issued the hub server certificate %#x for %s", issued.serial, ", ".join(self._hosts))
        if self._on_server_issued is not None:
            self._on_server_issued(issued)
        return ServerCertificate(issued.serial, self._wanted_sans, issued.not_after, issued.cert_pem, issued.key_pem)
