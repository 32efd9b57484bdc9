"""Devices: gateways, sub-devices and direct devices; topology and presence.

Changes that others care about (presence, topology) are published on the bus after commit.
Topology changes bump the gateway's ``topology_version``, are written to the event log in the
same transaction and published as ``t.{tenant}.topology.{gateway}`` with the new version.
Dialects change topology through ``store.topology`` (the rules of who may add what live there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gatehub.bus import Bus
from gatehub.domain.model import (
    NODE_TO_KIND,
    UINT32_MAX,
    Device,
    DeviceKind,
    Presence,
    check_id,
    check_name,
    check_parent,
    new_secret,
    new_token,
)
from gatehub.domain.telemetry import now_ms
from gatehub.errors import AlreadyExists, InvalidInput, NotFound, Unavailable
from gatehub.store.accounts import _is_integrity
from gatehub.store.catalog import Catalog
from gatehub.store.db import Database
from gatehub.store.tables import attributes, devices, events, latest, telemetry, telemetry_chunks

_NODE_RE = re.compile(r"[^A-Za-z0-9_-]")


def _device(r: Any) -> Device:
    return Device(
        id=r.id,
        number=r.number,
        tenant_id=r.tenant_id,
        name=r.name,
        product_id=r.product_id,
        kind=DeviceKind(r.kind),
        parent_id=r.parent_id,
        access_token=r.access_token,
        secret=r.secret,
        secret_delivered=r.secret_delivered,
        customer_id=r.customer_id,
        topology_version=r.topology_version,
        presence=Presence(r.presence),
        last_seen=r.last_seen,
        last_address=r.last_address,
        created_at=r.created_at,
    )


@dataclass(slots=True)
class DeviceFilter:
    kind: DeviceKind | None = None
    product_id: str | None = None
    parent_id: str | None = None
    presence: Presence | None = None
    name_prefix: str | None = None
    customer_id: str | None = None


class Devices:
    def __init__(self, db: Database, catalog: Catalog, bus: Bus | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.bus = bus

    async def create(
        self,
        tenant_id: str,
        name: str,
        product_id: str,
        *,
        device_id: str | None = None,
        parent_id: str | None = None,
        access_token: str | None = None,
        secret: str | None = None,
        customer_id: str | None = None,
    ) -> Device:
        check_name(name)
        product = await self.catalog.get_product(tenant_id, product_id)
        kind = NODE_TO_KIND[product.node_type]
        if device_id is None:
            node = _NODE_RE.sub("_", name)[: 127 - len(product_id)] or new_token(6)
            device_id = f"{product_id}_{node}"[:128]
        check_id(device_id, "device id")
        if access_token is not None and not 1 <= len(access_token) <= 256:
            raise InvalidInput("accessToken must be 1-256 characters")
        parent = await self.get(tenant_id, parent_id) if parent_id else None
        check_parent(kind, parent, tenant_id)
        now = now_ms()
        versions: dict[str, int] = {}
        for _attempt in range(8):
            try:
                async with self.db.begin() as c:
                    number = await _next_number(c)
                    await c.execute(
                        insert(devices).values(
                            id=device_id,
                            number=number,
                            tenant_id=tenant_id,
                            name=name,
                            product_id=product_id,
                            kind=kind.value,
                            parent_id=parent_id,
                            access_token=access_token or new_token(),
                            secret=secret or new_secret(),
                            secret_delivered=False,
                            customer_id=customer_id,
                            topology_version=0,
                            presence=Presence.OFFLINE.value,
                            last_seen=None,
                            last_address=None,
                            created_at=now,
                        )
                    )
                    if parent_id:
                        versions = await bump_topology(c, [parent_id])
                        await log_topology(c, tenant_id, parent_id, versions[parent_id], added=[device_id])
                break
            except Exception as exc:
                if not _is_integrity(exc):
                    raise
                clash = await self._clash(tenant_id, device_id, name, access_token)
                if clash:
                    raise AlreadyExists(clash) from None
        else:
            raise Unavailable("could not allocate a device number; try again")
        dev = await self.get(tenant_id, device_id)
        if parent_id:
            self.topology_event(tenant_id, parent_id, versions[parent_id], added=[device_id], details=[dev])
        return dev

    async def _clash(self, tenant_id: str, device_id: str, name: str, token: str | None) -> str | None:
        async with self.db.connect() as c:
            if (await c.execute(select(devices.c.id).where(devices.c.id == device_id))).first():
                return f"device id {device_id} is taken"
            if (
                await c.execute(select(devices.c.id).where(devices.c.tenant_id == tenant_id, devices.c.name == name))
            ).first():
                return f"a device named {name!r} already exists in this tenant"
            if token and (await c.execute(select(devices.c.id).where(devices.c.access_token == token))).first():
                return "this access token is already used by another device"
        return None

    async def get(self, tenant_id: str | None, device_id: str | None) -> Device:
        q = select(devices).where(devices.c.id == device_id)
        if tenant_id is not None:
            q = q.where(devices.c.tenant_id == tenant_id)
        async with self.db.connect() as c:
            r = (await c.execute(q)).first()
        if r is None:
            raise NotFound(f"device {device_id} not found")
        return _device(r)

    async def find_by_name(self, tenant_id: str, name: str) -> Device | None:
        async with self.db.connect() as c:
            r = (
                await c.execute(select(devices).where(devices.c.tenant_id == tenant_id, devices.c.name == name))
            ).first()
        return None if r is None else _device(r)

    async def match_identifier(self, tenant_id: str | None, identifier: str) -> list[Device]:
        """Devices whose id equals ``identifier`` ignoring case (APIs with case-insensitive device
        identifiers, such as device links); more than one means the identifier is ambiguous."""
        q = select(devices).where(func.upper(devices.c.id) == identifier.upper())
        if tenant_id is not None:
            q = q.where(devices.c.tenant_id == tenant_id)
        async with self.db.connect() as c:
            rows = (await c.execute(q.order_by(devices.c.id).limit(10))).all()
        return [_device(r) for r in rows]

    async def find_by_token(self, token: str) -> Device | None:
        async with self.db.connect() as c:
            r = (await c.execute(select(devices).where(devices.c.access_token == token))).first()
        return None if r is None else _device(r)

    async def list_devices(
        self, tenant_id: str, flt: DeviceFilter | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[Device], int]:
        flt = flt or DeviceFilter()
        cond = [devices.c.tenant_id == tenant_id]
        if flt.kind is not None:
            cond.append(devices.c.kind == flt.kind.value)
        if flt.product_id is not None:
            cond.append(devices.c.product_id == flt.product_id)
        if flt.parent_id is not None:
            cond.append(devices.c.parent_id == flt.parent_id)
        if flt.presence is not None:
            cond.append(devices.c.presence == flt.presence.value)
        if flt.customer_id is not None:
            cond.append(devices.c.customer_id == flt.customer_id)
        if flt.name_prefix:
            # literal and case-sensitive on every database (SQLite's LIKE ignores case, PostgreSQL's does not)
            cond.append(func.substr(devices.c.name, 1, len(flt.name_prefix)) == flt.name_prefix)
        where = and_(*cond)
        async with self.db.connect() as c:
            total = (await c.execute(select(func.count()).select_from(devices).where(where))).scalar_one()
            rows = (
                await c.execute(select(devices).where(where).order_by(devices.c.number).offset(offset).limit(limit))
            ).all()
        return [_device(r) for r in rows], total

    async def children(self, gateway_id: str) -> list[Device]:
        async with self.db.connect() as c:
            rows = (
                await c.execute(select(devices).where(devices.c.parent_id == gateway_id).order_by(devices.c.number))
            ).all()
        return [_device(r) for r in rows]

    async def rename(self, tenant_id: str, device_id: str, name: str) -> Device:
        check_name(name)
        await self.get(tenant_id, device_id)
        try:
            async with self.db.begin() as c:
                await c.execute(update(devices).where(devices.c.id == device_id).values(name=name))
        except Exception as exc:
            if _is_integrity(exc):
                raise AlreadyExists(f"a device named {name!r} already exists in this tenant") from None
            raise
        return await self.get(tenant_id, device_id)

    async def update(self, tenant_id: str, device_id: str, **values: Any) -> Device:
        """Update plain fields (customer_id, access_token, secret, secret_delivered, last_address)."""
        allowed = {"customer_id", "access_token", "secret", "secret_delivered", "last_address"}
        bad = set(values) - allowed
        if bad:
            raise InvalidInput(f"cannot update {', '.join(sorted(bad))}")
        await self.get(tenant_id, device_id)
        async with self.db.begin() as c:
            await c.execute(update(devices).where(devices.c.id == device_id).values(**values))
        return await self.get(tenant_id, device_id)

    async def deliver_secret(self, tenant_id: str, device_id: str) -> Device | None:
        """Mark the device's secret delivered (dynamic registration), once: the device, or None
        when it was delivered before (also to a concurrent caller)."""
        async with self.db.begin() as c:
            res = await c.execute(
                update(devices)
                .where(
                    devices.c.id == device_id,
                    devices.c.tenant_id == tenant_id,
                    devices.c.secret_delivered.is_(False),
                )
                .values(secret_delivered=True)
            )
        return await self.get(tenant_id, device_id) if res.rowcount == 1 else None

    async def delete(self, tenant_id: str, device_id: str) -> None:
        dev = await self.get(tenant_id, device_id)
        async with self.db.begin() as c:
            orphans = [
                r.id for r in (await c.execute(select(devices.c.id).where(devices.c.parent_id == device_id))).all()
            ]
            await c.execute(update(devices).where(devices.c.parent_id == device_id).values(parent_id=None))
            await c.execute(delete(attributes).where(attributes.c.device_id == device_id))
            await c.execute(delete(latest).where(latest.c.device_id == device_id))
            if self.db.dialect == "postgresql":  # points are stored as chunks there (migration 0005)
                await c.execute(delete(telemetry_chunks).where(telemetry_chunks.c.device_id == device_id))
            else:
                await c.execute(delete(telemetry).where(telemetry.c.device_id == device_id))
            await c.execute(delete(devices).where(devices.c.id == device_id))
            versions: dict[str, int] = {}
            if dev.parent_id:
                versions = await bump_topology(c, [dev.parent_id])
                await log_topology(c, tenant_id, dev.parent_id, versions[dev.parent_id], removed=[device_id])
        self._publish(
            f"t.{tenant_id}.device.{device_id}",
            {"type": "deleted", "deviceId": device_id, "kind": dev.kind.value, "ts": now_ms()},
        )
        if dev.parent_id:
            self.topology_event(tenant_id, dev.parent_id, versions[dev.parent_id], removed=[device_id], details=[dev])
        if orphans:
            self._publish(
                f"t.{tenant_id}.topology.{device_id}",
                {"gatewayId": device_id, "deleted": True, "removed": orphans},
            )

    async def set_parent(
        self, tenant_id: str, device_id: str, gateway_id: str | None, *, source: str | None = None
    ) -> Device:
        """Attach a sub-device to a gateway (detaching it from its old one), or detach it.
        A move from one gateway to another is a takeover: both events list it in ``takeovers``."""
        dev = await self.get(tenant_id, device_id)
        parent = await self.get(tenant_id, gateway_id) if gateway_id else None
        check_parent(dev.kind, parent, tenant_id)
        if dev.parent_id == gateway_id:
            return dev
        async with self.db.begin() as c:
            await c.execute(update(devices).where(devices.c.id == device_id).values(parent_id=gateway_id))
            versions = await bump_topology(c, [g for g in (dev.parent_id, gateway_id) if g])
            if dev.parent_id:
                await log_topology(c, tenant_id, dev.parent_id, versions[dev.parent_id], removed=[device_id])
            if gateway_id:
                await log_topology(c, tenant_id, gateway_id, versions[gateway_id], added=[device_id])
        moved = [(device_id, dev.parent_id, gateway_id)] if dev.parent_id and gateway_id else None
        if dev.parent_id:
            self.topology_event(
                tenant_id,
                dev.parent_id,
                versions[dev.parent_id],
                removed=[device_id],
                source=source,
                details=[dev],
                takeovers=moved,
            )
        if gateway_id:
            self.topology_event(
                tenant_id,
                gateway_id,
                versions[gateway_id],
                added=[device_id],
                source=source,
                details=[dev],
                takeovers=moved,
            )
        return await self.get(tenant_id, device_id)

    async def set_presence(
        self,
        tenant_id: str,
        device_id: str,
        presence: Presence,
        *,
        address: str | None = None,
        cascade: bool = True,
    ) -> None:
        """Mark a device online/offline. A gateway going offline takes its online sub-devices to
        offline-gateway; coming back does not bring them online (the gateway reports them)."""
        now = now_ms()
        values: dict[str, Any] = {"presence": presence.value, "last_seen": now}
        if address is not None:
            values["last_address"] = address
        async with self.db.begin() as c:
            r = (
                await c.execute(
                    select(devices.c.kind, devices.c.presence).where(
                        devices.c.id == device_id, devices.c.tenant_id == tenant_id
                    )
                )
            ).first()
            if r is None:
                raise NotFound(f"device {device_id} not found")
            await c.execute(update(devices).where(devices.c.id == device_id).values(**values))
            affected: list[str] = []
            if cascade and r.kind == DeviceKind.GATEWAY.value and presence is not Presence.ONLINE:
                affected = [
                    x.id
                    for x in (
                        await c.execute(
                            select(devices.c.id).where(
                                devices.c.parent_id == device_id, devices.c.presence == Presence.ONLINE.value
                            )
                        )
                    ).all()
                ]
                if affected:
                    await c.execute(
                        update(devices)
                        .where(devices.c.id.in_(affected))
                        .values(presence=Presence.GATEWAY_OFFLINE.value, last_seen=now)
                    )
        if r.presence != presence.value:
            self._status(tenant_id, device_id, r.kind, presence, now)
        for sub in affected:
            self._status(
                tenant_id,
                sub,
                DeviceKind.SUBDEVICE.value,
                Presence.GATEWAY_OFFLINE,
                now,
                gateway_id=device_id,
            )

    async def set_many_offline(self, tenant_id: str, device_ids: list[str], presence: Presence) -> None:
        if not device_ids:
            return
        now = now_ms()
        async with self.db.begin() as c:
            await c.execute(
                update(devices)
                .where(
                    devices.c.id.in_(device_ids),
                    devices.c.tenant_id == tenant_id,
                    or_(devices.c.presence != presence.value),
                )
                .values(presence=presence.value, last_seen=now)
            )
        for d in device_ids:
            self._status(tenant_id, d, DeviceKind.SUBDEVICE.value, presence, now)

    # bus -----------------------------------------------------------------------------------
    def _publish(self, subject: str, data: dict[str, Any]) -> None:
        if self.bus is not None:
            self.bus.publish(subject, data)

    def _status(
        self,
        tenant_id: str,
        device_id: str,
        kind: str,
        presence: Presence,
        ts: int,
        gateway_id: str | None = None,
    ) -> None:
        msg: dict[str, Any] = {
            "type": "status",
            "deviceId": device_id,
            "kind": kind,
            "presence": presence.value,
            "ts": ts,
        }
        if gateway_id:
            msg["gatewayId"] = gateway_id
        self._publish(f"t.{tenant_id}.status.{device_id}", msg)

    def topology_event(
        self,
        tenant_id: str,
        gateway_id: str,
        version: int,
        added: list[str] | None = None,
        removed: list[str] | None = None,
        source: str | None = None,
        details: list[Device] | None = None,
        takeovers: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """Publish a committed topology change of ``gateway_id`` (its new ``version``);
        ``details``: the sub-devices concerned (their product and name go into ``devices``);
        ``takeovers``: (sub-device, old gateway, new gateway) of the sub-devices that moved
        between two gateways (``"takeovers": [{"deviceId", "from", "to"}]``)."""
        msg: dict[str, Any] = {
            "type": "topology",
            "gatewayId": gateway_id,
            "version": version,
            "added": added or [],
            "removed": removed or [],
            "ts": now_ms(),
        }
        if source:
            msg["source"] = source
        if details:
            msg["devices"] = [{"id": d.id, "productId": d.product_id, "name": d.name} for d in details]
        if takeovers:
            msg["takeovers"] = [{"deviceId": d, "from": old, "to": new} for d, old, new in takeovers]
        self._publish(f"t.{tenant_id}.topology.{gateway_id}", msg)

    def status_event(
        self, tenant_id: str, device_id: str, kind: str, presence: Presence, ts: int, gateway_id: str | None = None
    ) -> None:
        self._status(tenant_id, device_id, kind, presence, ts, gateway_id)


# key of the PostgreSQL advisory lock that serialises device-number allocation across nodes
_NUMBER_LOCK = 0x6761_7465_6875_6231


async def _next_number(c: AsyncConnection) -> int:
    """The next device number, allocated race-free inside ``c``'s transaction: concurrent creates
    (a gateway connecting 50 new sub-devices while others do the same) wait for each other here
    instead of taking the same number and failing."""
    if c.dialect.name == "postgresql":
        await c.execute(select(func.pg_advisory_xact_lock(_NUMBER_LOCK)))
    else:
        # SQLite: a write statement first takes the database's write lock (held to the commit),
        # so no other writer can read the same maximum in between
        await c.execute(update(devices).where(devices.c.number < 0).values(number=devices.c.number))
    top = (await c.execute(select(func.max(devices.c.number)))).scalar_one()
    n = (top or 0) + 1
    if n > UINT32_MAX:
        raise Unavailable("device numbers (uint32) are exhausted")
    return int(n)


async def bump_topology(c: AsyncConnection, gateway_ids: list[str]) -> dict[str, int]:
    """Add one to the topology version of each gateway; their new versions."""
    if not gateway_ids:
        return {}
    await c.execute(
        update(devices).where(devices.c.id.in_(gateway_ids)).values(topology_version=devices.c.topology_version + 1)
    )
    rows = (
        await c.execute(select(devices.c.id, devices.c.topology_version).where(devices.c.id.in_(gateway_ids)))
    ).all()
    return {r.id: int(r.topology_version) for r in rows}


async def log_topology(
    c: AsyncConnection,
    tenant_id: str,
    gateway_id: str,
    version: int,
    added: list[str] | None = None,
    removed: list[str] | None = None,
    source: str | None = None,
) -> None:
    """The event-log row of a topology change, written in the change's transaction."""
    body: dict[str, Any] = {"version": version, "added": added or [], "removed": removed or []}
    if source:
        body["source"] = source
    await c.execute(
        insert(events).values(
            tenant_id=tenant_id, device_id=gateway_id, ts=now_ms(), type="topology", body=orjson.dumps(body).decode()
        )
    )
