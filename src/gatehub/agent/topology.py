"""Seed 001's gateway logic: the three lists and what each event does to them and to the hub.

All of it runs in one task, an event at a time (``Agent._control``), so no two changes of the
lists interleave. The cases, as the seed lists them (docs/agent.md walks through each):

- connected: pull the hub's topology; drop locally (and from the access network) what the hub
  deleted; report online the connected sub-devices that are in LocalTopoList; add the connected
  ones that are not; delete on the hub those in RemovedDevList;
- a sub-device joins / comes online: LocalDevList; when connected, add it (registering it
  first if its model says so) and report it online; it goes to LocalTopoList on success;
- a sub-device is deleted locally: out of LocalDevList and LocalTopoList, into RemovedDevList;
  when connected, deleted on the hub and out of RemovedDevList;
- a sub-device goes offline: reported offline when it is in LocalTopoList and connected;
- the hub changes the topology (a pushed ``topology/change``): what it removed goes locally too.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gatehub.agent.link import GW_CONNECT, GW_DISCONNECT, HubUnavailable
from gatehub.agent.state import Credentials
from gatehub.protocols.tbext import REGISTER, TOPO_ADD, TOPO_DELETE, TOPO_REQUEST, register_sign

if TYPE_CHECKING:
    from gatehub.agent.contracts import LocalDev, ReconcilerHost
    from gatehub.agent.link import HubLink

log = logging.getLogger(__name__)
BATCH_LIMIT = 100  # devices per extension request


@dataclass(slots=True)
class Plan:
    """What to do right after connecting, in the seed's order."""

    drop: list[str]  # in LocalTopoList, deleted on the hub: remove locally and from the access network
    report_online: list[str]  # in LocalTopoList and online here: tell the hub
    add: list[str]  # connected here, not in LocalTopoList: add to the hub
    delete: list[str]  # RemovedDevList: delete on the hub
    unknown: list[str]  # under this gateway on the hub, unknown here (left alone)


def plan_after_connect(topo: set[str], online: dict[str, bool], removed: set[str], hub: set[str]) -> Plan:
    """``topo``: LocalTopoList names; ``online``: LocalDevList names -> online; ``removed``:
    RemovedDevList names; ``hub``: the names in the hub's topology of this gateway."""
    drop = sorted(topo - hub)
    kept = topo & hub
    return Plan(
        drop=drop,
        report_online=sorted(n for n in kept if online.get(n)),
        add=sorted(n for n in online if n not in topo),
        delete=sorted(removed),
        unknown=sorted(hub - topo - removed - online.keys()),
    )


def _chunks(names: list[str]) -> list[list[str]]:
    return [names[i : i + BATCH_LIMIT] for i in range(0, len(names), BATCH_LIMIT)]


