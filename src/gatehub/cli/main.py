"""The `gatehub` command."""

from __future__ import annotations

import logging
from typing import Any

import typer
from typer.core import TyperCommand

import gatehub
from gatehub.cli import cert, devicelink, manage, provisioning, telemetry
from gatehub.cli.agent import agent_app
from gatehub.cli.common import ConfigOpt, err_console, settings_from
from gatehub.cli.demo import demo
from gatehub.errors import ConfigError

app = typer.Typer(
    help="gatehub: a self-hosted IoT gateway hub", no_args_is_help=True, pretty_exceptions_show_locals=False
)
app.add_typer(manage.tenant_app, name="tenant")
app.add_typer(manage.customer_app, name="customer")
app.add_typer(manage.apikey_app, name="apikey")
app.add_typer(manage.product_app, name="product")
app.add_typer(manage.gateway_app, name="gateway")
app.add_typer(manage.device_app, name="device")
app.add_typer(telemetry.telemetry_app, name="telemetry")
app.add_typer(cert.cert_app, name="cert")
assert provisioning.__name__  # its commands join the product, gateway and device groups
app.add_typer(agent_app, name="agent")
app.command()(demo)
app.add_typer(devicelink.link_app, name="link")


def _settings_help() -> str:
    from gatehub.config import describe_settings

    lines = [
        "Settings (environment variable, default) — set with --set NAME=VALUE, the environment or a TOML file:\n\n"
    ]
    for name, env, default, desc in describe_settings():
        lines.append(f"{name} ({env}, default {default}): {desc}\n\n")
    return "".join(lines)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--set takes NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


class _ServeCommand(TyperCommand):
    """``serve``: its epilog (every setting) is built when help is shown, so that starting the
    CLI for any other command does not load the settings model."""

    @property
    def epilog(self) -> str:
        return _settings_help()

    @epilog.setter
    def epilog(self, _value: str | None) -> None:
        pass


@app.command(cls=_ServeCommand)
def serve(
    config: str = ConfigOpt,
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a setting: NAME=VALUE (repeatable)"),
    data_dir: str = typer.Option(None, help="Data folder (default ./var)"),
    database_url: str = typer.Option(None, help="Database URL (default SQLite in the data folder)"),
    http_port: int = typer.Option(None, help="REST API port (default 8080; 0 = any free port)"),
    bind_host: str = typer.Option(None, help="Address to bind (default 0.0.0.0)"),
) -> None:
    """Start a hub node on the embedded defaults (SQLite in ./var) or the given settings."""
    overrides = _parse_sets(set_)
    for name, value in (
        ("data_dir", data_dir),
        ("database_url", database_url),
        ("http_port", http_port),
        ("bind_host", bind_host),
    ):
        if value is not None:
            overrides[name] = value
    try:
        settings = settings_from(config, overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # alembic (1.17+) logs a line per built-in plugin at INFO on every start: noise; migrations still log
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from gatehub.app.node import run_loop
    from gatehub.app.node import serve as serve_node

    run_loop(serve_node(settings))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(gatehub.__version__)
