"""The in-process bus: a single node's components talk through it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gatehub.bus.base import Bus, Envelope, Handler, Message, Subscription, subject_matches


class LocalBus(Bus):
    _CACHE_MAX = 100_000

    def __init__(self) -> None:
        self._exact: dict[str, list[Subscription]] = {}
        self._wild: list[Subscription] = []
        self._handlers: dict[str, Handler] = {}
        # has_subscribers answers per subject, valid until a subscription comes or goes: the
        # ingest writer asks for every device of every commit, and matching each subject against
        # every wildcard subscription each time cost more than the rest of the commit publisher
        self._listened: dict[str, bool] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for sub in [s for subs in self._exact.values() for s in subs] + list(self._wild):
            sub.close()

    def publish(self, subject: str, data: Message) -> None:
        env = Envelope(subject, data)
        for sub in list(self._exact.get(subject, ())):
            sub.offer(env)
        for sub in list(self._wild):
            if subject_matches(sub.pattern, subject):
                sub.offer(env)

    def has_subscribers(self, subject: str) -> bool:
        known = self._listened.get(subject)
        if known is not None:
            return known
        found = bool(self._exact.get(subject)) or any(subject_matches(s.pattern, subject) for s in self._wild)
        if len(self._listened) >= self._CACHE_MAX:
            self._listened.clear()
        self._listened[subject] = found
        return found

    def subscribe(self, pattern: str, maxsize: int = 1000) -> Subscription:
        sub = Subscription(pattern, maxsize, self._remove)
        self._listened.clear()
        if "*" in pattern.split(".") or ">" in pattern.split("."):
            self._wild.append(sub)
        else:
            self._exact.setdefault(pattern, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._listened.clear()
        if sub in self._wild:
            self._wild.remove(sub)
            return
        subs = self._exact.get(sub.pattern)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._exact[sub.pattern]

    def serve(self, subject: str, handler: Handler) -> Callable[[], None]:
        if subject in self._handlers:
            raise ValueError(f"{subject} is already served")
        self._handlers[subject] = handler

        def stop() -> None:
            if self._handlers.get(subject) is handler:
                del self._handlers[subject]

        return stop

    async def request(self, subject: str, data: Message, timeout: float) -> Message:
        handler = self._handlers.get(subject)
        if handler is None:
            raise LookupError(f"nobody serves {subject}")
        return await asyncio.wait_for(handler(subject, data), timeout)
