"""Device attributes: read them, and push shared-attribute changes to the devices.

Writes go through ingest like any other data (acknowledged means stored). After a commit the
bus carries ``t.{tenant}.attributes.{device}``; for a shared change this service offers the new
values to every registered :class:`AttributeDownlink` (a dialect that can reach the device through
one of its sessions: the device's own or its gateway's), first taker wins. A device that is not
connected gets what it missed from its dialect when it comes back (the dialect knows when its
client subscribed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from gatehub.bus import Bus
from gatehub.domain.model import AttributeScope
from gatehub.loop import stop_task
from gatehub.store import Store

__all__ = ["AttributeDownlink", "AttributeService"]

log = logging.getLogger(__name__)


class AttributeDownlink(Protocol):
    async def push_attributes(self, tenant_id: str, device_id: str, body: dict[str, Any]) -> bool:
        """Send ``body`` (changed keys, and ``deleted``: removed keys) to the device if one of this
        dialect's sessions serves it; True when sent."""
        ...


class AttributeService:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self.downlinks: list[AttributeDownlink] = []
        self._task: asyncio.Task[None] | None = None

    def add_downlink(self, downlink: AttributeDownlink) -> None:
        self.downlinks.append(downlink)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shared-attribute-push")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def read(self, device_id: str, scope: str, keys: list[str] | None) -> dict[str, Any]:
        """The values of one scope (all keys, or those named)."""
        got = await self.store.data.attributes(device_id, AttributeScope(scope), keys)
        return got.get(scope, {})

    async def changed_since(self, device_id: str, since: int) -> dict[str, Any]:
        """The shared attributes of ``device_id`` changed at or after ``since`` (ms)."""
        rows = await self.store.data.attributes_detailed(device_id, AttributeScope.SHARED)
        return {r["key"]: r["value"] for r in rows if r["lastUpdateTs"] >= since}

    async def push(self, tenant_id: str, device_id: str, data: dict[str, Any], deleted: list[str]) -> bool:
        body = dict(data)
        if deleted:
            body["deleted"] = deleted
        for d in self.downlinks:
            if await d.push_attributes(tenant_id, device_id, body):
                return True
        return False

    async def _run(self) -> None:
        while True:
            sub = self.bus.subscribe("t.*.attributes.*", maxsize=100_000)
            async for env in sub:
                data = env.data
                if data.get("scope") != "shared" or not self.downlinks:
                    continue
                tenant = env.subject.split(".", 2)[1]
                try:
                    await self.push(
                        tenant, str(data.get("deviceId")), data.get("data") or {}, data.get("deleted") or []
                    )
                except Exception:
                    log.exception("shared attribute push to %s failed", data.get("deviceId"))
            if sub.overflowed:
                log.warning("shared attribute pushes fell behind; some updates were not pushed live")
