"""Running the gateway agent against a real hub in tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from gatehub.agent import Agent, agent_config
from gatehub.agent.config import AgentConfig
from gatehub.agent.drivers.simulator import SimulatorDriver
from tests.interop.tbhub import GW_TOKEN


def agent_cfg(port: int, state: Path, token: str = GW_TOKEN, **extra: Any) -> AgentConfig:
    raw: dict[str, Any] = {
        "hub": {"host": "127.0.0.1", "port": port, "access_token": token, "reconnect_min": 0.2, "reconnect_max": 1.0},
        "state": {"path": str(state)},
        "outbox": {"flush_interval": 0.05},
    }
    for k, v in extra.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    return agent_config(raw)


def device(uid: str, model: str = "thermo", **keys: Any) -> dict[str, Any]:
    return {"uid": uid, "model": model, "keys": keys or {"t": {"kind": "walk", "min": 18, "max": 26}}}


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, sim: SimulatorDriver) -> AsyncIterator[Agent]:
    agent = Agent(cfg, [sim])
    async with agent:
        yield agent


async def until(check: Callable[[], Awaitable[Any]] | Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what or check} (last: {last!r})")


async def synced(agent: Agent, timeout: float = 20.0) -> None:
    """Connected, reconciled, and every event handled."""
    await asyncio.wait_for(agent.reconciled.wait(), timeout)
    await asyncio.wait_for(agent.settled(), timeout)


def names(agent: Agent, which: str) -> list[str]:
    return [e["name"] for e in agent.lists()[which]]
