"""--event-loop really selects the loop: async tests, async fixtures and the helper for
tests that run a loop of their own all get the kind it names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import event_loop_factory, event_loop_name


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    import uvloop

    return isinstance(loop, uvloop.Loop)


@pytest.fixture
async def fixture_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    yield asyncio.get_running_loop()


async def test_running_loop_is_the_one_the_option_names(fixture_loop: asyncio.AbstractEventLoop) -> None:
    loop = asyncio.get_running_loop()
    assert fixture_loop is loop
    if event_loop_name() == "uvloop":
        assert _is_uvloop(loop), f"--event-loop=uvloop but the test runs on {type(loop)}"
    else:
        assert event_loop_name() == "asyncio"
        assert not _is_uvloop(loop), f"--event-loop=asyncio but the test runs on {type(loop)}"
        assert type(loop).__module__.startswith("asyncio"), type(loop)


def test_own_loops_follow_the_option() -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        loop = runner.get_loop()
        assert _is_uvloop(loop) == (event_loop_name() == "uvloop"), type(loop)
