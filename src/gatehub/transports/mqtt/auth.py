"""Who is connecting: a chain of small authenticators, each answering allow / deny / don't know.

The chain asks each plug-in in order; the first that allows or denies decides. If none knows the
client, it is refused (bad user name or password). The result of an allow is a principal
(tenant, device) that the session carries for its whole life.

Plug-ins here: the client certificate of an mTLS listener (issued by the hub CA, its identity
bound to a gateway), the access token as user name (ThingsBoard style), and anonymous clients
in one designated tenant (off by default). The Alink signature plug-in lives with its dialect.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from gatehub.domain.model import Device
from gatehub.pki import CertificateIdentity, CertKind
from gatehub.store import Store

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MqttPrincipal:
    tenant_id: str
    device_id: str | None  # None for anonymous clients
    device_kind: str | None = None
    method: str = "token"  # token, certificate, alink, anonymous
    cert_serial: int | None = None
    product_id: str | None = None

    @property
    def is_device(self) -> bool:
        return self.device_id is not None


@dataclass(slots=True)
class AuthRequest:
    client_id: str
    username: str | None
    password: bytes | None
    protocol_version: int
    peer_cert: CertificateIdentity | None  # verified by the TLS layer (hub CA, not revoked)
    listener: str  # "tcp", "tls", "ws"


@dataclass(frozen=True, slots=True)
class AuthResult:
    verdict: Verdict
    principal: MqttPrincipal | None = None
    reason_code: int = 0x86  # bad user name or password
    message: str = ""

    @staticmethod
    def unknown() -> AuthResult:
        return AuthResult(Verdict.UNKNOWN)

    @staticmethod
    def deny(message: str, reason_code: int = 0x86) -> AuthResult:
        return AuthResult(Verdict.DENY, reason_code=reason_code, message=message)


class Authenticator(Protocol):
    name: str

    async def authenticate(self, req: AuthRequest) -> AuthResult: ...


def principal_of(dev: Device, method: str, cert_serial: int | None = None) -> MqttPrincipal:
    return MqttPrincipal(dev.tenant_id, dev.id, dev.kind.value, method, cert_serial, dev.product_id)


class CertificateAuth:
    """mTLS: the certificate's bound gateway id is the device (the TLS layer already checked the
    CA, validity and the blacklist). A certificate alone is enough; a user name, if sent, must
    not claim another device's token."""

    name = "certificate"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(self, req: AuthRequest) -> AuthResult:
        ident = req.peer_cert
        if ident is None:
            return AuthResult.unknown()
        if ident.kind is not CertKind.GATEWAY or not ident.gateway_id or not ident.tenant_id:
            return AuthResult.deny("this certificate is not a gateway certificate", 0x87)
        try:
            dev = await self.store.devices.get(ident.tenant_id, ident.gateway_id)
        except Exception:
            return AuthResult.deny(f"gateway {ident.gateway_id} is not registered in tenant {ident.tenant_id}", 0x87)
        return AuthResult(Verdict.ALLOW, principal_of(dev, "certificate", ident.serial))


class AccessTokenAuth:
    """User name = the device's access token (password empty or ignored), as ThingsBoard does."""

    name = "token"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(self, req: AuthRequest) -> AuthResult:
        if not req.username:
            return AuthResult.unknown()
        dev = await self.store.devices.find_by_token(req.username)
        if dev is None:
            return AuthResult.unknown()
        return AuthResult(Verdict.ALLOW, principal_of(dev, "token"))


class AnonymousAuth:
    """Clients without credentials land in one designated tenant (only when configured)."""

    name = "anonymous"

    def __init__(self, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id

    async def authenticate(self, req: AuthRequest) -> AuthResult:
        if self.tenant_id is None or req.username or req.password or req.peer_cert is not None:
            return AuthResult.unknown()
        return AuthResult(Verdict.ALLOW, MqttPrincipal(self.tenant_id, None, None, "anonymous"))


class AuthChain:
    def __init__(self, plugins: list[Authenticator]) -> None:
        self.plugins = plugins

    def insert(self, plugin: Authenticator, index: int = 0) -> None:
        self.plugins.insert(index, plugin)

    async def authenticate(self, req: AuthRequest) -> AuthResult:
        for plugin in self.plugins:
            try:
                res = await plugin.authenticate(req)
            except Exception:
                log.exception("authenticator %s failed", plugin.name)
                return AuthResult.deny("authentication is unavailable", 0x88)
            if res.verdict is not Verdict.UNKNOWN:
                return res
        return AuthResult.deny("unknown credentials", 0x86 if req.username else 0x87)
