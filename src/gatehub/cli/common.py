"""Shared pieces of the command line: settings, a store opened for one command, output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from gatehub.errors import GatehubError

if TYPE_CHECKING:  # the settings (pydantic) and the store (SQLAlchemy) load only for commands that use them
    from gatehub.config import Settings
    from gatehub.store import IngestWriter, Store

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error message is never cut into lines

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML settings file", envvar="GATEHUB_CONFIG")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of a table")
TenantOpt = typer.Option(..., "--tenant", "-t", help="Tenant id")


def settings_from(config: str | None, overrides: dict[str, Any] | None = None) -> Settings:
    from gatehub.config import load_settings

    return load_settings(config, overrides)


@asynccontextmanager
async def opened_store(
    settings: Settings, with_writer: bool = False
) -> AsyncIterator[tuple[Store, IngestWriter | None]]:
    from gatehub.services.ingest import commit_publisher
    from gatehub.store import Database, IngestWriter, Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.open(settings.effective_database_url)
    writer: IngestWriter | None = None
    try:
        await db.migrate()
        store = Store(db)
        if with_writer:
            from gatehub.bus import LocalBus

            writer = IngestWriter(settings.effective_database_url, on_commit=commit_publisher(LocalBus()))
            await writer.start()
        yield store, writer
    finally:
        if writer is not None:
            await writer.close()
        await db.close()


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine; gatehub errors become a red line and exit code 1 (2 for input)."""
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except GatehubError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2 if exc.code in {"invalid_input", "not_found", "already_exists", "conflict"} else 1) from None


def emit(
    data: Any,
    as_json: bool,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    secrets: Sequence[str] = (),
) -> None:
    """Print a dict or a list of dicts: JSON for scripts, a table for people.

    ``secrets`` (keys, tokens, passwords shown once) are printed whole on lines of their own
    under the table, never inside a cell that a narrow terminal would wrap."""
    if as_json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        console.print("[dim](none)[/dim]")
        return
    cols = [c for c in (columns or rows[0].keys()) if c not in secrets]
    table = Table(title=title)
    for c in cols:
        table.add_column(c, overflow="fold")  # never cut a value
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in cols))
    console.print(table)
    for r in rows:
        for name in secrets:
            if r.get(name) is not None:
                typer.echo(f"{name}: {r[name]}")
