"""One MQTT connection: a short loop around the sans-I/O ServerConnection.

read -> feed -> dispatch events -> flush. PUBACKs wait for what each dialect says (usually the
ingest commit) and leave in arrival order. When too many acknowledgements are pending (storage
is behind) the socket stops being read: backpressure, never loss. Per-connection state lives in
``__slots__`` and nothing is allocated for an idle connection beyond the codec's own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gatehub.pki import CertificateIdentity, peer_identity
from gatehub.protocols.mqtt import (
    Connect,
    Disconnect,
    ProtocolViolation,
    PubAckReceived,
    Publish,
    SendResult,
    ServerConnection,
    Subscribe,
    Unsubscribe,
)
from gatehub.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gatehub.services.guard import REFUSAL_MESSAGES, Refusal, mask
from gatehub.transports.mqtt.auth import AuthRequest, MqttPrincipal
from gatehub.transports.mqtt.preauth import PreauthBudget

if TYPE_CHECKING:
    from gatehub.transports.mqtt.contracts import SessionHost

log = logging.getLogger(__name__)

PAUSE_AT = 2000  # pending acknowledgements before the socket stops being read
RESUME_AT = 500
CONNECT_TIMEOUT = 10.0
FLUSH_AT = 64 * 1024  # deliveries to one client are written in batches of about this many bytes


_TRANSPORTS = {"tcp": "mqtt", "tls": "mqtts", "ws": "mqtt-ws"}  # transport names in guard logs and metrics


def _identity(ev: Connect) -> str:
    return f"client {ev.client_id[:64]!r}, user {mask(ev.username)}"


def _reason(ev: Connect, code: int, has_cert: bool) -> tuple[str, bool]:
    """The guard's reason label of a refused CONNECT, and whether it counts as a guess."""
    if code in (0x80, 0x88):  # the hub failed (storage down): nobody's fault
        return "server_error", False
    if ev.username is None and ev.password is None:  # a certificate cannot be guessed: nothing to back off
        return ("certificate_refused" if has_cert else "no_credentials"), False
    return ("bad_credentials" if code == 0x86 else "not_authorized"), True


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("QoS 0 message not stored: %s", fut.exception())


