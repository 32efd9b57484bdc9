"""A subscription trie: which subscriptions match a topic, in time proportional to its levels.

Keys are opaque subscriber ids (any hashable); each subscription carries per-subscription options
(any value, typically a :class:`~gatehub.protocols.mqtt.packets.Subscription`). Shared
subscriptions (``$share/{group}/{filter}``) are kept apart and returned grouped by
(group, filter) so that the broker can pick one member per group.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, NamedTuple, TypeVar

from .topics import parse_shared

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Node(Generic[K, V]):
    __slots__ = ("children", "filter", "shared", "subs")

    def __init__(self, topic_filter: str) -> None:
        self.children: dict[str, _Node[K, V]] = {}
        self.subs: dict[K, V] = {}
        self.shared: dict[str, dict[K, V]] = {}
        self.filter = topic_filter

    def empty(self) -> bool:
        return not (self.children or self.subs or self.shared)


class Matches(NamedTuple, Generic[K, V]):
    """Result of :meth:`SubscriptionTrie.match`.

    ``direct``: (subscriber, options, filter) of every matching non-shared subscription; one
    subscriber appears once per matching filter (MQTT 5 lets the server merge them).
    ``shared``: {(group, filter): [(subscriber, options), ...]} for matching shared subscriptions.
    """

    direct: list[tuple[K, V, str]]
    shared: dict[tuple[str, str], list[tuple[K, V]]]


class SubscriptionTrie(Generic[K, V]):
    __slots__ = ("_by_subscriber", "_count", "_root")

    def __init__(self) -> None:
        self._root: _Node[K, V] = _Node("")
        self._by_subscriber: dict[K, set[str]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, subscriber: K, options: V) -> bool:
        """Add or replace a subscription; True if it is new, False if it replaced one."""
        group, plain = parse_shared(topic_filter)
        node = self._root
        for level in plain.split("/"):
            child = node.children.get(level)
            if child is None:
                prefix = f"{node.filter}/{level}" if node is not self._root else level
                child = node.children[level] = _Node(prefix)
            node = child
        table = node.subs if group is None else node.shared.setdefault(group, {})
        new = subscriber not in table
        table[subscriber] = options
        if new:
            self._count += 1
            self._by_subscriber.setdefault(subscriber, set()).add(topic_filter)
        return new

    def remove(self, topic_filter: str, subscriber: K) -> bool:
        """Remove a subscription; True if it existed."""
        group, plain = parse_shared(topic_filter)
        path = [self._root]
        node = self._root
        levels = plain.split("/")
        for level in levels:
            child = node.children.get(level)
            if child is None:
                return False
            path.append(child)
            node = child
        if group is None:
            table = node.subs
        else:
            found = node.shared.get(group)
            if found is None:
                return False
            table = found
        if subscriber not in table:
            return False
        del table[subscriber]
        if group is not None and not table:
            del node.shared[group]
        self._count -= 1
        filters = self._by_subscriber[subscriber]
        filters.discard(topic_filter)
        if not filters:
            del self._by_subscriber[subscriber]
        for i in range(len(levels), 0, -1):
            if not path[i].empty():
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def remove_subscriber(self, subscriber: K) -> int:
        """Remove every subscription of ``subscriber``; returns how many there were."""
        filters = list(self._by_subscriber.get(subscriber, ()))
        for topic_filter in filters:
            self.remove(topic_filter, subscriber)
        return len(filters)

    def subscriptions_of(self, subscriber: K) -> frozenset[str]:
        return frozenset(self._by_subscriber.get(subscriber, ()))

    def get(self, topic_filter: str, subscriber: K) -> V | None:
        group, plain = parse_shared(topic_filter)
        node = self._root
        for level in plain.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        table = node.subs if group is None else node.shared.get(group, {})
        return table.get(subscriber)

    def __iter__(self) -> Iterator[tuple[str, K, V]]:
        """Every subscription as (full topic filter, subscriber, options)."""
        stack = [self._root]
        while stack:
            node = stack.pop()
            for sub, opts in node.subs.items():
                yield node.filter, sub, opts
            for group, table in node.shared.items():
                for sub, opts in table.items():
                    yield f"$share/{group}/{node.filter}", sub, opts
            stack.extend(node.children.values())

    def match(self, topic: str) -> Matches[K, V]:
        found: list[_Node[K, V]] = []
        nodes = [self._root]
        wild_ok = not topic.startswith("$")  # [MQTT-4.7.2-1]
        for level in topic.split("/"):
            following: list[_Node[K, V]] = []
            for node in nodes:
                children = node.children
                if not children:
                    continue
                if wild_ok:
                    multi = children.get("#")
                    if multi is not None:
                        found.append(multi)
                    single = children.get("+")
                    if single is not None:
                        following.append(single)
                exact = children.get(level)
                if exact is not None:
                    following.append(exact)
            wild_ok = True
            nodes = following
            if not nodes:
                break
        for node in nodes:
            found.append(node)
            multi = node.children.get("#")  # "a/#" also matches "a"
            if multi is not None:
                found.append(multi)
        direct: list[tuple[K, V, str]] = []
        shared: dict[tuple[str, str], list[tuple[K, V]]] = {}
        for node in found:
            if node.subs:
                f = node.filter
                direct.extend([(k, v, f) for k, v in node.subs.items()])
            if node.shared:
                for group, table in node.shared.items():
                    shared[(group, node.filter)] = list(table.items())
        return Matches(direct, shared)
