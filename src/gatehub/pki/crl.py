"""Certificate revocation lists signed by the hub CA.

The blacklist lives in the store; whenever it changes the caller builds a fresh CRL from the
whole list with :func:`build_crl` (there are no delta CRLs). ``thisUpdate`` is set a few
minutes in the past so that a peer whose clock lags slightly still accepts it; ``nextUpdate``
is ``lifetime`` (default 7 days) later. OpenSSL refuses every certificate once the CRL it holds
is past ``nextUpdate``, so whoever serves a CRL must rebuild it well before then
(:class:`gatehub.pki.tls.TlsContextProvider` does so daily on its own).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gatehub.errors import InvalidInput
from gatehub.pki.ca import MAX_SERIAL, CertificateAuthority

__all__ = ["DEFAULT_CRL_LIFETIME", "CrlBundle", "Revocation", "build_crl", "revoked_serials"]

DEFAULT_CRL_LIFETIME = dt.timedelta(days=7)
_BACKDATE = dt.timedelta(minutes=5)

Revocation = tuple[int, int | float | dt.datetime]
"""``(serial, revoked at)``; the time in unix seconds or an aware datetime."""


@dataclass(frozen=True, slots=True)
class CrlBundle:
    """A signed CRL in both encodings."""

    pem: str
    der: bytes
    serials: frozenset[int]
    this_update: int
    """Unix seconds."""
    next_update: int
    """Unix seconds."""
    number: int


def _as_datetime(value: int | float | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidInput("revocation times must be timezone-aware")
        return value.astimezone(dt.UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"revocation time must be unix seconds or a datetime, got {value!r}")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def build_crl(
    ca: CertificateAuthority,
    revoked: Iterable[Revocation] | Mapping[int, int | float | dt.datetime],
    *,
    lifetime: dt.timedelta = DEFAULT_CRL_LIFETIME,
    number: int | None = None,
    now: dt.datetime | None = None,
) -> CrlBundle:
    """A CRL signed by ``ca`` listing every serial in ``revoked``.

    ``number`` is the CRL number extension; by default the build time in unix milliseconds
    (pass a larger one to keep it strictly increasing across rebuilds within a millisecond).
    """
    items = revoked.items() if isinstance(revoked, Mapping) else revoked
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    this_update = moment - _BACKDATE
    next_update = moment + lifetime
    builder = x509.CertificateRevocationListBuilder().last_update(this_update).next_update(next_update)
    serials: set[int] = set()
    for serial, when in items:
        if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial <= MAX_SERIAL:
            raise InvalidInput(f"certificate serial must be an integer in 1..2**63-1, got {serial!r}")
        if serial in serials:
            continue
        serials.add(serial)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(min(_as_datetime(when), moment))
            .build()
        )
    crl_number = number if number is not None else time.time_ns() // 1_000_000
    builder = builder.add_extension(x509.CRLNumber(crl_number), critical=False)
    crl = ca.sign_crl(builder)
    return CrlBundle(
        pem=crl.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        der=crl.public_bytes(serialization.Encoding.DER),
        serials=frozenset(serials),
        this_update=int(this_update.timestamp()),
        next_update=int(next_update.timestamp()),
        number=crl_number,
    )


def revoked_serials(ca: CertificateAuthority, crl_data: bytes | str) -> frozenset[int]:
    """The serials a CRL lists, after checking ``ca`` signed it (:class:`InvalidInput` if not)."""
    raw = crl_data.encode("ascii") if isinstance(crl_data, str) else crl_data
    try:
        crl = x509.load_pem_x509_crl(raw) if raw.lstrip().startswith(b"-----BEGIN") else x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise InvalidInput(f"not a valid CRL: {exc}") from exc
    if not ca.signed_crl(crl):
        raise InvalidInput("the CRL was not signed by this hub's CA")
    return frozenset(r.serial_number for r in crl)
