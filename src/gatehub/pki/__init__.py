"""The hub's certificate authority: issuing, identities, CRLs and TLS contexts.

No database here: the store keeps issuance history and the blacklist and hands this layer
plain values (issued serials, blacklisted serials).
"""

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
