"""The Bus interface, independent of what carries it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]
Handler = Callable[[str, Message], Awaitable[Message]]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS-style matching: ``*`` is one token, ``>`` one or more trailing tokens."""
    pt = pattern.split(".")
    st = subject.split(".")
    for i, tok in enumerate(pt):
        if tok == ">":
            return len(st) > i
        if i >= len(st):
            return False
        if tok != "*" and tok != st[i]:
            return False
    return len(pt) == len(st)


@dataclass(slots=True)
class Envelope:
    subject: str
    data: Message


class Subscription:
    """A bounded stream of messages for one pattern. Iterate it; close it when done."""

    def __init__(self, pattern: str, maxsize: int, on_close: Callable[[Subscription], None]) -> None:
        self.pattern = pattern
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=maxsize)
        self._on_close = on_close
        self.closed = False
        self.overflowed = False

    def offer(self, env: Envelope) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(env)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._on_close(self)
        # wake a waiting reader; drop one queued item if needed to make room for the sentinel
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> Envelope | None:
        """The next message, or None when the subscription is closed (or on timeout)."""
        try:
            env = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        return env

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Envelope]:
        while True:
            env = await self._queue.get()
            if env is None:
                return
            yield env


class Bus(ABC):
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def publish(self, subject: str, data: Message) -> None:
        """Deliver to every matching subscription now (fire and forget, never blocks)."""

    @abstractmethod
    def subscribe(self, pattern: str, maxsize: int = 1000) -> Subscription: ...

    @abstractmethod
    def has_subscribers(self, subject: str) -> bool:
        """Cheap check so that hot paths skip building messages nobody reads."""

    @abstractmethod
    def serve(self, subject: str, handler: Handler) -> Callable[[], None]:
        """Answer requests on ``subject`` (exact); returns a function that stops serving."""

    @abstractmethod
    async def request(self, subject: str, data: Message, timeout: float) -> Message:
        """Send a request and wait for the reply; raises TimeoutError, or LookupError when
        nobody serves the subject."""
