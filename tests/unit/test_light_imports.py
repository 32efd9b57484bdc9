"""Processes that do not need the hub's store must not pay for it: ``gatehub agent`` runs on
gateways (small hardware) and the CLI starts for every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "asyncpg", "fastapi")


@pytest.mark.parametrize(
    "modules",
    [
        "gatehub.cli.main",  # every CLI command imports this first
        "gatehub.cli.agent, gatehub.agent",  # all that `gatehub agent run` imports
    ],
)
def test_no_store_on_import(modules: str) -> None:
    code = f"import sys, {modules}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"importing {modules} loaded {out.stdout.strip()}"
