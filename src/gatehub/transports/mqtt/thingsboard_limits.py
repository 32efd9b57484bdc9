"""Token buckets for the ThingsBoard API: data points per second per device and per tenant.

A bucket holds ``rate * burst`` tokens and refills continuously; taking ``n`` tokens either
succeeds whole or not at all. Rate 0 switches a limit off.
"""

from __future__ import annotations

import time


class TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.capacity = max(rate * burst, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, n: int, now: float) -> bool:
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False

    def give_back(self, n: int) -> None:
        self.tokens = min(self.capacity, self.tokens + n)


class RateLimits:
    """Per-device and per-tenant buckets (created on first use, dropped when idle and full)."""

    def __init__(self, per_device: float, per_tenant: float, burst: float) -> None:
        self.per_device = per_device
        self.per_tenant = per_tenant
        self.burst = burst
        self.devices: dict[str, TokenBucket] = {}
        self.tenants: dict[str, TokenBucket] = {}
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return bool(self.per_device or self.per_tenant)

    def allow(self, tenant_id: str, device_id: str, n: int, now: float) -> bool:
        """Take ``n`` points from the device's and the tenant's buckets (both or neither)."""
        dev: TokenBucket | None = None
        if self.per_device:
            dev = self.devices.get(device_id)
            if dev is None:
                if len(self.devices) > 200_000:
                    self.devices.clear()
                dev = self.devices[device_id] = TokenBucket(self.per_device, self.burst)
            if not dev.take(n, now):
                self.refused += 1
                return False
        if self.per_tenant:
            ten = self.tenants.get(tenant_id)
            if ten is None:
                ten = self.tenants[tenant_id] = TokenBucket(self.per_tenant, self.burst)
            if not ten.take(n, now):
                if dev is not None:
                    dev.give_back(n)
                self.refused += 1
                return False
        return True

    def admit(self, tenant_id: str, counts: list[tuple[str, int]], now: float) -> list[int]:
        """``allow`` for each ``(device_id, n)`` of one message, in order; the indexes refused.

        The same decisions as calling ``allow`` for each in turn, with the buckets' arithmetic
        done once per message where it can be (this runs for every gateway message)."""
        refused: list[int] = []
        ten: TokenBucket | None = None
        ten_tokens = 0.0
        if self.per_tenant:
            ten = self.tenants.get(tenant_id)
            if ten is None:
                ten = self.tenants[tenant_id] = TokenBucket(self.per_tenant, self.burst)
            ten_tokens = min(ten.capacity, ten.tokens + (now - ten.stamp) * ten.rate)
            ten.stamp = now
        per_device = self.per_device
        devices = self.devices
        for i, (device_id, n) in enumerate(counts):
            if not n:
                continue
            dev: TokenBucket | None = None
            if per_device:
                dev = devices.get(device_id)
                if dev is None:
                    if len(devices) > 200_000:
                        devices.clear()
                    dev = devices[device_id] = TokenBucket(per_device, self.burst)
                tokens = min(dev.capacity, dev.tokens + (now - dev.stamp) * dev.rate)
                dev.stamp = now
                if tokens < n:
                    dev.tokens = tokens
                    refused.append(i)
                    continue
                dev.tokens = tokens - n
            if ten is not None:
                if ten_tokens < n:
                    if dev is not None:
                        dev.give_back(n)
                    refused.append(i)
                    continue
                ten_tokens -= n
        if ten is not None:
            ten.tokens = ten_tokens
        self.refused += len(refused)
        return refused

    def describe(self, rate: float) -> str:
        """A limit as ThingsBoard's clients read it: ``capacity:seconds`` (empty = none)."""
        if not rate:
            return ""
        seconds = max(1, int(self.burst))
        return f"{int(rate * seconds)}:{seconds}"
