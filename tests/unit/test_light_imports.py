"""Processes that do not need the hub's store must not pay for it: ``gatehub agent`` runs on
gateways (small hardware) and the CLI starts for every command, so each command imports only
what it uses (issue 19 #6e)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "alembic", "asyncpg", "fastapi")
# what no command that does not serve, call a hub or handle certificates needs
SERVER_SIDE = (
    "fastapi",
    "starlette",
    "uvicorn",
    "grpc",
    "alembic",
    "asyncpg",
    "cryptography",
    "httpx",
    "jwt",
    "uvloop",
)


def _loaded(code: str, wanted: tuple[str, ...], env: dict[str, str] | None = None) -> list[str]:
    probe = f"{code}\nimport sys\nprint('LOADED:' + ','.join(m for m in {wanted!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, env=env)
    line = out.stdout.rpartition("LOADED:")[2].strip()
    return [m for m in line.split(",") if m]


@pytest.mark.parametrize(
    "modules",
    [
        "gatehub.cli.main",  # every CLI command imports this first
        "gatehub.cli.agent, gatehub.agent",  # all that `gatehub agent run` imports
    ],
)
def test_no_store_on_import(modules: str) -> None:
    assert _loaded(f"import {modules}", HEAVY) == [], f"importing {modules} loaded the store"


def test_cli_import_loads_no_server_side_module() -> None:
    loaded = _loaded("import gatehub.cli.main", (*SERVER_SIDE, "sqlalchemy", "pydantic_settings"))
    assert loaded == [], f"importing the CLI loaded {loaded}"


def _command(args: list[str]) -> str:
    return (
        "import sys\n"
        f"sys.argv = ['gatehub', *{args!r}]\n"
        "from gatehub.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
    )


def test_help_loads_neither_store_nor_settings() -> None:
    loaded = _loaded(_command(["tenant", "list", "--help"]), (*SERVER_SIDE, "sqlalchemy", "pydantic_settings"))
    assert loaded == [], f"`gatehub tenant list --help` loaded {loaded}"


def test_a_store_command_loads_no_server_side_module(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
    env.update({"GATEHUB_DATA_DIR": str(tmp_path / "var"), "GATEHUB_CONFIG": ""})
    first = _loaded(_command(["tenant", "create", "acme"]), ("alembic",), env)
    assert first == ["alembic"]  # a new database is migrated
    for args in (["tenant", "list"], ["device", "list", "-t", "acme"], ["telemetry", "count", "x", "-t", "acme"]):
        loaded = _loaded(_command(args), SERVER_SIDE, env)
        assert loaded == [], f"`gatehub {' '.join(args)}` loaded {loaded}"


def test_head_revision_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from gatehub.store.db import alembic_config, head_revision

    assert [head_revision()] == ScriptDirectory.from_config(alembic_config()).get_heads()
