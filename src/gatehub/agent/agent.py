"""The gateway agent: drivers below, the hub above, the three lists and the outbox between.

``Agent(config)`` builds the drivers named in the config (or takes ready ones), opens the state
file, and on ``start()`` runs: the control task (every change of the lists, an event at a time,
``topology.Reconciler``), one poller per polling driver, the outbox writer, and the connection
loop (connect, reconcile, send the outbox, serve downlink; reconnect with back-off).

Library use::

    async with Agent(load_agent_config("agent.toml")) as agent:
        agent.report("th-01", {"temperature": 21.5})   # readings a driver did not produce itself
        await agent.delete_local("th-02")             # a user deleted a sub-device on the gateway
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from aiomqtt.exceptions import MqttCodeError, MqttConnectError, MqttError

from gatehub.agent.config import AgentConfig
from gatehub.agent.contracts import LocalDev, SubDeviceView
from gatehub.agent.devicelink import DeviceLinkExtension
from gatehub.agent.drivers import (
    Driver,
    DriverError,
    DriverEvent,
    Joined,
    Left,
    Offline,
    Online,
    Readings,
    SubDeviceInfo,
    Unreachable,
    build_driver,
)
from gatehub.agent.extensions import AgentExtension, ExtensionContext
from gatehub.agent.link import GW_ATTRIBUTES, GW_DISCONNECT, GW_RPC, HubLink, HubUnavailable
from gatehub.agent.outbox import Outbox
from gatehub.agent.state import LocalState
from gatehub.agent.topology import Reconciler
from gatehub.protocols.tbext import TOPO_CHANGE

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class _Connected:
    link: HubLink
    done: asyncio.Event


@dataclass(slots=True, frozen=True)
class _Disconnected:
    pass


@dataclass(slots=True, frozen=True)
class _HubMessage:
    topic: str
    body: dict[str, Any]


@dataclass(slots=True, frozen=True)
class _Join:
    driver: int
    info: SubDeviceInfo


@dataclass(slots=True, frozen=True)
class _LocalDelete:
    uid: str
    done: asyncio.Future[None]


class Agent:
    def __init__(self, cfg: AgentConfig, drivers: list[Driver] | None = None) -> None:
        self.cfg = cfg
        self.drivers: list[Driver] = drivers if drivers is not None else [build_driver(d) for d in cfg.drivers]
        self.state: LocalState = None  # type: ignore[assignment]  # opened in start()
        self.outbox: Outbox = None  # type: ignore[assignment]
        self.devs: dict[str, LocalDev] = {}  # LocalDevList, by uid
        self.by_name: dict[str, str] = {}  # device name -> uid
        self.link: HubLink | None = None
        self.extensions: list[AgentExtension] = []
        self._inboxes: dict[str, asyncio.Queue[tuple[str, bytes]]] = {}
        self.reconciled = asyncio.Event()  # set after each reconciliation, cleared on disconnect
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._topo_changed = asyncio.Event()
        self._reconciler: Reconciler | None = None
        self._stopping = False
        self.connections = 0

    # lifecycle --------------------------------------------------------------------------------
    def add_extension(self, ext: AgentExtension) -> None:
        """Plug in an extension (before ``start``); see ``gatehub.agent.extensions``."""
        if self._tasks:
            raise RuntimeError("add extensions before the agent starts")
        self.extensions.append(ext)

    async def start(self) -> None:
        self.state = await LocalState.open(self.cfg.state.path)
        self.outbox = Outbox(self.state, self.cfg.outbox)
        self._reconciler = Reconciler(self)
        links = self.cfg.devicelink
        if links.enabled and not any(isinstance(e, DeviceLinkExtension) for e in self.extensions):
            self.extensions.append(
                DeviceLinkExtension(
                    allow_hub_addresses=links.allow_hub_addresses,
                    max_channels=links.max_channels,
                    connect_timeout=links.connect_timeout,
                    streams=links.streams,
                )
            )
        ctx = ExtensionContext(self)
        for ext in self.extensions:
            await ext.start(ctx)
            inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
            self._inboxes[ext.name] = inbox
            self._spawned.add(asyncio.create_task(self._deliver(ext, inbox), name=f"agent-ext-{ext.name}"))
        await self.outbox.start()
        batches, readings = await self.state.backlog()
        log.info(
            "agent state %s: %d in LocalTopoList, %d in RemovedDevList, %d readings (%d batches) in the outbox",
            self.cfg.state.path,
            len(self.state.topo),
            len(self.state.removed),
            readings,
            batches,
        )
        for i, drv in enumerate(self.drivers):
            await drv.start(_Events(self, i))
            for info in await drv.discover():
                self._join(i, info)
        self._tasks = [asyncio.create_task(self._control(), name="agent-control")]
        for i, drv in enumerate(self.drivers):
            if drv.poll_interval:
                self._tasks.append(asyncio.create_task(self._poll(i, drv), name=f"agent-poll-{drv.name}"))
        self._tasks.append(asyncio.create_task(self._connection(), name="agent-connection"))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks[::-1]:
            t.cancel()
        for t in [*self._tasks, *self._spawned]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for ext in self.extensions:
            with contextlib.suppress(Exception):
                await ext.stop()
        for drv in self.drivers:
            with contextlib.suppress(Exception):
                await drv.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self.state is not None:
            await self.state.close()

    async def __aenter__(self) -> Agent:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def run(self) -> None:
        """Start and run until cancelled (SIGINT/SIGTERM in ``gatehub agent run``)."""
        async with self:
            await asyncio.Event().wait()

    # what users and drivers call --------------------------------------------------------------
    def report(self, uid: str, values: dict[str, Any], ts: int | None = None) -> None:
        """Readings of a sub-device in LocalDevList; into the outbox (durable within
        ``outbox.flush_interval``), then to the hub."""
        dev = self.devs.get(uid)
        if dev is None:
            log.debug("readings of unknown sub-device %s ignored", uid)
            return
        if dev.refused is not None and self.link is not None:
            self.outbox.readings_dropped += len(values)  # the hub will not take them (logged at the refusal)
            return
        self.outbox.add(dev.name, values, ts)

    async def delete_local(self, uid: str) -> None:
        """A user deleted a sub-device on the gateway (its driver forgets it too)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_LocalDelete(uid, fut))
        await fut

    async def settled(self) -> None:
        """Wait until every event so far has been handled (tests, tools)."""
        await self._events.join()

    def lists(self) -> dict[str, list[dict[str, Any]]]:
        """The three lists of seed 001 as they are now."""
        return {
            "LocalTopoList": [e.public() for e in sorted(self.state.topo.values(), key=lambda e: e.name)],
            "LocalDevList": [d.public() for d in sorted(self.devs.values(), key=lambda d: d.name)],
            "RemovedDevList": [
                {"name": r.name, "uid": r.uid, "removedAt": r.removed_at}
                for r in sorted(self.state.removed.values(), key=lambda r: r.name)
            ],
        }

    # LocalDevList -----------------------------------------------------------------------------
    def _name_of(self, info: SubDeviceInfo) -> str:
        known = self.state.topo_by_uid(info.uid)  # LocalTopoList maps the uid to its hub name
        if known is not None:
            return known.name
        if info.name:
            return info.name
        for d in self.cfg.credentials.devices:
            if d.uid == info.uid and d.name:
                return d.name
        return info.uid

    def _join(self, driver: int, info: SubDeviceInfo) -> LocalDev:
        dev = LocalDev(
            info.uid, self._name_of(info), info.model, driver, info.address, info.online, dict(info.attributes)
        )
        old = self.devs.get(info.uid)
        if old is not None:
            self.by_name.pop(old.name, None)
        self.devs[info.uid] = dev
        self.by_name[dev.name] = info.uid
        return dev

    def dev_by_name(self, name: str) -> LocalDev | None:
        uid = self.by_name.get(name)
        return self.devs.get(uid) if uid is not None else None

    def rename_dev(self, old: str, new: str) -> None:
        uid = self.by_name.pop(old, None)
        if uid is not None and uid in self.devs:
            self.devs[uid].name = new
            self.by_name[new] = uid

    def pop_dev(self, name: str) -> LocalDev | None:
        uid = self.by_name.pop(name, None)
        return self.devs.pop(uid, None) if uid is not None else None

    def view(self, name: str) -> SubDeviceView | None:
        dev = self.dev_by_name(name)
        if dev is None:
            return None
        return SubDeviceView(
            dev.name,
            dev.uid,
            dev.model,
            dev.address,
            dev.online,
            dev.name in self.state.topo,
            self.state.credentials.get(dev.name),
        )

    def driver_of_name(self, name: str) -> Driver | None:
        dev = self.dev_by_name(name)
        return self.drivers[dev.driver] if dev is not None else None

    async def forget_readings(self, name: str) -> int:
        """Drop the readings of ``name`` that the hub has not acknowledged (memory and outbox)."""
        await self.outbox.flush()
        dropped = await self.state.purge({name})
        self.outbox.readings_dropped += dropped
        return dropped

    def topology_changed(self) -> None:
        self._topo_changed.set()

    async def _sendable(self, names: dict[str, int]) -> set[str]:
        """Names of a batch whose data cannot go (not proxied, and will not be); waits while a
        sub-device of the batch is still being added."""
        waited = 0.0
        while True:
            drop: set[str] = set()
            pending = False
            for name in names:
                if name in self.state.topo:
                    continue
                dev = self.dev_by_name(name)
                if dev is None or dev.refused is not None:
                    drop.add(name)
                else:
                    pending = True
            if not pending:
                return drop
            self._topo_changed.clear()
            try:
                await asyncio.wait_for(self._topo_changed.wait(), 1.0)
            except TimeoutError:
                waited += 1.0
                if waited % 30 == 0:
                    log.info("outbox waits for the hub to add %s", ", ".join(n for n in names if n not in drop))

    # the control task: every change of the lists, in order -------------------------------------
    def _post(self, event: Any) -> None:
        self._events.put_nowait(event)

    async def _control(self) -> None:
        assert self._reconciler is not None
        r = self._reconciler
        while True:
            ev = await self._events.get()
            try:
                await self._handle(r, ev)
            except HubUnavailable as exc:
                log.info("hub unavailable while handling %s: %s", type(ev).__name__, exc)
            except Exception:
                log.exception("handling %s failed", ev)
            finally:
                self._events.task_done()

    async def _handle(self, r: Reconciler, ev: Any) -> None:
        link = self.link
        if isinstance(ev, _Connected):
            try:
                if ev.link is link:
                    await r.after_connect(link)
                    self.reconciled.set()
            finally:
                ev.done.set()
        elif isinstance(ev, _Disconnected):
            self.reconciled.clear()
        elif isinstance(ev, Readings):
            self.report(ev.uid, ev.values, ev.ts)
        elif isinstance(ev, _Join):
            await r.joined(link, self._join(ev.driver, ev.info))
        elif isinstance(ev, _LocalDelete | Left):
            dev = self.devs.pop(ev.uid, None)
            try:
                if dev is not None:
                    self.by_name.pop(dev.name, None)
                    if isinstance(ev, _LocalDelete):
                        with contextlib.suppress(Exception):
                            await self.drivers[dev.driver].remove(dev.uid)
                    await r.deleted_locally(link, dev)
            finally:
                if isinstance(ev, _LocalDelete) and not ev.done.done():
                    ev.done.set_result(None)
        elif isinstance(ev, Online | Offline):
            dev = self.devs.get(ev.uid)
            if dev is not None and dev.online != isinstance(ev, Online):
                await (r.online(link, dev) if isinstance(ev, Online) else r.offline(link, dev))
        elif isinstance(ev, _HubMessage):
            if ev.topic == TOPO_CHANGE:
                await r.changed(link, ev.body)
            elif ev.topic == GW_DISCONNECT:
                log.info("the hub disconnected %s (reason %s)", ev.body.get("device"), ev.body.get("reason"))
                self._spawn(self._connect_again(str(ev.body.get("device"))))

    async def _connect_again(self, name: str) -> None:
        """ThingsBoard's reason 150 is a rate limit: after a pause, report the device online again."""
        await asyncio.sleep(1.0)
        dev, link = self.dev_by_name(name), self.link
        if dev is not None and dev.online and link is not None and name in self.state.topo:
            assert self._reconciler is not None
            await self._reconciler.report_online(link, name)

    # polling ----------------------------------------------------------------------------------
    async def _poll(self, index: int, drv: Driver) -> None:
        interval = drv.poll_interval or 1.0
        while True:
            started = time.monotonic()
            await self.outbox.room()
            for dev in [d for d in self.devs.values() if d.driver == index]:
                try:
                    values = await drv.read(dev.uid)
                except Unreachable:
                    if dev.online:
                        self._post(Offline(dev.uid))
                    continue
                except DriverError as exc:
                    log.warning("reading %s failed: %s", dev.uid, exc)
                    continue
                if not dev.online:
                    self._post(Online(dev.uid))
                self.report(dev.uid, values)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    # the connection ---------------------------------------------------------------------------
    async def _connection(self) -> None:
        cfg = self.cfg.hub
        delay = cfg.reconnect_min
        while not self._stopping:
            try:
                await self._session()
                delay = cfg.reconnect_min
            except MqttConnectError as exc:
                log.error("the hub refused the connection: %s", exc)
            except (MqttError, MqttCodeError, HubUnavailable, OSError) as exc:
                log.info("hub connection lost or not possible (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.reconnect_max)

    async def _session(self) -> None:
        link = HubLink(self.cfg.hub, tuple(f for e in self.extensions for f in e.topic_filters))
        tasks: list[asyncio.Task[Any]] = []
        async with link:
            try:
                self.connections += 1
                log.info("connected to the hub at %s:%d", self.cfg.hub.host, self.cfg.hub.port)
                tasks.append(asyncio.create_task(link.messages(self._on_message), name="agent-messages"))
                await link.session_limits()
                self.link = link
                done = asyncio.Event()
                self._post(_Connected(link, done))
                waiter = asyncio.create_task(done.wait())
                await asyncio.wait([waiter, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if tasks[0].done():
                    tasks[0].result()
                if not self.reconciled.is_set():
                    raise HubUnavailable("reconciliation with the hub did not finish")
                tasks.append(asyncio.create_task(self.outbox.send(link, self._sendable), name="agent-outbox-send"))
                for ext in self.extensions:
                    self._spawn(ext.on_connected())
                done_tasks, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done_tasks:
                    t.result()
            finally:
                self.link = None
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                self._post(_Disconnected())
                for ext in self.extensions:
                    self._spawn(ext.on_disconnected())

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Downlink, from the connection's message loop (must not block)."""
        claimed = False
        for ext in self.extensions:
            if ext.wants(topic):
                self._inboxes[ext.name].put_nowait((topic, payload))
                claimed = True
        if claimed:
            return  # an extension's topic (device-link frames are binary): not the agent's own
        try:
            body = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            log.info("a message on %s that is not JSON was ignored", topic)
            return
        if not isinstance(body, dict):
            return
        if topic == GW_RPC:
            self._spawn(self._rpc(body))
        elif topic == GW_ATTRIBUTES:
            self._spawn(self._attributes(body))
        elif topic in (TOPO_CHANGE, GW_DISCONNECT):
            self._post(_HubMessage(topic, body))

    @staticmethod
    async def _deliver(ext: AgentExtension, inbox: asyncio.Queue[tuple[str, bytes]]) -> None:
        """An extension's messages, one at a time in the order they came (a slow extension
        delays only itself; its exceptions are logged)."""
        while True:
            topic, payload = await inbox.get()
            try:
                await ext.on_message(topic, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("extension %s failed on a message on %s", ext.name, topic)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._spawned.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._spawned.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("agent task failed: %r", t.exception())

        task.add_done_callback(done)

    async def _rpc(self, body: dict[str, Any]) -> None:
        name = body.get("device")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        rid, method, params = data.get("id"), data.get("method"), data.get("params")
        dev = self.dev_by_name(name) if isinstance(name, str) else None
        result: Any
        if dev is None:
            result = {"error": f"no sub-device {name!r} on this gateway"}
        elif not isinstance(method, str):
            result = {"error": "an RPC needs a method"}
        else:
            try:
                result = await self.drivers[dev.driver].write(dev.uid, method, params)
            except DriverError as exc:
                result = {"error": str(exc)}
            except Exception as exc:
                log.exception("RPC %s to %s failed", method, name)
                result = {"error": f"the driver failed: {exc}"}
        link = self.link
        if link is not None:
            await link.publish(GW_RPC, orjson.dumps({"device": name, "id": rid, "data": result}))

    async def _attributes(self, body: dict[str, Any]) -> None:
        dev = self.dev_by_name(str(body.get("device")))
        data = body.get("data")
        if dev is None or not isinstance(data, dict):
            return
        data = {k: v for k, v in data.items() if k != "deleted"}
        if not data:
            return
        try:
            await self.drivers[dev.driver].write(dev.uid, "attributes", data)
        except DriverError as exc:
            log.info("shared attributes for %s not applied: %s", dev.name, exc)


class _Events:
    """What a driver gets to report events: they go to the control task in order."""

    def __init__(self, agent: Agent, index: int) -> None:
        self.agent = agent
        self.index = index

    def on_event(self, event: DriverEvent) -> None:
        if isinstance(event, Readings):
            self.agent.report(event.uid, event.values, event.ts)  # the hot path skips the queue
            return
        self.agent._post(_Join(self.index, event.info) if isinstance(event, Joined) else event)
