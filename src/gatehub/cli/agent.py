"""`gatehub agent`: the gateway agent daemon (``run``) and a look at its persistent state (``lists``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import typer

from gatehub.cli.common import JsonOpt, emit, err_console
from gatehub.errors import ConfigError
from gatehub.loop import run_loop

agent_app = typer.Typer(help="The gateway agent: run it on a gateway, next to its access network", no_args_is_help=True)
AgentConfigOpt = typer.Option(
    ..., "--config", "-c", help="agent.toml (see docs/agent.md)", envvar="GATEHUB_AGENT_CONFIG"
)


def _load(config: str) -> Any:
    try:
        from gatehub.agent import load_agent_config
    except ImportError as exc:
        err_console.print(f"[red]error:[/red] the agent needs its extra: pip install 'gatehub[agent]' ({exc})")
        raise typer.Exit(2) from None
    try:
        return load_agent_config(config)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None


async def run_until_signal(main: Any) -> None:
    """Run ``main`` (a coroutine) until SIGINT/SIGTERM, then cancel it (a graceful stop)."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass


@agent_app.command("run")
def agent_run(config: str = AgentConfigOpt) -> None:
    """Connect this gateway to its hub and serve its sub-devices until stopped (SIGINT/SIGTERM)."""
    cfg = _load(config)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gatehub.agent import Agent

    try:
        agent = Agent(cfg)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    run_loop(run_until_signal(agent.run()))
    typer.echo("agent stopped")


@agent_app.command("lists")
def agent_lists(config: str = AgentConfigOpt, json: bool = JsonOpt) -> None:
    """The persistent lists of an agent's state file (LocalTopoList, RemovedDevList) and its outbox.
    LocalDevList lives in the running agent's memory only."""
    cfg = _load(config)
    path: Path = cfg.state.path
    if not path.exists():
        err_console.print(f"[red]error:[/red] no agent state at {path}")
        raise typer.Exit(1)

    async def go() -> dict[str, Any]:
        from gatehub.agent.state import LocalState

        st = await LocalState.open(path)
        try:
            batches, readings = await st.backlog()
            return {
                "LocalTopoList": [e.public() for e in sorted(st.topo.values(), key=lambda e: e.name)],
                "RemovedDevList": [
                    {"name": r.name, "uid": r.uid, "removedAt": r.removed_at} for r in st.removed.values()
                ],
                "outbox": {"epoch": st.epoch, "batches": batches, "readings": readings},
            }
        finally:
            await st.close()

    data = asyncio.run(go())
    if json:
        emit(data, True)
        return
    emit(data["LocalTopoList"], False, ["name", "uid", "model", "productKey", "hubId", "hasSecret"], "LocalTopoList")
    emit(data["RemovedDevList"], False, ["name", "uid", "removedAt"], "RemovedDevList")
    emit(data["outbox"], False, title="outbox")
