"""What the MQTT hub, its sessions, its dialects and the WebSocket adapter expect of each other.

Structural types only (:class:`typing.Protocol`), so that these modules import this one instead
of each other: ``contracts <- dialect <- session <- websocket <- hub``, no way back.

- :class:`SessionLike`: what a dialect may use on a session (:class:`MqttSession` is one).
- :class:`HubLike`: what a dialect may use on the hub (:class:`MqttHub` is one).
- :class:`SessionHost`: what a session, and the WebSocket listener that makes sessions, need of
  the hub: server options, the event loop, authentication, the dialect router and the
  connection callbacks. Generic in the session class the host takes, which only the hub and
  the session itself name.
- :class:`DialectLike`, :class:`RouterLike`: what a session calls per packet on the router and
  on the dialect it picks.

This module imports only lower layers (config, bus, store, pki, the MQTT codec) and
``auth`` (the principal and the authentication request/result, a leaf of this package) and
``preauth`` (a leaf too); the
heavy ones only for type checking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Union

from gatehub.protocols.mqtt.properties import EMPTY_PROPERTIES

if TYPE_CHECKING:
    from gatehub.bus import Bus
    from gatehub.config import Settings
    from gatehub.pki import CertificateAuthority
    from gatehub.protocols.mqtt import Connect, Publish, SendResult, ServerConnection, ServerOptions, Subscription
    from gatehub.protocols.mqtt.properties import Properties
    from gatehub.services.guard import CredentialGuard
    from gatehub.services.ingest import Ingest
    from gatehub.store import Store
    from gatehub.transports.mqtt.auth import AuthRequest, AuthResult, MqttPrincipal
    from gatehub.transports.mqtt.preauth import PreauthBudget

__all__ = [
    "AckResult",
    "Authenticates",
    "DialectLike",
    "HubLike",
    "RouterLike",
    "SessionHost",
    "SessionKey",
    "SessionLike",
]

SessionKey = tuple[str, str]  # (tenant id, client id)
# what a dialect answers to a PUBLISH: a reason code now, one later, or None (QoS 0)
AckResult = Union[int, Awaitable[int], None]  # noqa: UP007 - Awaitable in a runtime alias


class SessionLike(Protocol):
    """One client connection, as a dialect sees it."""

    @property
    def principal(self) -> MqttPrincipal | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def connect(self) -> Connect | None: ...
    @property
    def conn(self) -> ServerConnection: ...
    @property
    def listener(self) -> str: ...  # tcp, tls, ws
    @property
    def peer(self) -> str | None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def taken_over(self) -> bool: ...
    @property
    def user(self) -> dict[str, Any] | None: ...

    def state(self) -> dict[str, Any]:
        """Dialect-specific state of this session (created on first use)."""
        ...

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
    ) -> SendResult: ...

    def disconnect(self, reason_code: int, reason_string: str | None = None) -> None: ...

    def close(self) -> None: ...

    def serial(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coro`` after every coroutine queued before it on this session."""
        ...


class HubLike(Protocol):
    """The MQTT hub, as a dialect sees it."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def ingest(self) -> Ingest: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def live(self) -> Mapping[SessionKey, SessionLike]: ...
    @property
    def by_device(self) -> Mapping[str, SessionLike]: ...

    def session_for_device(self, device_id: str) -> SessionLike | None: ...

    def publish_to_device(
        self, device_id: str, topic: str, payload: bytes, qos: int = 1, **kw: Any
    ) -> SendResult | None: ...

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
    ) -> SendResult: ...


S_contra = TypeVar("S_contra", contravariant=True)


class DialectLike(Protocol[S_contra]):
    """The per-packet part of a dialect, as the session calls it."""

    @property
    def name(self) -> str: ...

    def on_publish(self, session: S_contra, packet: Publish) -> AckResult: ...

    def on_subscribe(self, session: S_contra, sub: Subscription, subscription_id: int | None) -> int: ...

    def on_unsubscribe(self, session: S_contra, topic_filter: str) -> int: ...


class RouterLike(Protocol[S_contra]):
    def for_topic(self, topic: str) -> DialectLike[S_contra]: ...

    def for_filter(self, topic_filter: str) -> DialectLike[S_contra]: ...


class Authenticates(Protocol):
    async def authenticate(self, req: AuthRequest) -> AuthResult: ...


class SessionHost(Protocol[S_contra]):
    """What a session of class ``S_contra`` needs of the hub that accepted its connection."""

    @property
    def server_options(self) -> ServerOptions: ...
    @property
    def ca(self) -> CertificateAuthority | None: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def auth(self) -> Authenticates: ...
    @property
    def guard(self) -> CredentialGuard: ...
    @property
    def router(self) -> RouterLike[S_contra]: ...

    def connection_opened(self, session: S_contra) -> None: ...

    def preauth_budget(self, listener: str) -> PreauthBudget:
        """The bound of what the listener's unauthenticated connections hold (``preauth.py``)."""
        ...

    def connection_closed(self, session: S_contra) -> None:
        """The connection is gone (the session is ``closed``)."""
        ...

    async def session_start(self, session: S_contra) -> None:
        """Accept the authenticated CONNECT of ``session`` (its ``principal`` is set)."""
        ...
