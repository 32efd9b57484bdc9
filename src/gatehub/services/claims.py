"""Device claiming: a device opens a claim window with a secret (ThingsBoard's claim topics);
a customer who knows the secret claims the device inside the window (REST).

The rules of the window live in ``store.claims`` (one transaction, two claimers cannot both win);
this service adds what a caller must satisfy: the customer exists in the device's tenant.
Claiming works whether or not a listener that opens windows is on: without one, no window is ever
open and a claim is refused like any claim outside its window.
"""

from __future__ import annotations

from gatehub.config import Settings
from gatehub.domain.model import Device
from gatehub.store import Store
from gatehub.store.claims import Claims

__all__ = ["ClaimService"]


class ClaimService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.claims = Claims(store.db)

    async def open(self, device_id: str, secret_key: str, duration_ms: int | None = None) -> int:
        """Open (or re-open) the window of a device without an owner; returns its end (ms)."""
        if duration_ms is None or duration_ms <= 0:
            duration_ms = self.settings.tb_claim_duration_ms
        return await self.claims.open(device_id, secret_key, duration_ms)

    async def claim(self, device: Device, secret_key: str, customer_id: str) -> None:
        """Assign ``device`` to ``customer_id`` if its window is open and the secret matches."""
        await self.store.accounts.get_customer(device.tenant_id, customer_id)
        await self.claims.claim(device.id, secret_key, customer_id)
