"""Device access tokens of the IoTDA HTTPS API.

Only the SHA-256 of a token is stored. Issuing a token for a device marks the device's earlier
tokens superseded at that moment; a superseded token stays valid for ``overlap`` (30 s in the
seed) and is refused after it, and every token is refused after its expiry. Tokens that can no
longer be valid are deleted when the device next gets one.

The repository takes the current time as an argument (Unix milliseconds) instead of reading a
clock, so callers (and tests) decide what "now" is.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, or_, select, update

from gatehub.store.db import Database
from gatehub.store.tables import device_tokens, devices

TOKEN_BYTES = 32  # 43 URL-safe characters: inside IoTDA's 32-256


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token with what a request needs to know about its device."""

    device_id: str
    tenant_id: str
    product_id: str
    kind: str
    expires_at: int  # ms
    superseded_at: int | None  # ms

    def valid_at(self, now_ms: int, overlap_ms: int) -> bool:
        if now_ms >= self.expires_at:
            return False
        return self.superseded_at is None or now_ms < self.superseded_at + overlap_ms


class DeviceTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def issue(self, device_id: str, now_ms: int, ttl_ms: int, overlap_ms: int) -> tuple[str, int]:
        """A new token for ``device_id`` valid until ``now + ttl``; earlier ones are superseded now.

        Returns ``(token, expires_at ms)``.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now_ms + ttl_ms
        dt = device_tokens.c
        async with self.db.begin() as c:
            await c.execute(
                delete(device_tokens).where(
                    dt.device_id == device_id,
                    or_(
                        dt.expires_at <= now_ms,
                        and_(dt.superseded_at.is_not(None), dt.superseded_at <= now_ms - overlap_ms),
                    ),
                )
            )
            await c.execute(
                update(device_tokens)
                .where(dt.device_id == device_id, dt.superseded_at.is_(None))
                .values(superseded_at=now_ms)
            )
            await c.execute(
                insert(device_tokens).values(
                    token_hash=hash_token(token),
                    device_id=device_id,
                    expires_at=expires_at,
                    superseded_at=None,
                    created_at=now_ms,
                )
            )
        return token, expires_at

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash and its device, or None (valid or not: see ``valid_at``)."""
        q = (
            select(
                device_tokens.c.device_id,
                devices.c.tenant_id,
                devices.c.product_id,
                devices.c.kind,
                device_tokens.c.expires_at,
                device_tokens.c.superseded_at,
            )
            .select_from(device_tokens.join(devices, devices.c.id == device_tokens.c.device_id))
            .where(device_tokens.c.token_hash == token_hash)
        )
        async with self.db.connect() as c:
            r = (await c.execute(q)).first()
        if r is None:
            return None
        return TokenRecord(r[0], r[1], r[2], r[3], int(r[4]), None if r[5] is None else int(r[5]))

    async def revoke_device(self, device_id: str) -> int:
        """Forget every token of a device (after a secret reset); returns how many."""
        async with self.db.begin() as c:
            res = await c.execute(delete(device_tokens).where(device_tokens.c.device_id == device_id))
        return int(res.rowcount or 0)
