"""The event loop every gatehub process runs on: uvloop when it is installed.

Its own module so that the gateway agent starts without importing the hub (the store,
SQLAlchemy, the HTTP API)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable


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
