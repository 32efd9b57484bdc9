"""The plain broker: every topic that no other dialect claims.

Routing with ``+``/``#`` (``$``-topics are not matched by leading wildcards), retained messages
(kept per tenant, cleared by an empty payload), offline queues for persistent sessions (through
the hub's stored sessions), shared subscriptions (``$share/group/filter``, one member per group,
round robin, live members first), subscription options (noLocal, retainAsPublished,
retainHandling) and subscription identifiers. Every topic lives inside the client's tenant: each
tenant has its own subscription trie and retained store, so a client of tenant A can never see
tenant B's messages.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

from gatehub.protocols.mqtt import Publish, Subscription, SubscriptionTrie, Will
from gatehub.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties, PropertyId
from gatehub.protocols.mqtt.topics import parse_shared, topic_matches
from gatehub.transports.mqtt.contracts import HubLike, SessionLike
from gatehub.transports.mqtt.dialect import AckResult, Dialect

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SubOptions:
    sub: Subscription
    sub_id: int | None


@dataclass(slots=True)
class Retained:
    payload: bytes
    qos: int
    properties: Properties
    expires_at: float = 0.0  # Message Expiry deadline (time.monotonic), 0.0 for none


def expiry_deadline(properties: Properties) -> float:
    """The monotonic deadline of a message's Message Expiry Interval, 0.0 without one (or 0)."""
    if properties:
        interval = properties.message_expiry_interval
        if interval:
            return time.monotonic() + interval
    return 0.0


