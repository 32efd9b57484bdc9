"""A gatehub node, the composition root: builds the services and transports from Settings,
starts them, stops them gracefully.

Start order: data folder -> bus -> database (migrations) -> ingest writer -> first-start admin
key -> CA and TLS contexts -> services (:class:`gatehub.services.context.Services`) and the
control socket -> the components of :mod:`gatehub.app.components` (listeners) -> the HTTP API.
Stop order is the reverse, so that no listener accepts data the writer can no longer commit:
listeners close first, then the writer drains its queue, then the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gatehub.app.base import Component, Parts, Started
from gatehub.app.components import component_builders
from gatehub.bus import Bus, LocalBus
from gatehub.config import Settings
from gatehub.domain.permissions import Role
from gatehub.errors import GatehubError
from gatehub.loop import run_loop as run_loop  # re-exported: where callers have imported it from
from gatehub.pki import CertificateAuthority, TlsContextProvider
from gatehub.services.attributes import AttributeService
from gatehub.services.claims import ClaimService
from gatehub.services.context import Services
from gatehub.services.guard import CredentialGuard, policy_from
from gatehub.services.ingest import Ingest, commit_publisher
from gatehub.services.pki import Blacklist
from gatehub.services.presence import SessionDirectory
from gatehub.services.registry import GatewayRegistry
from gatehub.services.rpc import RpcService
from gatehub.services.takeover import SubdeviceTakeover
from gatehub.services.things import ThingModels, ThingService
from gatehub.store import Database, IngestWriter, Store
from gatehub.store.rpc import RpcCalls
from gatehub.transports.control import ControlServer
from gatehub.transports.http.app import create_app
from gatehub.transports.http.server import HttpLimits, HttpServer

if TYPE_CHECKING:
    from gatehub.transports.http.iotda import IotdaListener
    from gatehub.transports.mqtt.hub import MqttHub

__all__ = ["Component", "Endpoints", "Node", "run_loop", "serve", "settle_heap"]

log = logging.getLogger("gatehub")


@dataclass
class Endpoints:
    http: int | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        out = dict(self.extra)
        if self.http is not None:
            out["http"] = self.http
        return out


C = TypeVar("C")


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus: Bus = LocalBus()
        self.db: Database | None = None
        self.store: Store | None = None
        self.writer: IngestWriter | None = None
        self.services: Services | None = None
        self.parts: Parts | None = None
        self.control: ControlServer | None = None
        self.http: HttpServer | None = None
        self.components: list[Component] = []
        self.endpoints = Endpoints()
        self.admin_key_created: str | None = None
        self.pki: TlsContextProvider | None = None
        self._stopped = asyncio.Event()

    @property
    def mqtt(self) -> MqttHub | None:
        """The MQTT hub, when MQTT is on."""
        return self.parts.mqtt if self.parts is not None else None

    @property
    def iotda(self) -> IotdaListener | None:
        """The IoTDA listener, when it is on."""
        return self.parts.iotda if self.parts is not None else None

    def component(self, kind: type[C]) -> C | None:
        """The started component of this class (listeners are wrapped to report their ports)."""
        for comp in self.components:
            inner = comp.inner if isinstance(comp, Started) else comp
            if isinstance(inner, kind):
                return inner
        return None

    @property
    def ctx(self) -> Services | None:
        """The services (the name older callers use)."""
        return self.services

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        await self.bus.start()
        self.db = Database.open(s.effective_database_url)
        await self.db.migrate()
        self.store = Store(self.db, self.bus)
        self.writer = IngestWriter(
            s.effective_database_url,
            queue_size=s.ingest_queue_size,
            batch_rows=s.ingest_batch_rows,
            connections=s.ingest_connections,
            on_commit=commit_publisher(self.bus),
        )
        await self.writer.start()
        await self._first_start()
        await self._start_pki()
        assert self.pki is not None
        blacklist = Blacklist(self.store, self.pki, self.bus, s.pki_blacklist_poll)
        registry = GatewayRegistry(self.store, self.pki.ca, on_blacklist_change=blacklist.reload)
        rpc = RpcService(s, self.store, RpcCalls(self.db), self.bus)
        models = ThingModels(self.store, self.bus)
        presence = SessionDirectory()
        takeover = SubdeviceTakeover(s, presence)
        guard = CredentialGuard(policy_from(s))
        self.services = Services(
            settings=s,
            store=self.store,
            ingest=Ingest(self.writer),
            bus=self.bus,
            pki=self.pki,
            registry=registry,
            blacklist=blacklist,
            rpc=rpc,
            models=models,
            things=ThingService(s, models, rpc),
            attributes=AttributeService(self.store, self.bus),
            claims=ClaimService(s, self.store),
            presence=presence,
            takeover=takeover,
            guard=guard,
            started_at=time.time(),
        )
        self.services.metrics.add(
            gatehub_subdevice_takeovers=lambda: takeover.taken,
            gatehub_subdevice_takeovers_refused=lambda: takeover.refused,
            gatehub_rpc_replies_refused=lambda: rpc.replies_refused,
        )
        _guard_metrics(self.services)
        await self.services.start()
        server = self.pki.server_certificate
        if await registry.record_server_certificate(server.serial, server.cert_pem):
            log.info("recorded the hub server certificate %d in the issuance history", server.serial)
        # `gatehub cert blacklist` (another process) asks here after it changed the database
        self.control = ControlServer(s.data_dir, {"blacklist": blacklist.check})
        await self.control.start()
        await blacklist.start()
        self.parts = Parts(self.services, self.db, self.endpoints.extra)
        for factory in component_builders():
            comp = await factory(self.parts)
            if comp is not None:
                await comp.start()
                self.components.append(comp)
        if s.http_port >= 0:
            limits = HttpLimits.from_settings(s, s.http_max_body_bytes)
            self.http = HttpServer(create_app(self.services), s.bind_host, s.http_port, limits=limits)
            await self.http.start()
            self.endpoints.http = self.http.port

    async def _first_start(self) -> None:
        assert self.store is not None
        path = self.settings.admin_key_path
        if path.exists():
            try:
                await self.store.accounts.authenticate(path.read_text().strip())
                return
            except GatehubError:
                log.warning("%s holds no valid key for this database; writing a new one", path)
        _info, token = await self.store.accounts.create_api_key(
            "system administrator (first start)", Role.SYSTEM_ADMIN, None
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
        self.admin_key_created = str(path)

    async def _start_pki(self) -> None:
        """The hub CA (created on first start) and the TLS contexts of every TLS listener, with the
        blacklist from the database. Call ``reload_blacklist`` after every blacklist change."""
        assert self.store is not None
        ca = CertificateAuthority.load_or_create(self.settings.pki_dir)
        used = await self.store.certificates.serials()
        self.pki = TlsContextProvider(
            ca,
            server_hosts=self.settings.tls_hosts,
            blacklist=await self.store.certificates.blacklist(),
            serial_in_use=lambda s: s in used,
        )

    async def reload_blacklist(self) -> None:
        """Re-read the blacklist and apply it on every listener (see :class:`Blacklist`)."""
        assert self.services is not None
        await self.services.blacklist.reload()

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None
        for comp in reversed(self.components):
            try:
                await comp.stop()
            except Exception:
                log.exception("stopping %s failed", comp.name)
        self.components.clear()
        if self.services is not None:
            await self.services.stop()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.writer is not None:
            await self.writer.close()
            self.writer = None
        await self.bus.close()
        if self.db is not None:
            await self.db.close()
            self.db = None
        self._stopped.set()

    async def __aenter__(self) -> Node:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def settle_heap() -> None:
    """Move everything allocated while starting (modules, settings, tables) out of the cyclic
    garbage collector's reach. Without it each full collection re-walks the whole startup heap:
    pauses of 100 ms and more, measured on SubscribeStatus fan-out (bench/master.py)."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings, announce: Callable[[str], None] | None = None) -> None:
    """Run a node until SIGINT/SIGTERM, then shut down gracefully."""
    say = announce or (lambda line: print(line, flush=True))
    node = Node(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    settle_heap()
    try:
        if node.admin_key_created:
            say(f"first start: created a system admin API key in {node.admin_key_created} (mode 0600)")
        else:
            say(f"system admin API key: {settings.admin_key_path}")
        say(f"database: {node.db.dialect if node.db else '?'} ({_redact(settings.effective_database_url)})")
        for name, port in node.endpoints.as_dict().items():
            say(f"{name} listening on {settings.bind_host}:{port}")
        say("READY " + orjson.dumps(node.endpoints.as_dict()).decode())
        await stop.wait()
        say("shutting down: closing listeners, draining the ingest queue")
    finally:
        await node.stop()
        say("stopped")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _guard_metrics(svc: Services) -> None:
    """The credential guard's counters and gauges on /metrics."""
    g = svc.guard
    svc.metrics.add(
        gatehub_auth_sources_backed_off=lambda: g.backed_off(),
        gatehub_auth_sources_locked_out=lambda: g.locked_out(),
        gatehub_auth_sources_tracked=lambda: g.tracked(),
        gatehub_auth_delay_seconds=lambda: g.delayed_seconds,
    )
    svc.metrics.add_counter(
        "gatehub_auth_failures",
        "Refused credential checks, by transport and reason",
        ("transport", "reason"),
        lambda: g.labelled(g.failures),
    )
    svc.metrics.add_counter(
        "gatehub_tls_handshakes_refused",
        "Refused TLS handshakes (client certificates and others), by listener and reason",
        ("listener", "reason"),
        lambda: g.labelled(g.tls_refusals),
    )
