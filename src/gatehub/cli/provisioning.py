"""Commands for thing models, whitelists, topology and presence (added to the product, gateway
and device groups of ``manage``).

They work on the hub's database like the other management commands. A topology change made here
is stored and logged at once; a running hub's gateways learn it when they next read their
topology (Alink ``thing/topo/get``), since this process has no connection to their sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.tree import Tree

from gatehub.cli.common import ConfigOpt, JsonOpt, TenantOpt, console, emit, opened_store, run, settings_from
from gatehub.cli.manage import device_app, gateway_app, product_app
from gatehub.domain.model import Device
from gatehub.domain.provisioning import parse_whitelist
from gatehub.errors import InvalidInput

if TYPE_CHECKING:
    from gatehub.store.topology import TopologyResult


@product_app.command("model-export")
def model_export(
    product_id: str,
    tenant: str = TenantOpt,
    out: Path = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout"),
    config: str = ConfigOpt,
) -> None:
    """Print (or save) a product's thing model as JSON."""

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return (await st.catalog.get_product(tenant, product_id)).thing_model

    text = orjson.dumps(run(go), option=orjson.OPT_INDENT_2).decode()
    if out is not None:
        out.write_text(text + "\n")
        typer.echo(f"wrote the thing model of {product_id} to {out}", err=True)
    else:
        typer.echo(text)


@product_app.command("model-import")
def model_import(product_id: str, file: typer.FileText, tenant: str = TenantOpt, config: str = ConfigOpt) -> None:
    """Replace a product's thing model with the JSON in FILE (checked first; nothing changes if
    it is malformed)."""
    try:
        model = orjson.loads(file.read())
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"the thing model is not JSON: {exc}") from None

    async def go() -> Any:
        if not isinstance(model, dict):
            raise InvalidInput("a thing model is a JSON object")
        async with opened_store(settings_from(config)) as (st, _):
            return await st.catalog.update_product(tenant, product_id, thing_model=model)

    prod = run(go)
    m = prod.thing_model
    typer.echo(
        f"imported the thing model of {product_id}: {len(m.get('properties') or [])} properties, "
        f"{len(m.get('events') or [])} events, {len(m.get('services') or [])} services"
    )


@product_app.command("whitelist")
def whitelist(
    product_id: str,
    file: typer.FileText,
    tenant: str = TenantOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Pre-register device names for a product from a CSV file (deviceName[,deviceId][,deviceSecret]
    with a header, or one name per line)."""
    text = file.read()

    async def go() -> Any:
        rows, errors = parse_whitelist(text)
        async with opened_store(settings_from(config)) as (st, _):
            res = await st.provisioning.import_whitelist(tenant, product_id, rows)
        return {
            "created": [d.name for d in res.created],
            "existing": res.existing,
            "errors": [
                {"line": e.line, "message": e.message} for e in sorted([*errors, *res.errors], key=lambda e: e.line)
            ],
        }

    out = run(go)
    if json:
        emit(out, True)
        return
    typer.echo(
        f"created {len(out['created'])}, already registered {len(out['existing'])}, refused {len(out['errors'])}"
    )
    for e in out["errors"]:
        typer.echo(f"  line {e['line']}: {e['message']}", err=True)


@gateway_app.command("topology")
def topology(gateway_id: str, tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    """The gateway and its sub-devices as a tree, with presence and the topology version."""

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            view = await st.topology.get(tenant, gateway_id)
        return {**_node(view.gateway), "topologyVersion": view.version, "children": [_node(c) for c in view.children]}

    tree = run(go)
    if json:
        emit(tree, True)
        return
    root = Tree(
        f"[bold]{tree['id']}[/bold] ({tree['productId']}) {tree['presence']}, version {tree['topologyVersion']}"
    )
    for c in tree["children"]:
        root.add(f"{c['id']} ({c['productId']}) {c['presence']}")
    console.print(root)


def _node(d: Device) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "productId": d.product_id, "presence": d.presence.value}


def _changed(res: TopologyResult, what: str) -> dict[str, Any]:
    return {
        "gatewayId": res.gateway_id,
        "topologyVersion": res.version,
        what: [d.id for d in (res.added if what == "added" else res.removed)],
        "refused": [{"deviceId": r.ref.label(), "reason": r.reason.value, "message": r.message} for r in res.refused],
    }


@gateway_app.command("attach")
def attach(
    gateway_id: str,
    device_ids: list[str],
    tenant: str = TenantOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Add sub-devices to a gateway's topology (as an operator: no credentials needed)."""

    async def go() -> Any:
        from gatehub.store.topology import SubRef

        async with opened_store(settings_from(config)) as (st, _):
            refs = [SubRef(device_id=d) for d in device_ids]
            return _changed(await st.topology.add(tenant, gateway_id, refs, trusted=True, source="cli"), "added")

    out = run(go)
    emit(out, json)
    if out["refused"]:
        raise typer.Exit(2)


@gateway_app.command("detach")
def detach(
    gateway_id: str,
    device_ids: list[str],
    tenant: str = TenantOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Remove sub-devices from a gateway's topology."""

    async def go() -> Any:
        from gatehub.store.topology import SubRef

        async with opened_store(settings_from(config)) as (st, _):
            refs = [SubRef(device_id=d) for d in device_ids]
            return _changed(await st.topology.remove(tenant, gateway_id, refs, source="cli"), "removed")

    out = run(go)
    emit(out, json)
    if out["refused"]:
        raise typer.Exit(2)


@device_app.command("presence")
def presence(device_id: str, tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    """online, offline or offline-gateway (offline because its gateway is), and when last seen."""

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            d = await st.devices.get(tenant, device_id)
            out = {"deviceId": d.id, "presence": d.presence.value, "lastSeen": d.last_seen, "gatewayId": d.parent_id}
            if d.parent_id:
                out["gatewayPresence"] = (await st.devices.get(tenant, d.parent_id)).presence.value
            return out

    emit(run(go), json)
