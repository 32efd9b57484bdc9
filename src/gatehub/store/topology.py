"""Topology: which sub-devices a gateway serves. The one place every dialect (Alink, ThingsBoard,
IoTDA, the REST API and the CLI) changes or reads it, so the rules are the same whoever speaks.

API::

    topo = store.topology
    res = await topo.add(tenant, gateway_id, [SubRef(name="meter-7", product_id="meter", proof=check)],
                         source="alink:gw-1")
    res.added      # [Device]   attached now, or already this gateway's (adding is idempotent)
    res.refused    # [Refusal]  (ref, reason: Refused, message) for each one that was not
    res.version    # the gateway's topology version after the change
    res = await topo.remove(tenant, gateway_id, [SubRef(device_id="meter-7")], source="api")
    view = await topo.get(tenant, gateway_id)   # TopologyView(gateway, version, children)

Rules:

- A sub-device belongs to at most one gateway (one ``parent_id``); only sub-devices (devices of a
  ``sub-device`` product, same tenant) can be added; a gateway cannot add itself.
- Adding needs proof of the sub-device's credentials: ``SubRef.proof`` is called with the
  sub-device's secret and says whether the request proves it (the dialect knows its signature
  scheme: Alink passes a check of the HMAC ``sign``). Without proof a sub-device can be added by
  name only when its product has ``trusted_gateway_add``. ``trusted=True`` (operators through
  the REST API or the CLI) needs no proof.
- A sub-device of another gateway moves to this one only with proof (or ``trusted``): naming
  it is not enough to take it over; the dialect's ``may_move`` (the takeover policy,
  ``services.takeover``) may refuse it still. The old gateway's version is bumped and it gets an
  event; both events list the move in ``takeovers``.
- Every change bumps the gateway's ``topology_version`` once per request, is written to the event
  log (type ``topology``) in the same transaction, and is published after commit on
  ``t.{tenant}.topology.{gateway}`` as ``{"type": "topology", "gatewayId", "version", "added",
  "removed", "ts", "source"}`` (``source``: who made it, so a dialect can skip notifying the
  session that asked). A sub-device that leaves a gateway and was online goes offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import and_, or_, select, update

from gatehub.domain.model import Device, DeviceKind, NodeType, Presence
from gatehub.domain.telemetry import now_ms
from gatehub.errors import InvalidInput, NotFound
from gatehub.store.catalog import Catalog
from gatehub.store.db import Database
from gatehub.store.devices import Devices, bump_topology, log_topology
from gatehub.store.tables import devices


class Refused(StrEnum):
    NOT_FOUND = "not-found"  # no such device (name, id or product)
    NOT_SUBDEVICE = "not-sub-device"  # not a sub-device, another product than named, or the gateway itself
    NO_PROOF = "no-proof"  # no credentials and the product does not trust gateways to add by name
    BAD_PROOF = "bad-proof"  # the credentials do not match the sub-device's secret
    OTHER_GATEWAY = "other-gateway"  # it belongs to another gateway (and may not be taken over)
    NOT_CHILD = "not-child"  # remove: it is not this gateway's


@dataclass(frozen=True, slots=True)
class SubRef:
    """A sub-device as a dialect names it: by id, or by name (and product, when the wire has one)."""

    device_id: str | None = None
    name: str | None = None
    product_id: str | None = None
    proof: Callable[[str], bool] | None = field(default=None, compare=False)

    def label(self) -> str:
        if self.device_id is not None:
            return self.device_id
        return f"{self.product_id}/{self.name}" if self.product_id else str(self.name)


@dataclass(frozen=True, slots=True)
class Refusal:
    ref: SubRef
    reason: Refused
    message: str


@dataclass(slots=True)
class TopologyResult:
    gateway_id: str
    version: int
    added: list[Device] = field(default_factory=list)
    removed: list[Device] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(slots=True)
class TopologyView:
    gateway: Device
    version: int
    children: list[Device]


class Topology:
    def __init__(self, db: Database, catalog: Catalog, devices_repo: Devices) -> None:
        self.db = db
        self.catalog = catalog
        self.devices = devices_repo

    async def gateway(self, tenant_id: str, gateway_id: str) -> Device:
        gw = await self.devices.get(tenant_id, gateway_id)
        if gw.kind is not DeviceKind.GATEWAY:
            raise InvalidInput(f"device {gateway_id} is not a gateway")
        return gw

    async def get(self, tenant_id: str, gateway_id: str) -> TopologyView:
        gw = await self.gateway(tenant_id, gateway_id)
        return TopologyView(gw, gw.topology_version, await self.devices.children(gw.id))

    async def _resolve(self, tenant_id: str, ref: SubRef) -> Device | Refusal:
        dev: Device | None
        if ref.device_id is not None:
            try:
                dev = await self.devices.get(tenant_id, ref.device_id)
            except NotFound:
                dev = None
        elif ref.name is not None:
            dev = await self.devices.find_by_name(tenant_id, ref.name)
        else:
            raise InvalidInput("a sub-device is named by its id or its name")
        if dev is None:
            return Refusal(ref, Refused.NOT_FOUND, f"device {ref.label()} not found")
        if ref.product_id is not None and dev.product_id != ref.product_id:
            return Refusal(ref, Refused.NOT_FOUND, f"device {ref.label()} not found")
        return dev

    async def add(
        self,
        tenant_id: str,
        gateway_id: str,
        refs: list[SubRef],
        *,
        trusted: bool = False,
        source: str | None = None,
        may_move: Callable[[Device], str | None] | None = None,
    ) -> TopologyResult:
        """Attach sub-devices to a gateway (see the module's rules). ``may_move``: asked about a
        sub-device of another gateway that may otherwise move (proven or ``trusted``); a message
        refuses the move (``OTHER_GATEWAY``), None lets it happen (the dialect's takeover policy)."""
        gw = await self.gateway(tenant_id, gateway_id)
        res = TopologyResult(gw.id, gw.topology_version)
        todo: list[Device] = []
        trusted_products: dict[str, bool] = {}
        for ref in refs:
            got = await self._resolve(tenant_id, ref)
            if isinstance(got, Refusal):
                res.refused.append(got)
                continue
            dev = got
            if dev.kind is not DeviceKind.SUBDEVICE or dev.id == gw.id:
                res.refused.append(Refusal(ref, Refused.NOT_SUBDEVICE, f"{ref.label()} is not a sub-device"))
                continue
            proven = False
            if not trusted:
                if ref.proof is not None:
                    if not dev.secret or not ref.proof(dev.secret):
                        msg = f"the credentials of {ref.label()} do not match its secret"
                        res.refused.append(Refusal(ref, Refused.BAD_PROOF, msg))
                        continue
                    proven = True
                else:
                    if dev.product_id not in trusted_products:
                        prod = await self.catalog.get_product(tenant_id, dev.product_id)
                        trusted_products[dev.product_id] = (
                            prod.trusted_gateway_add and prod.node_type is NodeType.SUBDEVICE
                        )
                    if not trusted_products[dev.product_id]:
                        msg = (
                            f"{ref.label()} can be added only with its signature: product {dev.product_id} "
                            "does not let gateways add its devices by name (trustedGatewayAdd)"
                        )
                        res.refused.append(Refusal(ref, Refused.NO_PROOF, msg))
                        continue
            if dev.parent_id == gw.id:
                res.added.append(dev)  # already ours: nothing changes
                continue
            if dev.parent_id is not None and not (trusted or proven):
                msg = f"{ref.label()} belongs to another gateway; only its credentials can move it"
                res.refused.append(Refusal(ref, Refused.OTHER_GATEWAY, msg))
                continue
            if dev.parent_id is not None and may_move is not None:
                why = may_move(dev)
                if why is not None:
                    res.refused.append(Refusal(ref, Refused.OTHER_GATEWAY, why))
                    continue
            todo.append(dev)
        if todo:
            await self._attach(tenant_id, gw, todo, res, source)
        return res

    async def _attach(
        self, tenant_id: str, gw: Device, todo: list[Device], res: TopologyResult, source: str | None
    ) -> None:
        moved: dict[str, list[str]] = {}  # old gateway -> sub-devices it lost
        went_offline: list[Device] = []
        attached: list[Device] = []
        now = now_ms()
        async with self.db.begin() as c:
            for dev in todo:
                # conditional: a concurrent change of this sub-device's gateway wins, this one is refused
                same_parent = (
                    devices.c.parent_id.is_(None) if dev.parent_id is None else devices.c.parent_id == dev.parent_id
                )
                values: dict[str, object] = {"parent_id": gw.id}
                if dev.parent_id is not None and dev.presence is Presence.ONLINE:
                    values.update(presence=Presence.OFFLINE.value, last_seen=now)
                r = await c.execute(
                    update(devices)
                    .where(devices.c.id == dev.id, devices.c.tenant_id == tenant_id, same_parent)
                    .values(**values)
                )
                if not r.rowcount:
                    msg = f"{dev.id} changed gateway meanwhile; try again"
                    res.refused.append(Refusal(SubRef(device_id=dev.id), Refused.OTHER_GATEWAY, msg))
                    continue
                attached.append(dev)
                if dev.parent_id is not None:
                    moved.setdefault(dev.parent_id, []).append(dev.id)
                    if "presence" in values:
                        went_offline.append(dev)
            if not attached:
                return
            versions = await bump_topology(c, [gw.id, *moved])
            await log_topology(c, tenant_id, gw.id, versions[gw.id], added=[d.id for d in attached], source=source)
            for old, ids in moved.items():
                await log_topology(c, tenant_id, old, versions[old], removed=ids, source=source)
        res.version = versions[gw.id]
        for dev in attached:
            dev.parent_id = gw.id
            res.added.append(dev)
        takeovers = [(d, old, gw.id) for old, ids in moved.items() for d in ids]
        self.devices.topology_event(
            tenant_id,
            gw.id,
            versions[gw.id],
            added=[d.id for d in attached],
            source=source,
            details=attached,
            takeovers=takeovers,
        )
        for old, ids in moved.items():
            lost = [d for d in attached if d.id in ids]
            self.devices.topology_event(
                tenant_id,
                old,
                versions[old],
                removed=ids,
                source=source,
                details=lost,
                takeovers=[t for t in takeovers if t[1] == old],
            )
        for dev in went_offline:
            dev.presence = Presence.OFFLINE
            self.devices.status_event(tenant_id, dev.id, dev.kind.value, Presence.OFFLINE, now)

    async def remove(
        self, tenant_id: str, gateway_id: str, refs: list[SubRef], *, source: str | None = None
    ) -> TopologyResult:
        """Detach sub-devices from a gateway; one that is not this gateway's is refused."""
        gw = await self.gateway(tenant_id, gateway_id)
        res = TopologyResult(gw.id, gw.topology_version)
        todo: list[Device] = []
        for ref in refs:
            got = await self._resolve(tenant_id, ref)
            if isinstance(got, Refusal):
                res.refused.append(got)
            elif got.parent_id != gw.id:
                res.refused.append(Refusal(ref, Refused.NOT_CHILD, f"{ref.label()} is not a sub-device of {gw.id}"))
            else:
                todo.append(got)
        if not todo:
            return res
        now = now_ms()
        async with self.db.begin() as c:
            ids = [d.id for d in todo]
            await c.execute(
                update(devices).where(devices.c.id.in_(ids), devices.c.parent_id == gw.id).values(parent_id=None)
            )
            online = [
                r.id
                for r in (
                    await c.execute(
                        select(devices.c.id).where(
                            devices.c.id.in_(ids),
                            or_(
                                devices.c.presence == Presence.ONLINE.value,
                                devices.c.presence == Presence.GATEWAY_OFFLINE.value,
                            ),
                        )
                    )
                ).all()
            ]
            if online:
                await c.execute(
                    update(devices)
                    .where(and_(devices.c.id.in_(online)))
                    .values(presence=Presence.OFFLINE.value, last_seen=now)
                )
            versions = await bump_topology(c, [gw.id])
            await log_topology(c, tenant_id, gw.id, versions[gw.id], removed=ids, source=source)
        res.version = versions[gw.id]
        for d in todo:
            d.parent_id = None
            res.removed.append(d)
        self.devices.topology_event(
            tenant_id, gw.id, versions[gw.id], removed=[d.id for d in todo], source=source, details=todo
        )
        for dev_id in online:
            self.devices.status_event(tenant_id, dev_id, DeviceKind.SUBDEVICE.value, Presence.OFFLINE, now)
        return res
