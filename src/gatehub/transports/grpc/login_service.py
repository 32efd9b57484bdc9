"""``gsdk.login.Login``: tenant and administrator login with a certificate, and logout.

A certificate is public, so the one sent in ``tenantCert`` / ``adminTenantCert`` must be the
very client certificate of the mTLS connection the call arrives on (same SHA-256
fingerprint); the handshake has already proved the client holds its key and that it is not
blacklisted, expired or foreign.
"""

from __future__ import annotations

from gatehub.errors import GatehubError, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from gatehub.pki import ADMIN_TENANT_ID, CertificateIdentity, CertKind, TlsContextProvider, parse_certificate
from gatehub.store import Store
from gatehub.transports.grpc._generated import login_pb2
from gatehub.transports.grpc.auth import TokenAuthority
from gatehub.transports.grpc.dispatch import Call

__all__ = ["PUBLIC_METHODS", "LoginService"]

PUBLIC_METHODS = frozenset({"Login", "LoginAdmin"})


class LoginService:
    def __init__(self, store: Store, provider: TlsContextProvider, tokens: TokenAuthority) -> None:
        self.store = store
        self.provider = provider
        self.tokens = tokens

    def _same_certificate(self, pem: str, call: Call, field: str) -> CertificateIdentity:
        if not pem.strip():
            raise InvalidInput(f"{field} must hold the client certificate (PEM) of this connection")
        try:
            ident = parse_certificate(self.provider.ca, pem)
        except InvalidInput:
            raise InvalidInput(f"{field} is not a PEM certificate") from None
        except GatehubError as exc:
            raise Unauthenticated(f"{field}: {exc.message}") from None
        if ident.fingerprint != call.conn.identity.fingerprint:
            raise Unauthenticated(f"{field} is not the client certificate of this mTLS connection")
        if self.provider.is_blacklisted(ident.serial):
            raise Unauthenticated(f"{field} has been blacklisted")
        return ident

    async def Login(self, req: login_pb2.LoginRequest, call: Call) -> login_pb2.LoginResponse:
        ident = self._same_certificate(req.tenantCert, call, "tenantCert")
        if ident.kind is not CertKind.TENANT or ident.tenant_id is None:
            raise PermissionDenied(f"Login needs a tenant certificate; this is a {ident.kind.value} certificate")
        try:
            await self.store.accounts.get_tenant(ident.tenant_id)
        except NotFound:
            raise Unauthenticated(f"tenant {ident.tenant_id} does not exist (any more)") from None
        token, _claims = self.tokens.issue(ident.tenant_id, False, ident.serial)
        return login_pb2.LoginResponse(jwtToken=token)

    async def LoginAdmin(self, req: login_pb2.LoginAdminRequest, call: Call) -> login_pb2.LoginAdminResponse:
        ident = self._same_certificate(req.adminTenantCert, call, "adminTenantCert")
        if ident.kind is not CertKind.ADMIN:
            raise PermissionDenied(f"LoginAdmin needs the administrator certificate; this is a {ident.kind.value} one")
        tenant = req.tenantID or ADMIN_TENANT_ID
        if tenant != ADMIN_TENANT_ID:
            await self.store.accounts.get_tenant(tenant)
        token, _claims = self.tokens.issue(tenant, True, ident.serial)
        return login_pb2.LoginAdminResponse(jwtToken=token)

    async def Logout(self, req: login_pb2.LogoutRequest, call: Call) -> login_pb2.LogoutResponse:
        self.tokens.revoke(call.caller)
        return login_pb2.LogoutResponse()