class Reconciler:
    def __init__(self, agent: ReconcilerHost) -> None:
        self.a = agent
        self.state = agent.state
        self.added_at: dict[str, int] = {}  # name -> topology version of the hub's answer that added it

    # after connecting -------------------------------------------------------------------------
    async def after_connect(self, link: HubLink) -> Plan:
        ans = await link.request(TOPO_REQUEST, {})
        if ans.get("code") != 200:
            raise HubUnavailable(f"topology request refused: {ans.get('message') or ans}")
        listed = [d for d in ans.get("devices", []) if isinstance(d, dict) and isinstance(d.get("device"), str)]
        hub = {d["device"] for d in listed}
        await self._renamed({d["id"]: d["device"] for d in listed if d.get("id")})
        online = {d.name: d.online for d in self.a.devs.values()}
        plan = plan_after_connect(set(self.state.topo), online, set(self.state.removed), hub)
        for name in plan.drop:
            await self.hub_deleted(name)
        for name in plan.report_online:
            await self.report_online(link, name)
        await self.add(link, plan.add)
        await self.delete_on_hub(link, plan.delete)
        if plan.unknown:
            log.info("the hub lists sub-devices this gateway does not know: %s", ", ".join(plan.unknown))
        log.info(
            "reconciled with the hub (topology version %s): %d dropped, %d online, %d added, %d deleted",
            ans.get("topologyVersion"),
            len(plan.drop),
            len(plan.report_online),
            len(plan.add),
            len(plan.delete),
        )
        return plan

    async def _renamed(self, hub_names: dict[str, str]) -> None:
        """A proxied sub-device the hub lists under another name (same hub id) was renamed
        there, not deleted: it keeps its place under the new name."""
        for entry in list(self.state.topo.values()):
            new = hub_names.get(entry.hub_id or "")
            if new is None or new == entry.name or new in self.state.topo:
                continue
            old = entry.name
            await self.a.outbox.flush()
            await self.state.rename(old, new)
            self.a.rename_dev(old, new)
            log.info("%s was renamed %s on the hub", old, new)

    # the hub's side ---------------------------------------------------------------------------
    async def hub_deleted(self, name: str) -> None:
        """The hub no longer has ``name`` under this gateway: out of LocalTopoList, LocalDevList
        and the access network; its readings not yet sent go too (sending them would add it
        back)."""
        dropped = await self.a.forget_readings(name)
        await self.state.drop_topo(name)
        dev = self.a.pop_dev(name)
        if dev is not None:
            try:
                await self.a.drivers[dev.driver].remove(dev.uid)
            except Exception as exc:
                log.warning("driver could not remove %s: %s", dev.uid, exc)
        log.info("%s was deleted on the hub: removed here (%d unsent readings dropped)", name, dropped)

    async def changed(self, link: HubLink | None, body: dict[str, Any]) -> None:
        """A ``topology/change`` push."""
        if body.get("resync") and link is not None:
            await self.after_connect(link)
            return
        version = body.get("topologyVersion")
        for name in body.get("removed") or ():
            if not isinstance(name, str) or name not in self.state.topo:
                continue
            if isinstance(version, int) and self.added_at.get(name, -1) >= version:
                continue  # an older change: the hub added it again after that
            await self.hub_deleted(name)

    # the gateway's side -----------------------------------------------------------------------
    async def report_online(self, link: HubLink, name: str) -> None:
        await link.publish(GW_CONNECT, orjson.dumps({"device": name}))

    async def report_offline(self, link: HubLink, name: str) -> None:
        await link.publish(GW_DISCONNECT, orjson.dumps({"device": name}))

    async def joined(self, link: HubLink | None, dev: LocalDev) -> None:
        if dev.name in self.state.removed:
            await self.state.unmark_removed(dev.name)  # it is back: nothing to delete on the hub
        if link is None:
            return
        if dev.name in self.state.topo:
            if dev.online:
                await self.report_online(link, dev.name)
        else:
            await self.add(link, [dev.name])

    async def online(self, link: HubLink | None, dev: LocalDev) -> None:
        dev.online = True
        if link is None:
            return
        if dev.name in self.state.topo:
            await self.report_online(link, dev.name)
        else:
            await self.add(link, [dev.name])

    async def offline(self, link: HubLink | None, dev: LocalDev) -> None:
        dev.online = False
        if link is not None and dev.name in self.state.topo:
            await self.report_offline(link, dev.name)

    async def deleted_locally(self, link: HubLink | None, dev: LocalDev) -> None:
        """A user deleted the sub-device on the gateway (it is already out of LocalDevList)."""
        await self.a.forget_readings(dev.name)
        if dev.name not in self.state.topo:
            return
        await self.state.mark_removed(dev.name, dev.uid)
        if link is not None:
            await self.delete_on_hub(link, [dev.name])

    async def delete_on_hub(self, link: HubLink, names: list[str]) -> None:
        for chunk in _chunks(names):
            ans = await link.request(TOPO_DELETE, {"devices": chunk})
            for res in ans.get("results", []):
                name = res.get("device")
                if res.get("code") in (200, 404) and isinstance(name, str):  # 404: not there any more
                    await self.state.unmark_removed(name)
                else:
                    log.warning("the hub did not delete %s: %s", name, res.get("message"))

    async def add(self, link: HubLink, names: list[str]) -> None:
        """Add connected sub-devices to the hub's topology (credentials first), then report the
        online ones; LocalTopoList gets those the hub confirmed."""
        wanted: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            dev = self.a.dev_by_name(name)
            if dev is None:
                continue
            cred = await self.credentials(link, dev)
            if cred is None:
                continue
            entry: dict[str, Any] = {"device": name}
            if cred.product_key:
                entry["productKey"] = cred.product_key
            else:
                entry["type"] = dev.model
            wanted.append((name, entry))
        for chunk in [wanted[i : i + BATCH_LIMIT] for i in range(0, len(wanted), BATCH_LIMIT)]:
            ans = await link.request(TOPO_ADD, {"devices": [e for _n, e in chunk]})
            version = ans.get("topologyVersion")
            for res in ans.get("results", []):
                name = res.get("device")
                dev = self.a.dev_by_name(name) if isinstance(name, str) else None
                if dev is None:
                    continue
                if res.get("code") != 200:
                    dev.refused = f"{res.get('error')}: {res.get('message')}"
                    log.warning("the hub would not add %s: %s", dev.name, dev.refused)
                    continue
                dev.refused = None
                if isinstance(version, int):
                    self.added_at[dev.name] = version
                await self.state.add_topo(dev.name, dev.uid, dev.model, res.get("productKey"), res.get("id"))
                if dev.online:
                    await self.report_online(link, dev.name)
                if dev.attributes:
                    self.a.outbox.add_attributes(dev.name, dev.attributes)
        self.a.topology_changed()

    async def credentials(self, link: HubLink, dev: LocalDev) -> Credentials | None:
        """The sub-device's credentials: stored, configured, or obtained now by dynamic
        registration (then stored, so never asked for twice). None when it cannot have any."""
        have = self.state.credentials.get(dev.name)
        if have is not None and have.source == "registered":
            return have  # obtained once from the hub: never asked for again
        creds = self.a.cfg.credentials
        for d in creds.devices:  # entered at deployment: the config is the truth
            if d.uid == dev.uid:
                model = creds.models.get(dev.model)
                pk = d.product_key or (model.product_key if model else None)
                cred = Credentials(dev.name, pk, d.device_secret, None, "config")
                if cred != have:
                    await self.state.save_credentials(cred)
                return cred
        model = creds.models.get(dev.model)
        if model is None:
            return Credentials(dev.name, None, None, None, "none")  # the product named after the model
        if not model.dynamic_register:
            return Credentials(dev.name, model.product_key, None, None, "model")
        random = secrets.token_hex(8)
        sign = register_sign(model.product_secret, dev.name, model.product_key, random)
        ans = await link.request(
            REGISTER,
            {"devices": [{"device": dev.name, "productKey": model.product_key, "random": random, "sign": sign}]},
        )
        res = (ans.get("results") or [{}])[0]
        if res.get("code") != 200:
            dev.refused = f"registration {res.get('error')}: {res.get('message')}"
            log.warning("dynamic registration of %s refused: %s", dev.name, dev.refused)
            return None
        cred = Credentials(dev.name, model.product_key, res.get("deviceSecret"), res.get("accessToken"), "registered")
        await self.state.save_credentials(cred)
        log.info("registered %s: its device secret is stored", dev.name)
        return cred
