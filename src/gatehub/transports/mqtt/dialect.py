"""Dialects: translations between a family of MQTT topics and domain operations.

A dialect claims topic namespaces (prefixes such as ``v1/`` or ``/sys/``); every PUBLISH,
SUBSCRIBE and UNSUBSCRIBE whose topic or filter falls in them goes to that dialect with the
session (and so its principal). Topics no dialect claims go to the plain broker.

``on_publish`` decides when the PUBACK may go: it returns a reason code now (0 = success), an
awaitable that resolves to one (typically: after the ingest writer committed the data), or
None for QoS 0. Acks leave in the order the PUBLISH packets came, whatever order the awaitables
finish in. A dialect that needs async work per message (a database lookup) keeps per-session
order with ``session.serial(coro)``.

A dialect is generic in the session class it is handed (``S``, bound to
:class:`~gatehub.transports.mqtt.contracts.SessionLike`): a subclass that names none gets the
hub's own sessions and annotates them as it likes (``MqttSession``); the plain broker takes any
``SessionLike``. This module does not import the session or the hub (see ``contracts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

from gatehub.protocols.mqtt import Publish, Subscription
from gatehub.transports.mqtt.contracts import AckResult, SessionLike

__all__ = ["AckResult", "Dialect", "DialectRouter"]

if TYPE_CHECKING:  # a default for the type parameter (PEP 696): typing has it from 3.13 only
    from typing_extensions import TypeVar

    S = TypeVar("S", bound=SessionLike, contravariant=True, default=Any)
else:
    from typing import TypeVar

    S = TypeVar("S", bound=SessionLike, contravariant=True)


class Dialect(Generic[S]):
    """Base class: override what the dialect needs. Prefixes are matched in registration order."""

    name = "dialect"
    prefixes: tuple[str, ...] = ()

    async def start(self) -> None:
        """Called once when the MQTT hub starts."""

    async def stop(self) -> None:
        """Called once when the MQTT hub stops."""

    def claims(self, topic: str) -> bool:
        return topic.startswith(self.prefixes)

    async def on_connect(self, session: S) -> None:
        """The session was accepted (after takeover and resume). Auto-subscriptions, pushes of
        what waited for the device, presence: the session may already receive messages."""

    def on_publish(self, session: S, packet: Publish) -> AckResult:
        return 0x87 if packet.qos else None  # not authorized, by default

    def on_subscribe(self, session: S, sub: Subscription, subscription_id: int | None) -> int:
        """Granted QoS (0-2) or a failure reason code (>= 0x80)."""
        return 0x87

    def on_unsubscribe(self, session: S, topic_filter: str) -> int:
        return 0x11  # no subscription existed

    async def on_disconnect(self, session: S, *, taken_over: bool) -> None:
        """The session's connection ended (``taken_over``: a new connection with the same client
        id replaced it, so presence must not go offline)."""


class DialectRouter:
    """Finds the dialect for a topic or filter; the broker is the fallback."""

    def __init__(self, broker: Dialect) -> None:
        self.broker = broker
        self.dialects: list[Dialect] = []
        self._cache: dict[str, Dialect] = {}

    def add(self, dialect: Dialect, *, first: bool = False) -> None:
        """Register a dialect; ``first`` puts it before those already registered."""
        if first:
            self.dialects.insert(0, dialect)
        else:
            self.dialects.append(dialect)
        self._cache.clear()

    @property
    def all(self) -> list[Dialect]:
        return [*self.dialects, self.broker]

    def for_topic(self, topic: str) -> Dialect:
        d = self._cache.get(topic)
        if d is not None:
            return d
        for dialect in self.dialects:
            if dialect.claims(topic):
                d = dialect
                break
        else:
            d = self.broker
        if len(self._cache) < 100_000:
            self._cache[topic] = d
        return d

    def for_filter(self, topic_filter: str) -> Dialect:
        """A filter belongs to a dialect when its literal part lies in the dialect's namespace."""
        if topic_filter.startswith("$share/"):
            return self.broker
        literal = topic_filter.split("+", 1)[0].split("#", 1)[0]
        for dialect in self.dialects:
            if dialect.claims(literal) or any(p.startswith(literal) and literal for p in dialect.prefixes):
                return dialect
        return self.broker