class MqttSession(asyncio.Protocol):
    __slots__ = (
        "_ack_waiters",
        "_acks",
        "_budget",
        "_flush_soon",
        "_held",
        "_keepalive_handle",
        "_last_rx",
        "_pending",
        "_read_paused",
        "_serial_queue",
        "_serial_task",
        "_write_paused",
        "client_id",
        "closed",
        "conn",
        "connect",
        "dropped_qos0",
        "hub",
        "listener",
        "peer",
        "peer_cert",
        "peer_host",
        "principal",
        "taken_over",
        "transport",
        "user",
        "will_sent",
    )

    def __init__(self, hub: SessionHost[MqttSession], listener: str) -> None:
        self.hub = hub
        self.listener = listener
        self.conn = ServerConnection(hub.server_options)
        self._budget: PreauthBudget | None = hub.preauth_budget(listener)  # None once authenticated
        self.transport: asyncio.Transport | None = None
        self.principal: MqttPrincipal | None = None
        self.connect: Connect | None = None
        self.client_id: str | None = None
        self.peer: str | None = None
        self.peer_host: str | None = None  # the client's address, the source the credential guard keys on
        self.peer_cert: CertificateIdentity | None = None
        self._acks: deque[list[Any]] = deque()  # [packet_id, code or awaitable result]
        self._ack_waiters = 0
        self._held: list[Any] | None = None  # events that arrived while CONNECT is authenticated
        self._read_paused = False
        self._write_paused = False
        self._flush_soon = False
        self._pending = 0  # approximate bytes of deliveries not yet flushed
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._serial_queue: deque[tuple[Coroutine[Any, Any, Any], asyncio.Future[Any]]] | None = None
        self._serial_task: asyncio.Task[None] | None = None
        self.closed = False
        self.taken_over = False
        self.will_sent = False
        self.dropped_qos0 = 0
        self.user: dict[str, Any] | None = None  # dialect-specific state, created on demand

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and self.hub.ca is not None:
            try:
                if ssl_object.getpeercert(binary_form=True):
                    self.peer_cert = peer_identity(self.hub.ca, ssl_object)
            except Exception as exc:  # verified by TLS already; a parse failure refuses the client
                self.hub.guard.tls_refused(self.peer_host, _TRANSPORTS.get(self.listener, "mqtt"), exc)
                transport.close()
                return
        self._last_rx = time.monotonic()
        self._keepalive_handle = self.hub.loop.call_later(CONNECT_TIMEOUT, self._check_keepalive)
        self.hub.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        conn = self.conn
        conn.receive_data(data)
        if self._budget is not None and self._preauth_data():
            return
        self._dispatch(conn.events_received())
        self._flush()

    def _preauth_data(self) -> bool:
        """Account what this unauthenticated connection holds; True if it was closed for it."""
        conn = self.conn
        budget = self._budget
        assert budget is not None
        if conn.should_close:  # refused (not a CONNECT, too large, ...): nothing is kept
            conn.discard_input()
        held = conn.buffered
        if held > self.hub.server_options.max_connect_size and not self._read_paused and self.transport is not None:
            # what it pipelined behind its CONNECT waits in the socket, not here, until accepted
            self._read_paused = True
            self.transport.pause_reading()
        budget.hold(self, held)
        return self._budget is None

    def preauth_evict(self) -> None:
        """Closed by the listener's pre-authentication budget (it holds the most)."""
        log.info("closing %s: unauthenticated connections hold more than their limit", self.peer)
        self._preauth_release()
        self.conn.disconnect()
        self.conn.discard_input()
        if self.transport is not None:
            self.transport.abort()

    def _preauth_release(self) -> None:
        budget = self._budget
        if budget is not None:
            self._budget = None
            budget.hold(self, 0)

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._preauth_release()
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        self.hub.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.conn.pause_output()  # QoS 1/2 wait in the session queue, within its bounds

    def resume_writing(self) -> None:
        self._write_paused = False
        conn = self.conn
        conn.resume_output()
        if conn.has_events:
            self._dispatch(conn.events_received())
        self._flush()

    # the loop ---------------------------------------------------------------------------------
    def _dispatch(self, events: list[Any]) -> None:
        if self._held is not None:  # CONNECT is being authenticated: keep order
            self._held.extend(events)
            return
        for i, ev in enumerate(events):
            if type(ev) is Publish:
                self._on_publish(ev)
            elif type(ev) is PubAckReceived:
                token = ev.message.token
                if callable(token):
                    try:
                        token(ev.reason_code)
                    except Exception:
                        log.exception("delivery callback failed")
            elif type(ev) is Subscribe:
                self._on_subscribe(ev)
            elif type(ev) is Unsubscribe:
                codes = [self.hub.router.for_filter(f).on_unsubscribe(self, f) for f in ev.topic_filters]
                self.conn.send_unsuback(ev.packet_id, codes)
            elif type(ev) is Connect:
                self._held = list(events[i + 1 :])
                self.hub.loop.create_task(self._authenticate(ev))
                return
            elif type(ev) is Disconnect:
                self.will_sent = ev.discard_will  # a normal DISCONNECT discards the will
                if ev.session_expiry_interval is not None and self.conn.session is not None:
                    self.conn.session.session_expiry_interval = ev.session_expiry_interval
            elif type(ev) is ProtocolViolation:
                log.info(
                    "protocol violation from %s (%s): 0x%02x %s", self.peer, self.client_id, ev.reason_code, ev.message
                )

    def _on_publish(self, pkt: Publish) -> None:
        dialect = self.hub.router.for_topic(pkt.topic)
        try:
            result = dialect.on_publish(self, pkt)
        except Exception:
            log.exception("%s dialect failed on %s", dialect.name, pkt.topic)
            result = 0x80
        fut: asyncio.Future[int] | None = None
        if result is not None and not isinstance(result, int):
            fut = asyncio.ensure_future(result)
            fut.add_done_callback(self._ack_done if pkt.qos else _log_failure)
        if not pkt.qos:
            return
        if fut is None and not self._acks:
            self.conn.ack_publish(pkt.packet_id, result or 0)  # type: ignore[arg-type]
            return
        self._acks.append([pkt.packet_id, fut if fut is not None else (result or 0)])
        if fut is not None:
            self._ack_waiters += 1
        if len(self._acks) >= PAUSE_AT and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _ack_done(self, fut: asyncio.Future[int]) -> None:
        self._ack_waiters -= 1
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("message from %s not stored: %s", self.client_id, fut.exception())
        self._release_acks()
        self._flush()

    def _release_acks(self) -> None:
        acks = self._acks
        conn = self.conn
        while acks:
            pid, res = acks[0]
            if isinstance(res, int):
                code = res
            else:
                if not res.done():
                    break
                # a message that could not be stored is refused (0x80), so the client resends it
                code = 0x80 if res.cancelled() or res.exception() is not None else (res.result() or 0)
            acks.popleft()
            if not self.closed:
                conn.ack_publish(pid, code)
        if self._read_paused and len(acks) <= RESUME_AT and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def _on_subscribe(self, ev: Subscribe) -> None:
        codes = []
        for sub in ev.subscriptions:
            try:
                codes.append(
                    self.hub.router.for_filter(sub.topic_filter).on_subscribe(self, sub, ev.subscription_identifier)
                )
            except Exception:
                log.exception("subscribe to %s failed", sub.topic_filter)
                codes.append(0x80)
        self.conn.send_suback(ev.packet_id, codes)

    async def _authenticate(self, ev: Connect) -> None:
        self.connect = ev
        self.client_id = ev.client_id
        req = AuthRequest(ev.client_id, ev.username, ev.password, ev.protocol_version, self.peer_cert, self.listener)
        guard = self.hub.guard
        transport = _TRANSPORTS.get(self.listener, "mqtt")
        try:
            # the credential guard: a backed-off source waits here, in this connection's task
            refusal = await guard.admit(self.peer_host, transport, _identity(ev))
            if self.closed or self.conn.should_close:  # gone, or closed meanwhile (pre-auth budget)
                return
            if refusal is not None:
                locked = refusal is Refusal.LOCKED_OUT
                self.conn.refuse(0x8A if locked else 0x9F, reason_string=REFUSAL_MESSAGES[refusal])
                self._held = None
                self._flush()
                return
            res = await self.hub.auth.authenticate(req)
            if res.principal is None:
                # counted and logged (rate-limited) by the guard; the answer waits out the back-off
                reason, scored = _reason(ev, res.reason_code, self.peer_cert is not None)
                await guard.refused(self.peer_host, transport, f"{_identity(ev)}: {res.message}", reason, score=scored)
                if self.closed or self.conn.should_close:
                    return
                self.conn.refuse(res.reason_code, reason_string=res.message or None)
                self._held = None
                self._flush()
                return
            if self.closed or self.conn.should_close:
                return
            guard.succeeded(self.peer_host)
            self.principal = res.principal
            self._preauth_release()
            await self.hub.session_start(self)
        except Exception:
            log.exception("CONNECT of %s failed", ev.client_id)
            if not self.closed and self.conn.state.name == "CONNECTING":
                self.conn.refuse(0x80)
            self._held = None
            self._flush()
            return
        held, self._held = self._held or [], None
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        self._schedule_keepalive()
        if self._read_paused and len(self._acks) < PAUSE_AT and self.transport is not None and not self.closed:
            self._read_paused = False  # paused while unauthenticated (see _preauth_data)
            self.transport.resume_reading()
        self._dispatch(held + self.conn.events_received())
        self._flush()

    # keepalive --------------------------------------------------------------------------------
    def _schedule_keepalive(self) -> None:
        timeout = self.conn.keepalive_timeout()
        if timeout is None or self.closed:
            return
        when = self._last_rx + timeout
        self._keepalive_handle = self.hub.loop.call_at(
            self.hub.loop.time() + max(0.0, when - time.monotonic()), self._check_keepalive
        )

    def _check_keepalive(self) -> None:
        self._keepalive_handle = None
        if self.closed:
            return
        if self.principal is None:  # no accepted CONNECT within CONNECT_TIMEOUT
            if self._held is None:
                self.close()
            return
        timeout = self.conn.keepalive_timeout()
        if timeout is None:
            return
        if time.monotonic() - self._last_rx >= timeout:
            log.info("keepalive expired for %s", self.client_id)
            self.conn.keepalive_expired()
            self._flush()
            self.close()
        else:
            self._schedule_keepalive()

    # actions ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.conn.data_to_send()
        transport = self.transport
        if transport is None or self.closed:
            return
        if data:
            transport.write(data)
        if self.conn.should_close:
            transport.close()

    def send(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties = EMPTY_PROPERTIES,
        subscription_identifiers: tuple[int, ...] = (),
        on_ack: Callable[[int], None] | None = None,
        expires_at: float = 0.0,
    ) -> SendResult:
        """Publish to this client (QoS 1/2 wait in the session for the receive window).
        ``on_ack(reason_code)`` runs when the client acknowledged a QoS 1/2 message."""
        if self.closed:
            return SendResult.DROPPED_NOT_CONNECTED
        conn = self.conn
        if not qos and self._write_paused:
            self.dropped_qos0 += 1  # a slow reader loses QoS 0 (allowed)
            stats = conn.options.queue_stats
            if stats is not None:
                stats.dropped[0] += 1
            return SendResult.DROPPED_QUEUE_FULL
        res = conn.send_publish(
            topic,
            payload,
            qos,
            retain,
            properties=properties,
            subscription_identifiers=subscription_identifiers,
            token=on_ack,
            expires_at=expires_at,
        )
        if qos and res is not SendResult.SENT:
            if conn.has_events:  # drop_oldest: the senders of dropped messages hear 0x97
                self._dispatch(conn.events_received())
            transport = self.transport
            if conn.should_close and transport is not None and not transport.is_closing():
                # policy disconnect: the session queue is at its bound
                log.info("disconnecting %s: its session queue is full", self.client_id)
                self._flush()
                transport.abort()  # it does not read: close() would wait for its write buffer
                return res
        # coalesce a burst of deliveries into few writes (syscalls), at most FLUSH_AT bytes each,
        # so that the transport's pause_writing still stops QoS 0 to a slow reader in time
        if not self._flush_soon:
            self._flush_soon = True
            self._pending = 0
            self.hub.loop.call_soon(self._deferred_flush)
        self._pending += len(payload) + len(topic) + 8
        if self._pending > FLUSH_AT:
            self._pending = 0
            self._flush()
        return res

    def _deferred_flush(self) -> None:
        self._flush_soon = False
        self._flush()

    def disconnect(self, reason_code: int, reason_string: str | None = None) -> None:
        """Server-side close: DISCONNECT with ``reason_code`` on MQTT 5, then close."""
        if self.closed:
            return
        self.conn.disconnect(reason_code, reason_string)
        self._flush()
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def evict(self, reason: str) -> None:
        """Ended by the server's operator (the session directory's handle): DISCONNECT 0x98
        (administrative action) on MQTT 5, then close."""
        self.disconnect(0x98, reason)

    def serial(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coro`` after every coroutine queued before it on this session (per-session order)."""
        fut: asyncio.Future[Any] = self.hub.loop.create_future()
        if self._serial_queue is None:
            self._serial_queue = deque()
        self._serial_queue.append((coro, fut))
        if self._serial_task is None or self._serial_task.done():
            self._serial_task = self.hub.loop.create_task(self._run_serial())
        return fut

    async def _run_serial(self) -> None:
        q = self._serial_queue
        while q:
            coro, fut = q.popleft()
            try:
                res = await coro
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(res)
        self._serial_task = None

    def state(self) -> dict[str, Any]:
        """Dialect-specific state of this session (created on first use)."""
        if self.user is None:
            self.user = {}
        return self.user
