"""`gatehub link`: device links on a running hub (they live in the hub process, so these
commands call its REST API; docs/devicelink.md).

The hub's URL defaults to ``http://127.0.0.1:<http_port>`` of the settings, the API key to
``$GATEHUB_API_KEY`` or the system admin key file of the data folder.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer

from gatehub.cli.common import ConfigOpt, JsonOpt, emit, err_console, settings_from

if TYPE_CHECKING:  # loaded by the link commands only, not by every start of the CLI
    import httpx

link_app = typer.Typer(help="Device links: TCP/UDP relays to devices (on a running hub)", no_args_is_help=True)

UrlOpt = typer.Option(None, "--url", help="Hub REST URL (default http://127.0.0.1:<http_port>)")
KeyOpt = typer.Option(None, "--api-key", help="API key (default $GATEHUB_API_KEY, else the admin key file)")
COLUMNS = ("id", "deviceIdentifier", "protocol", "port", "devicePort", "mode", "bytesIn", "bytesOut", "token")


def _client(config: str | None, url: str | None, api_key: str | None) -> httpx.Client:
    import httpx

    s = settings_from(config)
    if url is None:
        host = "127.0.0.1" if s.bind_host in ("0.0.0.0", "::", "") else s.bind_host
        url = f"http://{host}:{s.http_port}"
    key = api_key or os.environ.get("GATEHUB_API_KEY")
    if not key:
        try:
            key = s.admin_key_path.read_text().strip()
        except OSError:
            err_console.print(f"[red]error:[/red] no API key: use --api-key, $GATEHUB_API_KEY or {s.admin_key_path}")
            raise typer.Exit(2) from None
    return httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _call(config: str | None, url: str | None, api_key: str | None, method: str, path: str, **kw: Any) -> Any:
    import httpx

    with _client(config, url, api_key) as c:
        try:
            r = c.request(method, path, **kw)
        except httpx.HTTPError as exc:
            err_console.print(f"[red]error:[/red] cannot reach the hub at {c.base_url}: {exc}")
            raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            msg = f"{err['message']} ({err['code']})"
        except Exception:
            msg = r.text
        err_console.print(f"[red]error:[/red] {msg}")
        raise typer.Exit(2 if r.status_code < 500 else 1)
    return r.json() if r.content else None


@link_app.command("create")
def link_create(
    device: str = typer.Argument(..., help="Device identifier (case-insensitive)"),
    protocol: str = typer.Option("tcp", "--protocol", "-p", help="tcp or udp"),
    device_port: int = typer.Option(None, "--device-port", "-d", help="Port on the device"),
    timeout: int = typer.Option(None, "--timeout", help="ms without traffic before the link closes (0 = never)"),
    source: str = typer.Option(None, "--source", help="Only this client: HOST or HOST:PORT"),
    key: str = typer.Option(None, "--key", help="AES-256-CTR key, 64 hex digits"),
    iv: str = typer.Option(None, "--iv", help="AES-256-CTR initialization vector, 32 hex digits"),
    encryption_mode: str = typer.Option(
        None,
        "--encryption-mode",
        help="literal (default: CTR from key and IV, seed 002) or per-connection (numbered, safer)",
    ),
    config: str = ConfigOpt,
    url: str = UrlOpt,
    api_key: str = KeyOpt,
    json: bool = JsonOpt,
) -> None:
    """Open a link; prints the port clients connect to and the token that closes it."""
    body: dict[str, Any] = {"protocol": protocol}
    if device_port is not None:
        body["devicePort"] = device_port
    if timeout is not None:
        body["timeout"] = timeout
    if source:
        host, sep, port = source.rpartition(":") if source.count(":") == 1 else ("", "", "")
        if sep and port.isdigit():
            body["source"] = {"host": host, "port": int(port)}
        else:
            body["source"] = {"host": source.strip("[]")}
    if key or iv:
        if not (key and iv):
            err_console.print("[red]error:[/red] --key and --iv go together")
            raise typer.Exit(2)
        body["encrypt"] = {"key": key, "initializationVector": iv}
        if encryption_mode:
            body["encrypt"]["mode"] = encryption_mode
    elif encryption_mode:
        err_console.print("[red]error:[/red] --encryption-mode needs --key and --iv")
        raise typer.Exit(2)
    out = _call(config, url, api_key, "POST", f"/devicelink/{device}", json=body)
    emit(out, json, COLUMNS)


@link_app.command("list")
def link_list(
    tenant: str = typer.Option(None, "--tenant", "-t", help="Tenant id (a system admin key lists every tenant)"),
    device: str = typer.Option(None, "--device", help="Only the links of this device"),
    config: str = ConfigOpt,
    url: str = UrlOpt,
    api_key: str = KeyOpt,
    json: bool = JsonOpt,
) -> None:
    """The open links."""
    params = {k: v for k, v in (("tenantId", tenant), ("deviceIdentifier", device)) if v}
    out = _call(config, url, api_key, "GET", "/devicelink", params=params)
    emit(out["items"], json, COLUMNS, title="device links")


@link_app.command("delete")
def link_delete(token: str, config: str = ConfigOpt, url: str = UrlOpt, api_key: str = KeyOpt) -> None:
    """Close a link by its token."""
    _call(config, url, api_key, "DELETE", f"/devicelink/{token}")
    typer.echo("closed")