class Broker(Dialect[SessionLike]):
    name = "broker"

    def __init__(self, retained_max: int = 100_000) -> None:
        self.hub: HubLike | None = None
        self.tries: dict[str, SubscriptionTrie[str, SubOptions]] = {}
        self.retained: dict[str, dict[str, Retained]] = {}
        self.retained_max = retained_max
        self._rr = itertools.count()
        self.delivered = 0
        self.dropped = 0

    def claims(self, topic: str) -> bool:
        return True

    # inbound ----------------------------------------------------------------------------------
    def on_publish(self, session: SessionLike, packet: Publish) -> AckResult:
        p = session.principal
        assert p is not None
        tenant = p.tenant_id
        props = packet.properties
        expires_at = 0.0 if props is EMPTY_PROPERTIES else expiry_deadline(props)  # MQTT 3.1.1: always empty
        if packet.retain:
            self._retain(tenant, packet.topic, packet.payload, packet.qos, props, expires_at)
        n = self.route(
            tenant,
            packet.topic,
            packet.payload,
            packet.qos,
            packet.retain,
            props,
            sender=session.client_id,
            expires_at=expires_at,
        )
        if not packet.qos:
            return None
        return 0 if n or session.conn.version != 5 else 0x10  # 0x10: no matching subscribers

    def on_subscribe(self, session: SessionLike, sub: Subscription, subscription_id: int | None) -> int:
        p = session.principal
        assert p is not None and session.client_id is not None
        tenant = p.tenant_id
        trie = self.tries.setdefault(tenant, SubscriptionTrie())
        is_new = trie.add(sub.topic_filter, session.client_id, SubOptions(sub, subscription_id))
        group, plain = parse_shared(sub.topic_filter)
        if group is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and is_new)):
            self._send_retained(session, tenant, plain, sub, subscription_id)
        return sub.qos

    def on_unsubscribe(self, session: SessionLike, topic_filter: str) -> int:
        p = session.principal
        assert p is not None and session.client_id is not None
        trie = self.tries.get(p.tenant_id)
        if trie is None or not trie.remove(topic_filter, session.client_id):
            return 0x11
        return 0

    # routing ----------------------------------------------------------------------------------
    def route(
        self,
        tenant: str,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties = EMPTY_PROPERTIES,
        sender: str | None = None,
        expires_at: float = 0.0,
    ) -> int:
        """Deliver to every matching subscription of ``tenant``; returns how many got it.
        ``expires_at``: the Message Expiry deadline (:func:`expiry_deadline`), 0.0 for none."""
        trie = self.tries.get(tenant)
        if trie is None or self.hub is None:
            return 0
        matches = trie.match(topic)
        hub = self.hub
        # one delivery per client: the highest QoS of its matching subscriptions, every identifier
        per_client: dict[str, tuple[int, bool, list[int]]] = {}
        for client, opts, _filter in matches.direct:
            sub = opts.sub
            if sub.no_local and client == sender:
                continue
            q = min(qos, sub.qos)
            r = retain and sub.retain_as_published
            prev = per_client.get(client)
            if prev is None:
                per_client[client] = (q, r, [opts.sub_id] if opts.sub_id else [])
            else:
                ids = prev[2] + ([opts.sub_id] if opts.sub_id else [])
                per_client[client] = (max(prev[0], q), prev[1] or r, ids)
        n = 0
        for client, (q, r, ids) in per_client.items():
            res = hub.deliver(
                (tenant, client),
                topic,
                payload,
                q,
                r,
                properties=properties,
                subscription_identifiers=tuple(ids),
                expires_at=expires_at,
            )
            n += self._count(res.accepted)
        for (_group, _filter), members in matches.shared.items():
            n += self._deliver_shared(tenant, topic, payload, qos, retain, properties, members, expires_at)
        return n

    def _deliver_shared(
        self,
        tenant: str,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        members: list[tuple[str, SubOptions]],
        expires_at: float = 0.0,
    ) -> int:
        assert self.hub is not None
        live = [m for m in members if (tenant, m[0]) in self.hub.live]
        pool = live or members
        start = next(self._rr) % len(pool)
        for i in range(len(pool)):
            client, opts = pool[(start + i) % len(pool)]
            q = min(qos, opts.sub.qos)
            res = self.hub.deliver(
                (tenant, client),
                topic,
                payload,
                q,
                retain and opts.sub.retain_as_published,
                properties=properties,
                subscription_identifiers=(opts.sub_id,) if opts.sub_id else (),
                expires_at=expires_at,
            )
            if res.accepted:
                return self._count(True)
        return self._count(False)

    def _count(self, ok: bool) -> int:
        if ok:
            self.delivered += 1
            return 1
        self.dropped += 1
        return 0

    # retained ---------------------------------------------------------------------------------
    def _retain(
        self, tenant: str, topic: str, payload: bytes, qos: int, properties: Properties, expires_at: float = 0.0
    ) -> None:
        store = self.retained.setdefault(tenant, {})
        if not payload:
            store.pop(topic, None)
            return
        if topic not in store and len(store) >= self.retained_max:
            log.warning("tenant %s has %d retained messages (the limit); %s not retained", tenant, len(store), topic)
            return
        store[topic] = Retained(payload, qos, properties, expires_at)

    def _send_retained(
        self, session: SessionLike, tenant: str, topic_filter: str, sub: Subscription, sub_id: int | None
    ) -> None:
        store = self.retained.get(tenant)
        if not store:
            return
        now = time.monotonic()
        for topic, msg in list(store.items()):
            if msg.expires_at and msg.expires_at <= now:
                del store[topic]  # expired: no longer retained (MQTT 5 3.3.2.3.3)
                continue
            if topic_matches(topic_filter, topic):
                session.send(
                    topic,
                    msg.payload,
                    min(msg.qos, sub.qos),
                    True,
                    properties=msg.properties,
                    subscription_identifiers=(sub_id,) if sub_id else (),
                    expires_at=msg.expires_at,
                )

    # session hooks ----------------------------------------------------------------------------
    def session_ended(self, tenant: str, client_id: str) -> None:
        trie = self.tries.get(tenant)
        if trie is not None:
            trie.remove_subscriber(client_id)

    def publish_will(self, tenant: str, client_id: str | None, will: Will) -> None:
        props = will.properties
        if props.will_delay_interval is not None:  # a will property, not allowed in PUBLISH
            props = props.without(PropertyId.WILL_DELAY_INTERVAL)
        expires_at = expiry_deadline(props)
        if will.retain:
            self._retain(tenant, will.topic, will.payload, will.qos, props, expires_at)
        self.route(tenant, will.topic, will.payload, will.qos, will.retain, props, sender=None, expires_at=expires_at)
