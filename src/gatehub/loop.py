"""The event loop every gatehub process runs on: uvloop when it is installed.

Its own module so that the gateway agent starts without importing the hub (the store,
SQLAlchemy, the HTTP API)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable
from typing import Any


def run_loop(coro: Awaitable[None]) -> None:
    """Run with uvloop when it is installed."""
    try:
        import uvloop

        if sys.version_info >= (3, 12):
            uvloop.run(coro)
            return
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (when there is one) and wait until it has ended: how a component's
    ``stop()`` ends the one background task its ``start()`` made."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
