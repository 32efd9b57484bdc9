"""The MQTT hub of a node: listeners, the session registry, and what happens around a session.

- Listeners: plain TCP (``mqtt_port``) and TLS with mandatory client certificates
  (``mqtts_port``, contexts from the hub CA, CRL-checked, revocations apply to new handshakes at
  once), and MQTT over WebSocket (``mqtt_ws_port``, off by default; see ``websocket.py``).
  Each can be stopped and started at runtime.
- Sessions are keyed by (tenant, client id), and by device for a device principal, in the
  node's session directory (:class:`~gatehub.services.presence.SessionDirectory`, the one place
  that says which session serves a client or a device). A second connection with the same key
  takes over: the first gets DISCONNECT 0x8E (MQTT 5) and is closed. Session state
  (unacknowledged and queued QoS 1/2 messages) outlives a connection for its session expiry
  interval.
- A device principal's session makes the device online; its end makes it offline, and a
  gateway's sub-devices offline-because-gateway-offline (unless a newer session took over).
- Revocation: a blacklist change on the bus closes sessions authenticated by a now-revoked
  certificate with DISCONNECT 0x87, within the bus's latency.
- Wills are published through the broker when a session ends without a normal DISCONNECT,
  after the will delay (cancelled if the client comes back in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.domain.model import Presence
from gatehub.pki import CertificateAuthority, TlsContextProvider
from gatehub.pki.tlsgate import TlsServer, serve_tls
from gatehub.protocols.mqtt import OutboundMessage, QueueStats, SendResult, ServerOptions, SessionState
from gatehub.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gatehub.services.guard import CredentialGuard
from gatehub.services.ingest import Ingest
from gatehub.services.presence import SessionDirectory, SessionEntry, SessionHandle
from gatehub.store import Store
from gatehub.transports.mqtt.alink_auth import AlinkSignatureAuth
from gatehub.transports.mqtt.auth import AccessTokenAuth, AnonymousAuth, AuthChain, CertificateAuth
from gatehub.transports.mqtt.contracts import SessionKey
from gatehub.transports.mqtt.dialect import Dialect, DialectRouter
from gatehub.transports.mqtt.preauth import PreauthBudget
from gatehub.transports.mqtt.session import MqttSession
from gatehub.transports.mqtt.websocket import WebSocketListener, start_websocket_listener

__all__ = ["MqttHub", "SessionKey", "StoredSession"]

log = logging.getLogger(__name__)

TRANSPORT = "mqtt"  # this hub's name for its sessions in the session directory
K = TypeVar("K", bound=Hashable)


class SessionsView(Mapping[K, MqttSession]):
    """A read-only view of one index of the session directory: the MQTT sessions in it."""

    __slots__ = ("_index", "_size")

    def __init__(self, index: Mapping[K, SessionEntry], size: Callable[[], int] | None = None) -> None:
        self._index = index
        self._size = size

    def __getitem__(self, key: K) -> MqttSession:
        handle = self._index[key].handle
        if isinstance(handle, MqttSession):
            return handle
        raise KeyError(key)

    def __iter__(self) -> Iterator[K]:
        return (k for k, e in list(self._index.items()) if isinstance(e.handle, MqttSession))

    def __len__(self) -> int:
        return self._size() if self._size is not None else sum(1 for _ in self)


@dataclass(slots=True)
class StoredSession:
    state: SessionState
    expiry: asyncio.TimerHandle | None


class MqttHub:
    name = "mqtt"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ingest: Ingest,
        bus: Bus,
        pki: TlsContextProvider | None,
        broker: Dialect,
        presence: SessionDirectory,
        guard: CredentialGuard | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ingest = ingest  # the one commit path (the dialects commit through it)
        self.bus = bus
        self.pki = pki
        self.ca: CertificateAuthority | None = pki.ca if pki is not None else None
        self.loop = asyncio.get_running_loop()
        self.queue_stats = QueueStats()  # messages dropped towards clients, by QoS (every session)
        self.server_options = ServerOptions(
            max_packet_size=settings.mqtt_max_packet_size,
            receive_maximum=settings.mqtt_receive_maximum,
            max_queued_messages=settings.mqtt_max_queued_messages,
            max_queued_bytes=settings.mqtt_max_queued_bytes,
            queue_overflow=settings.mqtt_queue_overflow,
            max_inflight=settings.mqtt_max_inflight,
            max_connect_size=min(settings.mqtt_max_connect_size, settings.mqtt_max_packet_size),
            max_session_expiry_interval=settings.mqtt_max_session_expiry,
            queue_stats=self.queue_stats,
        )
        self.preauth: dict[str, PreauthBudget] = {}  # per listener
        self.auth = AuthChain(
            [
                CertificateAuth(store),
                AlinkSignatureAuth(store, settings.alink_timestamp_skew),
                AccessTokenAuth(store),
                AnonymousAuth(settings.mqtt_anonymous_tenant),
            ]
        )
        self.guard = guard if guard is not None else CredentialGuard()  # every CONNECT's credential check
        self.router = DialectRouter(broker)
        self.broker = broker
        self.presence = presence
        self.connections: set[MqttSession] = set()
        # the live sessions, by client and by device: views of the directory, for the dialects
        self.live: Mapping[SessionKey, MqttSession] = SessionsView(presence.clients, lambda: presence.count(TRANSPORT))
        self.by_device: Mapping[str, MqttSession] = SessionsView(presence.devices)
        self.stored: dict[SessionKey, StoredSession] = {}
        self.wills: dict[SessionKey, asyncio.TimerHandle] = {}
        self.listeners: dict[str, asyncio.Server | TlsServer | WebSocketListener] = {}
        self.ports: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None

    # lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        for d in self.router.all:
            await d.start()
        if self.settings.mqtt_port >= 0:
            await self.start_listener("tcp")
        if self.settings.mqtts_port >= 0:
            await self.start_listener("tls")
        if self.settings.mqtt_ws_port >= 0:
            await self.start_listener("ws")
        sub = self.bus.subscribe("pki.blacklist", maxsize=100)
        self._watch = self.loop.create_task(self._watch_blacklist(sub))

    async def stop(self) -> None:
        for name in list(self.listeners):
            await self.stop_listener(name)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for s in list(self.connections):
            s.disconnect(0x8B, "server shutting down")  # MQTT 5: server shutting down
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.02)
        for t in self.wills.values():
            t.cancel()
        for st in self.stored.values():
            if st.expiry is not None:
                st.expiry.cancel()
        for d in reversed(self.router.all):
            await d.stop()

    async def start_listener(self, name: str) -> int:
        """Start (or restart) a listener; returns its port."""
        if name in self.listeners:
            return self.ports[name]
        host = self.settings.bind_host
        if name == "tcp":
            port = self.ports.get(name, self.settings.mqtt_port)
            ctx: ssl.SSLContext | None = None
        elif name == "tls":
            if self.pki is None:
                raise RuntimeError("the TLS listener needs the hub CA")
            port = self.ports.get(name, self.settings.mqtts_port)
            ctx = self.pki.server_context(require_client_cert=True)
        elif name != "ws":
            raise ValueError(f"unknown MQTT listener {name!r}")
        server: asyncio.Server | TlsServer | WebSocketListener
        if name == "ws":
            port = self.ports.get(name, self.settings.mqtt_ws_port)
            server = await start_websocket_listener(self, host, port)
        elif ctx is not None:  # own accept loop: a TLS 1.0/1.1 hello gets the protocol_version alert
            server = await serve_tls(
                lambda: MqttSession(self, name),
                ctx,
                host,
                port,
                backlog=1024,
                handshake_timeout=60.0,
                name="mqtts",
                on_refused=lambda peer, exc: self.guard.tls_refused(peer, "mqtts", exc),
            )
        else:
            server = await self.loop.create_server(
                lambda: MqttSession(self, name), host, port, ssl=ctx, reuse_address=True, backlog=1024
            )
        self.listeners[name] = server
        self.ports[name] = server.sockets[0].getsockname()[1]
        log.info("MQTT %s listening on %s:%d", name, host, self.ports[name])
        return self.ports[name]

    async def stop_listener(self, name: str, *, close_sessions: bool = False) -> None:
        """Stop accepting on a listener (its port is kept for a restart). Existing sessions stay
        unless ``close_sessions``."""
        server = self.listeners.pop(name, None)
        if server is None:
            return
        server.close()
        if close_sessions:
            for s in [s for s in self.connections if s.listener == name]:
                s.disconnect(0x8B, "listener stopped")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    # connections and sessions -----------------------------------------------------------------
    def connection_opened(self, session: MqttSession) -> None:
        self.connections.add(session)

    def preauth_budget(self, listener: str) -> PreauthBudget:
        budget = self.preauth.get(listener)
        if budget is None:
            budget = self.preauth[listener] = PreauthBudget(self.settings.mqtt_preauth_buffer_limit)
        return budget

    def queue_totals(self) -> tuple[int, int, int]:
        """Messages and bytes waiting in session queues (live and stored), and messages in flight."""
        states = [s.conn.session for s in self.connections if s.conn.session is not None]
        states += [st.state for st in self.stored.values()]
        return (
            sum(len(st.queue) for st in states),
            sum(st.queued_bytes for st in states),
            sum(len(st.inflight) for st in states),
        )

    async def session_start(self, session: MqttSession) -> None:
        """Accept an authenticated CONNECT: takeover, resume or new session, then the dialects."""
        p = session.principal
        connect = session.connect
        assert p is not None and connect is not None and session.client_id is not None
        key = (p.tenant_id, session.client_id)
        old = self._session(key)
        state: SessionState | None = None
        if old is not None and old is not session:
            old.taken_over = True
            state = old.conn.session
            old.disconnect(0x8E, "session taken over")
            self.presence.unbind(old)
        stored = self.stored.pop(key, None)
        if stored is not None:
            if stored.expiry is not None:
                stored.expiry.cancel()
            state = state or stored.state
        will = self.wills.pop(key, None)
        if will is not None:
            will.cancel()  # the client is back before its will delay ran out
        if connect.clean_start:
            if state is not None:
                self.broker_session_ended(p.tenant_id, session.client_id)
            state = None
        if session.closed:
            return
        session.conn.accept(session=state)
        displaced = self.presence.bind(
            session, tenant_id=p.tenant_id, client_id=session.client_id, device_id=p.device_id, transport=TRANSPORT
        )
        # the client key was freed above (no await since); the device may still be served by
        # another connection (another client id)
        for prev, why in (
            (displaced.client, "session taken over"),
            (displaced.device, "another connection took over this device"),
        ):
            if prev is not None and not prev.closed:
                self._take_over(prev, why)
        if p.device_id is not None:
            address = session.peer.rsplit(":", 1)[0].strip("[]") if session.peer else None
            await self.store.devices.set_presence(p.tenant_id, p.device_id, Presence.ONLINE, address=address)
        session._flush()
        for d in self.router.all:
            try:
                await d.on_connect(session)
            except Exception:
                log.exception("%s.on_connect failed for %s", d.name, session.client_id)

    @staticmethod
    def _take_over(prev: SessionHandle, why: str) -> None:
        if isinstance(prev, MqttSession):
            prev.taken_over = True
            prev.disconnect(0x8E, why)
        else:  # another transport's session (none registers yet)
            prev.evict(why)

    def _session(self, key: SessionKey) -> MqttSession | None:
        s = self.presence.local_client(*key)
        return s if isinstance(s, MqttSession) else None

    def connection_closed(self, session: MqttSession) -> None:
        self.connections.discard(session)
        p = session.principal
        if p is None or session.client_id is None:
            return
        key = (p.tenant_id, session.client_id)
        was_device_session = p.device_id is not None and self.presence.local_device(p.device_id) is session
        self.presence.unbind(session)
        taken_over = session.taken_over
        state = session.conn.session
        if not taken_over and state is not None:
            if state.session_expiry_interval > 0:
                expiry = None
                if state.session_expiry_interval < 0xFFFFFFFF:
                    expiry = self.loop.call_later(state.session_expiry_interval, self._expire, key)
                self.stored[key] = StoredSession(state, expiry)
            else:
                self.broker_session_ended(p.tenant_id, session.client_id)
        connect = session.connect
        if connect is not None and connect.will is not None and not session.will_sent and not taken_over:
            delay = connect.will_delay_interval
            if state is not None:
                delay = min(delay, state.session_expiry_interval)
            if delay > 0:
                self.wills[key] = self.loop.call_later(delay, self._publish_will, session, key)
            else:
                self._publish_will(session, key)
        self.loop.create_task(self._ended(session, was_device_session))

    async def _ended(self, session: MqttSession, was_device_session: bool) -> None:
        p = session.principal
        assert p is not None
        for d in self.router.all:
            try:
                await d.on_disconnect(session, taken_over=session.taken_over)
            except Exception:
                log.exception("%s.on_disconnect failed for %s", d.name, session.client_id)
        gone = was_device_session and not session.taken_over and p.device_id is not None
        if gone and p.device_id is not None and self.presence.local_device(p.device_id) is None:
            try:
                await self.store.devices.set_presence(p.tenant_id, p.device_id, Presence.OFFLINE)
            except Exception:
                log.exception("could not mark %s offline", p.device_id)

    def _expire(self, key: SessionKey) -> None:
        if self.stored.pop(key, None) is not None:
            self.broker_session_ended(*key)

    def _publish_will(self, session: MqttSession, key: SessionKey) -> None:
        self.wills.pop(key, None)
        will = session.connect.will if session.connect else None
        p = session.principal
        if will is None or p is None:
            return
        publish = getattr(self.broker, "publish_will", None)
        if publish is not None:
            publish(p.tenant_id, session.client_id, will)

    def broker_session_ended(self, tenant_id: str, client_id: str) -> None:
        """A session's state is gone for good: the broker forgets its subscriptions."""
        ended = getattr(self.broker, "session_ended", None)
        if ended is not None:
            ended(tenant_id, client_id)

    # delivery ---------------------------------------------------------------------------------
    def session_for_device(self, device_id: str) -> MqttSession | None:
        s = self.presence.local_device(device_id)
        return s if isinstance(s, MqttSession) and not s.closed else None

    def publish_to_device(
        self, device_id: str, topic: str, payload: bytes, qos: int = 1, **kw: Any
    ) -> SendResult | None:
        """Send to the session that serves ``device_id`` on this node; None if none does."""
        s = self.session_for_device(device_id)
        if s is None:
            return None
        return s.send(topic, payload, qos, **kw)

    def deliver(
        self,
        key: SessionKey,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        *,
        properties: Properties = EMPTY_PROPERTIES,
        subscription_identifiers: tuple[int, ...] = (),
        expires_at: float = 0.0,
    ) -> SendResult:
        """Deliver to a client session, live or stored (QoS 1/2 wait in a stored session).
        ``expires_at``: the message's Message Expiry deadline (:func:`time.monotonic`), 0.0 for none."""
        s = self._session(key)
        if s is not None and not s.closed:
            return s.send(
                topic,
                payload,
                qos,
                retain,
                properties=properties,
                subscription_identifiers=subscription_identifiers,
                expires_at=expires_at,
            )
        st = self.stored.get(key)
        if st is None or not qos:
            return SendResult.DROPPED_NOT_CONNECTED
        msg = OutboundMessage(topic, payload, qos, retain, properties, subscription_identifiers)
        msg.expires_at = expires_at
        return SendResult.QUEUED if st.state.enqueue(msg) else SendResult.DROPPED_QUEUE_FULL

    async def _watch_blacklist(self, sub: Any) -> None:
        async for env in sub:
            serials = set(env.data.get("serials", ()))
            for s in list(self.connections):
                p = s.principal
                if p is not None and p.cert_serial is not None and p.cert_serial in serials:
                    log.info("closing %s: certificate %d was revoked", s.client_id, p.cert_serial)
                    s.disconnect(0x87, "certificate revoked")
                elif s.peer_cert is not None and s.peer_cert.serial in serials:
                    s.disconnect(0x87, "certificate revoked")

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "sessions": self.presence.count(TRANSPORT),
            "stored_sessions": len(self.stored),
        }
