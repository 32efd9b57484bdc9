"""G-SDK login tokens: JWTs (HS256) bound to the client certificate they were issued to.

``Login`` / ``LoginAdmin`` return a token that every later call sends in gRPC metadata key
``token`` (no "Bearer"). Claims:

``sub``  the tenant id the token acts in (``administrator`` for an admin without a tenant)
``adm``  true for administrator tokens (``LoginAdmin``)
``ser``  serial of the client certificate the token was issued to, as a decimal string
``jti``  random token id (``Logout`` revokes it)
``iat``, ``exp``  issue and expiry time (``grpc_token_ttl`` seconds later)

A token is accepted only on a connection whose client certificate has the serial in ``ser`` and
while that certificate is not blacklisted: a token copied off a connection is useless without
the certificate's private key, and blacklisting a certificate ends its tokens at once.

The signing secret is 32 random bytes in ``{pki_dir}/jwt.secret`` (mode 0600), created on first
use; every node sharing the data folder accepts the others' tokens. Revoked token ids are kept
in memory and in ``{pki_dir}/jwt.revoked`` (one ``jti exp`` a line, pruned when they expire),
so a logout survives a restart.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from gatehub.errors import Unauthenticated
from gatehub.pki.ca import write_atomic

__all__ = ["TokenAuthority", "TokenClaims"]

SECRET_FILE = "jwt.secret"
REVOKED_FILE = "jwt.revoked"
_ALGORITHM = "HS256"
_ISSUER = "gatehub"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    tenant_id: str
    admin: bool
    serial: int
    token_id: str
    expires: int


def _load_or_create_secret(directory: Path) -> bytes:
    path = directory / SECRET_FILE
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes().strip()
        if len(data) < 64:
            raise Unauthenticated(f"{path} is damaged; delete it to make a new one (logs everyone out)") from None
        return bytes.fromhex(data.decode("ascii"))
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secret.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return secret


class TokenAuthority:
    """Issues, verifies and revokes G-SDK login tokens; see the module docstring."""

    def __init__(self, directory: Path, ttl: int) -> None:
        self._dir = directory
        self._secret = _load_or_create_secret(directory)
        self._ttl = ttl
        self._revoked: dict[str, int] = self._load_revoked()

    def _load_revoked(self) -> dict[str, int]:
        out: dict[str, int] = {}
        now = int(time.time())
        with contextlib.suppress(FileNotFoundError):
            for line in (self._dir / REVOKED_FILE).read_text("ascii").splitlines():
                jti, _, exp = line.partition(" ")
                with contextlib.suppress(ValueError):
                    if int(exp) > now:
                        out[jti] = int(exp)
        return out

    def issue(self, tenant_id: str, admin: bool, serial: int) -> tuple[str, TokenClaims]:
        now = int(time.time())
        claims = TokenClaims(tenant_id, admin, serial, secrets.token_urlsafe(16), now + self._ttl)
        token = jwt.encode(
            {
                "iss": _ISSUER,
                "sub": tenant_id,
                "adm": admin,
                "ser": str(serial),
                "jti": claims.token_id,
                "iat": now,
                "exp": claims.expires,
            },
            self._secret,
            algorithm=_ALGORITHM,
        )
        return token, claims

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid, unexpired, unrevoked token; :class:`Unauthenticated` if not."""
        if not token:
            raise Unauthenticated("missing login token: call Login first and send its jwtToken in metadata 'token'")
        if token.startswith("ghk_"):
            raise Unauthenticated(
                "this is a gatehub REST API key, not a G-SDK login token: call Login (or LoginAdmin) "
                "and send the jwtToken it returns in metadata 'token'"
            )
        if token[:7].lower() == "bearer ":
            raise Unauthenticated("send the login token in metadata 'token' as it is, without 'Bearer '")
        if token.count(".") != 2:
            raise Unauthenticated(
                "the login token is not a JWT: send the jwtToken that Login or LoginAdmin returned, "
                "unchanged, in metadata 'token' (no 'Bearer ')"
            )
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "ser"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the login token has expired; log in again") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "the login token was not signed by this hub (issued by another hub, or its jwt.secret changed); "
                "log in again"
            ) from None
        except (jwt.InvalidIssuerError, jwt.MissingRequiredClaimError):
            raise Unauthenticated("the login token is a JWT but not a gatehub login token; call Login") from None
        except jwt.DecodeError:
            raise Unauthenticated("the login token is damaged (not a readable JWT); log in again") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the login token is not valid ({exc}); log in again") from None
        try:
            claims = TokenClaims(
                str(raw["sub"]), bool(raw.get("adm")), int(raw["ser"]), str(raw["jti"]), int(raw["exp"])
            )
        except (TypeError, ValueError):
            raise Unauthenticated("the login token has malformed claims; log in again") from None
        if claims.token_id in self._revoked:
            raise Unauthenticated("the login token was ended by Logout; log in again")
        return claims

    def revoke(self, claims: TokenClaims) -> None:
        now = int(time.time())
        self._revoked = {j: e for j, e in self._revoked.items() if e > now}
        self._revoked[claims.token_id] = claims.expires
        text = "".join(f"{j} {e}\n" for j, e in self._revoked.items())
        write_atomic(self._dir / REVOKED_FILE, text.encode("ascii"), 0o600)
