"""Certificate subjects (:class:`PKIName`), certificate kinds, and the identity URIs.

A certificate issued by the hub CA carries its identity in exactly one URI subject alternative
name, apart from the free-text subject (whose common name anyone may choose):

=========  ==========================================================
kind       URI SAN
=========  ==========================================================
server     ``urn:gatehub:server``
gateway    ``urn:gatehub:tenant:{tenantId}:gateway:{gatewayId}``
tenant     ``urn:gatehub:tenant:{tenantId}``
admin      ``urn:gatehub:tenant:administrator``
=========  ==========================================================

``{tenantId}`` and ``{gatewayId}`` are percent-encoded (RFC 3986): every character other than
the unreserved ``A-Z a-z 0-9 - . _ ~`` is written as ``%XX`` of its UTF-8 bytes, so an id
containing ``:`` cannot be confused with the separators (``a:b`` becomes ``a%3Ab``). Ids are
1-128 characters without control characters. The tenant id ``administrator`` is reserved for
the admin certificate.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from gatehub.errors import InvalidInput

__all__ = [
    "ADMIN_TENANT_ID",
    "URI_PREFIX",
    "CertKind",
    "PKIName",
    "identity_uri",
    "parse_identity_uri",
    "validate_id",
]

URI_PREFIX = "urn:gatehub:"
ADMIN_TENANT_ID = "administrator"
_SERVER_URI = "urn:gatehub:server"
_TENANT_PREFIX = "urn:gatehub:tenant:"
_GATEWAY_SEP = ":gateway:"
MAX_ID_LENGTH = 128

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CertKind(enum.StrEnum):
    """What a certificate issued by the hub CA is for."""

    SERVER = "server"
    GATEWAY = "gateway"
    TENANT = "tenant"
    ADMIN = "admin"


# (field, X.509 attribute, upper bound in characters: RFC 5280 ub-* values)
_FIELDS: tuple[tuple[str, x509.ObjectIdentifier, int], ...] = (
    ("country", NameOID.COUNTRY_NAME, 2),
    ("province", NameOID.STATE_OR_PROVINCE_NAME, 128),
    ("city", NameOID.LOCALITY_NAME, 128),
    ("organization", NameOID.ORGANIZATION_NAME, 64),
    ("organizationUnit", NameOID.ORGANIZATIONAL_UNIT_NAME, 64),
    ("commonName", NameOID.COMMON_NAME, 64),
)


@dataclass(frozen=True, slots=True)
class PKIName:
    """The subject of a certificate, as G-SDK's ``gsdk.cert.PKIName``; an empty field is absent."""

    country: str = ""
    province: str = ""
    city: str = ""
    organization: str = ""
    organizationUnit: str = ""  # the G-SDK field names are camelCase
    commonName: str = ""

    def validate(self) -> PKIName:
        """Return self if every field is acceptable, else raise :class:`InvalidInput`."""
        for field, _oid, limit in _FIELDS:
            value = getattr(self, field)
            if not isinstance(value, str):
                raise InvalidInput(f"PKIName.{field} must be a string")
            if not value:
                continue
            if field == "country":
                if not _COUNTRY.fullmatch(value):
                    raise InvalidInput(f"PKIName.country must be exactly 2 letters A-Z (ISO 3166), got {value!r}")
                continue
            if len(value) > limit:
                raise InvalidInput(f"PKIName.{field} is {len(value)} characters long; at most {limit}")
            if _CONTROL.search(value):
                raise InvalidInput(f"PKIName.{field} must not contain control characters")
            if not value.strip():
                raise InvalidInput(f"PKIName.{field} must not be only whitespace")
        return self

    def with_default_common_name(self, common_name: str) -> PKIName:
        """Return a copy whose empty commonName is replaced by ``common_name`` (cut to 64)."""
        if self.commonName:
            return self
        return PKIName(
            country=self.country,
            province=self.province,
            city=self.city,
            organization=self.organization,
            organizationUnit=self.organizationUnit,
            commonName=common_name[:64],
        )

    def to_x509(self) -> x509.Name:
        """The X.509 name (C, ST, L, O, OU, CN order), validated first."""
        self.validate()
        attrs = [x509.NameAttribute(oid, getattr(self, field)) for field, oid, _ in _FIELDS if getattr(self, field)]
        return x509.Name(attrs)

    @classmethod
    def from_x509(cls, name: x509.Name) -> PKIName:
        """Read the six fields back from an X.509 name (absent fields are empty)."""
        values: dict[str, str] = {}
        for field, oid, _ in _FIELDS:
            found = name.get_attributes_for_oid(oid)
            if found:
                value = found[0].value
                values[field] = value if isinstance(value, str) else value.decode("utf-8", "replace")
        return cls(**values)


def validate_id(value: object, what: str) -> str:
    """Check a tenant or gateway id (1-128 characters, no control characters)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value


def _enc(value: str) -> str:
    return quote(value, safe="")


def identity_uri(kind: CertKind, tenant_id: str | None = None, gateway_id: str | None = None) -> str:
    """The URI SAN that binds ``kind`` (and tenant id, gateway id) into a certificate."""
    if kind is CertKind.SERVER:
        return _SERVER_URI
    if kind is CertKind.ADMIN:
        return _TENANT_PREFIX + ADMIN_TENANT_ID
    tenant = validate_id(tenant_id, "tenantID")
    if tenant == ADMIN_TENANT_ID:
        raise InvalidInput(f"tenantID {ADMIN_TENANT_ID!r} is reserved for the admin certificate")
    if kind is CertKind.TENANT:
        return _TENANT_PREFIX + _enc(tenant)
    gateway = validate_id(gateway_id, "gatewayID")
    return _TENANT_PREFIX + _enc(tenant) + _GATEWAY_SEP + _enc(gateway)


def parse_identity_uri(uri: str) -> tuple[CertKind, str | None, str | None] | None:
    """``(kind, tenant_id, gateway_id)`` of a gatehub identity URI, or None if it is not one."""
    if uri == _SERVER_URI:
        return CertKind.SERVER, None, None
    if not uri.startswith(_TENANT_PREFIX):
        return None
    rest = uri[len(_TENANT_PREFIX) :]
    tenant_enc, sep, gateway_enc = rest.partition(_GATEWAY_SEP)
    if not tenant_enc or ":" in tenant_enc or (sep and (not gateway_enc or ":" in gateway_enc)):
        return None
    try:
        tenant = unquote(tenant_enc, errors="strict")
        gateway = unquote(gateway_enc, errors="strict") if sep else None
    except UnicodeDecodeError:
        return None
    if not sep:
        if tenant == ADMIN_TENANT_ID:
            return CertKind.ADMIN, ADMIN_TENANT_ID, None
        return CertKind.TENANT, tenant, None
    if tenant == ADMIN_TENANT_ID:
        return None
    return CertKind.GATEWAY, tenant, gateway
