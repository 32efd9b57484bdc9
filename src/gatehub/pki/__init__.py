"""The hub's certificate authority: issuing, identities, CRLs and TLS contexts.

No database here: the store keeps issuance history and the blacklist and hands this layer
plain values (issued serials, blacklisted serials).

The names below load their module (and ``cryptography``) on first use: importing one light
submodule, or the store that names these types, does not load them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehub.pki.ca import DEFAULT_CA_DIR, MAX_SERIAL, CertificateAuthority, KeyType, SerialInUse, new_serial
    from gatehub.pki.crl import CrlBundle, build_crl, revoked_serials
    from gatehub.pki.identity import (
        CertificateIdentity,
        certificate_der,
        load_certificate,
        parse_certificate,
        peer_identity,
    )
    from gatehub.pki.issue import (
        IssuedCertificate,
        issue_admin_certificate,
        issue_gateway_certificate,
        issue_server_certificate,
        issue_tenant_certificate,
    )
    from gatehub.pki.names import ADMIN_TENANT_ID, CertKind, PKIName, identity_uri, parse_identity_uri
    from gatehub.pki.tls import DEFAULT_SERVER_HOSTS, ServerCertificate, TlsContextProvider, client_context

_WHERE = {
    "ADMIN_TENANT_ID": "gatehub.pki.names",
    "CertKind": "gatehub.pki.names",
    "CertificateAuthority": "gatehub.pki.ca",
    "CertificateIdentity": "gatehub.pki.identity",
    "CrlBundle": "gatehub.pki.crl",
    "DEFAULT_CA_DIR": "gatehub.pki.ca",
    "DEFAULT_SERVER_HOSTS": "gatehub.pki.tls",
    "IssuedCertificate": "gatehub.pki.issue",
    "KeyType": "gatehub.pki.ca",
    "MAX_SERIAL": "gatehub.pki.ca",
    "PKIName": "gatehub.pki.names",
    "SerialInUse": "gatehub.pki.ca",
    "ServerCertificate": "gatehub.pki.tls",
    "TlsContextProvider": "gatehub.pki.tls",
    "build_crl": "gatehub.pki.crl",
    "certificate_der": "gatehub.pki.identity",
    "client_context": "gatehub.pki.tls",
    "identity_uri": "gatehub.pki.names",
    "issue_admin_certificate": "gatehub.pki.issue",
    "issue_gateway_certificate": "gatehub.pki.issue",
    "issue_server_certificate": "gatehub.pki.issue",
    "issue_tenant_certificate": "gatehub.pki.issue",
    "load_certificate": "gatehub.pki.identity",
    "new_serial": "gatehub.pki.ca",
    "parse_certificate": "gatehub.pki.identity",
    "parse_identity_uri": "gatehub.pki.names",
    "peer_identity": "gatehub.pki.identity",
    "revoked_serials": "gatehub.pki.crl",
}


__all__ = [
    "ADMIN_TENANT_ID",
    "DEFAULT_CA_DIR",
    "DEFAULT_SERVER_HOSTS",
    "MAX_SERIAL",
    "CertKind",
    "CertificateAuthority",
    "CertificateIdentity",
    "CrlBundle",
    "IssuedCertificate",
    "KeyType",
    "PKIName",
    "SerialInUse",
    "ServerCertificate",
    "TlsContextProvider",
    "build_crl",
    "certificate_der",
    "client_context",
    "identity_uri",
    "issue_admin_certificate",
    "issue_gateway_certificate",
    "issue_server_certificate",
    "issue_tenant_certificate",
    "load_certificate",
    "new_serial",
    "parse_certificate",
    "parse_identity_uri",
    "peer_identity",
    "revoked_serials",
]


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
