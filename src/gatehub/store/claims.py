"""Device claiming: a device opens a claim window with a secret; a customer who knows the
secret claims the device inside the window and becomes its owner (``devices.customer_id``).

Refused: no window, an expired window, a wrong secret, a device that already has an owner.
The claim is one transaction with conditional updates, so two claimers cannot both win.
"""

from __future__ import annotations

import hmac

from sqlalchemy import delete, insert, select, update

from gatehub.domain.telemetry import now_ms
from gatehub.errors import Conflict, NotFound, PermissionDenied
from gatehub.store.db import Database
from gatehub.store.tables import claims, devices


class Claims:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, device_id: str, secret_key: str, duration_ms: int) -> int:
        """Open (or re-open) the claim window of a device that has no owner; returns its end (ms).
        A device that already has an owner keeps it: the window is not opened."""
        now = now_ms()
        expires = now + duration_ms
        async with self.db.begin() as c:
            owner = (await c.execute(select(devices.c.customer_id).where(devices.c.id == device_id))).first()
            if owner is None:
                raise NotFound(f"device {device_id} not found")
            if owner.customer_id is not None:
                raise Conflict(f"device {device_id} is already claimed", code="already_claimed")
            await c.execute(delete(claims).where(claims.c.device_id == device_id))
            await c.execute(insert(claims).values(device_id=device_id, secret_key=secret_key, expires_at=expires))
        return expires

    async def get(self, device_id: str) -> dict[str, object] | None:
        async with self.db.connect() as c:
            r = (await c.execute(select(claims).where(claims.c.device_id == device_id))).first()
        if r is None:
            return None
        return {
            "deviceId": r.device_id,
            "expiresAt": r.expires_at,
            "claimedBy": r.claimed_by,
            "claimedAt": r.claimed_at,
        }

    async def claim(self, device_id: str, secret_key: str, customer_id: str) -> None:
        """Assign the device to ``customer_id`` if the window is open and the secret matches."""
        now = now_ms()
        async with self.db.begin() as c:
            dev = (await c.execute(select(devices.c.customer_id).where(devices.c.id == device_id))).first()
            if dev is None:
                raise NotFound(f"device {device_id} not found")
            r = (await c.execute(select(claims).where(claims.c.device_id == device_id))).first()
            if dev.customer_id is not None or (r is not None and r.claimed_by is not None):
                raise Conflict(f"device {device_id} is already claimed", code="already_claimed")
            if r is None:
                raise Conflict(f"device {device_id} has no open claim window", code="claim_not_open")
            if r.expires_at < now:
                raise Conflict(f"the claim window of device {device_id} has expired", code="claim_expired")
            if not hmac.compare_digest(r.secret_key.encode(), secret_key.encode()):
                raise PermissionDenied("wrong secret key", code="wrong_secret")
            done = await c.execute(
                update(claims)
                .where(claims.c.device_id == device_id, claims.c.claimed_by.is_(None))
                .values(claimed_by=customer_id, claimed_at=now)
            )
            owned = await c.execute(
                update(devices)
                .where(devices.c.id == device_id, devices.c.customer_id.is_(None))
                .values(customer_id=customer_id)
            )
            if not done.rowcount or not owned.rowcount:
                raise Conflict(f"device {device_id} is already claimed", code="already_claimed")
