"""`gatehub demo`: a hub and a gateway agent with simulated sub-devices, in one command.

The hub runs on the embedded defaults (SQLite in ``--data-dir``, REST on 8080, MQTT on 1883) with
a tenant ``demo``, a gateway ``demo-gw`` and three sub-device products. The agent connects to it
over MQTT like any gateway would and proxies a thermometer, an energy meter and a valve from its
simulator driver. The demo then shows data arriving, presence changing and an RPC round trip,
prints the commands to try the same by hand, and keeps running until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gatehub.errors import AlreadyExists

console = Console(soft_wrap=True, highlight=False)
TENANT, GATEWAY = "demo", "demo-gw"
PRODUCTS = {"thermometer": "Thermometer", "meter": "Energy meter", "valve": "Valve"}
DEVICES: list[dict[str, Any]] = [
    {
        "uid": "th-01",
        "model": "thermometer",
        "keys": {
            "temperature": {"kind": "walk", "min": 18, "max": 26, "value": 21.0},
            "humidity": {"kind": "sine", "min": 35, "max": 55, "period": 120},
        },
    },
    {
        "uid": "em-01",
        "model": "meter",
        "keys": {
            "energy_kwh": {"kind": "counter", "min": 1520, "step": 0.02, "decimals": 3},
            "power_w": {"kind": "walk", "min": 300, "max": 2400, "value": 900},
        },
    },
    {
        "uid": "valve-01",
        "model": "valve",
        "keys": {"position": {"kind": "setpoint", "value": 20}, "flow_lpm": {"kind": "walk", "min": 0, "max": 40}},
    },
]


async def _prepare(store: Any) -> str:
    """Tenant, products and gateway (kept from an earlier run); the gateway's access token."""
    from gatehub.domain.model import NodeType

    with contextlib.suppress(AlreadyExists):
        await store.accounts.create_tenant(TENANT, "gatehub demo")
    with contextlib.suppress(AlreadyExists):
        await store.catalog.create_product(TENANT, "edge-gw", "Edge gateway", NodeType.GATEWAY)
    for pid, name in PRODUCTS.items():
        with contextlib.suppress(AlreadyExists):
            await store.catalog.create_product(TENANT, pid, name, NodeType.SUBDEVICE)
    gw = await store.devices.find_by_name(TENANT, GATEWAY)
    if gw is None:
        gw = await store.devices.create(TENANT, GATEWAY, "edge-gw", device_id=GATEWAY)
    return str(gw.access_token)


def _table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="sub-devices of demo-gw, as the hub sees them")
    for col in ("device", "presence", "latest values"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["device"], r["presence"], r["values"])
    return t


async def _snapshot(store: Any) -> list[dict[str, Any]]:
    out = []
    for d in await store.devices.children(GATEWAY):
        latest = await store.data.latest(d.id)
        vals = ", ".join(f"{k}={v['value']}" for k, v in latest.items())
        out.append({"device": d.name, "presence": d.presence.value, "values": vals or "(none yet)"})
    return out


async def run_demo(data_dir: Path, http_port: int, mqtt_port: int, bind_host: str, duration: float) -> None:
    import httpx

    from gatehub.agent import Agent, agent_config
    from gatehub.agent.drivers.simulator import SimulatorDriver
    from gatehub.app.node import Node
    from gatehub.config import Settings

    settings = Settings(
        data_dir=data_dir,
        bind_host=bind_host,
        http_port=http_port,
        mqtt_port=mqtt_port,
        mqtts_port=-1,
        iotda_port=-1,
        grpc_port=-1,
        log_level="warning",
    )
    async with Node(settings) as node:
        assert node.store is not None
        store = node.store
        token = await _prepare(store)
        api = f"http://127.0.0.1:{node.endpoints.http}/api/v1"
        mqtt = node.endpoints.extra["mqtt_tcp"]
        console.print(f"[bold]hub[/bold]: REST {api}, MQTT 127.0.0.1:{mqtt}, data in {data_dir}")
        cfg = agent_config(
            {
                "hub": {"host": "127.0.0.1", "port": mqtt, "access_token": token, "reconnect_max": 2.0},
                "state": {"path": str(data_dir / "demo-agent.db")},
                "credentials": {"models": {m: {"product_key": m} for m in PRODUCTS}},
                "log_level": "warning",
            }
        )
        sim = SimulatorDriver([dict(d) for d in DEVICES], poll_interval=1.0)
        key = settings.admin_key_path.read_text().strip()
        async with (
            Agent(cfg, [sim]) as agent,
            httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        ):
            await asyncio.wait_for(agent.reconciled.wait(), 30)
            console.print(f"[bold]agent[/bold]: gateway {GATEWAY} connected; LocalTopoList:", end=" ")
            console.print(", ".join(e["name"] for e in agent.lists()["LocalTopoList"]))
            await asyncio.sleep(2.5)
            console.print(_table(await _snapshot(store)))

            valve = (await http.get("/devices?tenantId=demo&namePrefix=valve-01")).json()["items"][0]["id"]
            body = {"method": "set", "params": {"position": 75}, "timeout": 10000}
            console.print("[bold]RPC[/bold] set position=75 on valve-01 → ", end="")
            r = await http.post(f"/devices/{valve}/rpc", json=body)
            console.print(f"reply {r.text}")

            console.print("[bold]presence[/bold]: th-01 drops off its network for 3 s ...")
            sim.set_online("th-01", False)
            await asyncio.sleep(1.5)
            th = await store.devices.find_by_name(TENANT, "th-01")
            console.print(f"  hub says th-01 is {th.presence.value if th else '?'}")
            await asyncio.sleep(1.5)
            sim.set_online("th-01", True)
            await asyncio.sleep(1.5)
            th = await store.devices.find_by_name(TENANT, "th-01")
            console.print(f"  ... and back: {th.presence.value if th else '?'}")
            console.print(_table(await _snapshot(store)))
            ids = {d.name: d.id for d in await store.devices.children(GATEWAY)}
            _tour(api, str(settings.admin_key_path), ids)

            stop_at = time.monotonic() + duration if duration > 0 else None
            while stop_at is None or time.monotonic() < stop_at:
                await asyncio.sleep(min(10.0, max(0.1, (stop_at or 1e18) - time.monotonic())))
                if stop_at is None or time.monotonic() < stop_at:
                    rows = await _snapshot(store)
                    console.print(" | ".join(f"{r['device']} {r['presence']}: {r['values']}" for r in rows))
        console.print("demo stopped")


def _tour(api: str, key_path: str, ids: dict[str, str]) -> None:
    meter, valve = ids.get("em-01", "ID"), ids.get("valve-01", "ID")
    rpc = """'{"method":"set","params":{"position":10}}'"""
    console.print("\nTry it yourself, in another terminal:", style="bold")
    console.print(
        f'  KEY=$(cat {key_path}); H="Authorization: Bearer $KEY"; API={api}\n'
        '  curl -s "$API/gateways/demo-gw/devices" -H "$H"            # topology and presence\n'
        f'  curl -s "$API/devices/{meter}/telemetry/latest" -H "$H"\n'
        f'  curl -s "$API/devices/{meter}/telemetry?keys=power_w" -H "$H"\n'
        f'  curl -s -XPOST "$API/devices/{valve}/rpc" -H "$H" -d {rpc}\n'
        '  curl -sN "$API/events/stream?tenantId=demo" -H "$H"       # live events; Ctrl-C ends it\n'
        "Ctrl-C stops the demo.\n",
        markup=False,
    )


def demo(
    data_dir: Path = typer.Option(Path("var-demo"), help="Data folder of the demo hub and agent"),
    http_port: int = typer.Option(8080, help="REST API port (0 = any free port)"),
    mqtt_port: int = typer.Option(1883, help="MQTT port (0 = any free port)"),
    bind_host: str = typer.Option("127.0.0.1", help="Address the hub binds to"),
    duration: float = typer.Option(0, help="Stop after this many seconds (0 = run until Ctrl-C)"),
) -> None:
    """Start a hub and a gateway agent with simulated sub-devices: data, presence and RPC at once."""
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gatehub.app.node import run_loop
    from gatehub.cli.agent import run_until_signal

    try:
        run_loop(run_until_signal(run_demo(data_dir, http_port, mqtt_port, bind_host, duration)))
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc} (is another hub running? try --http-port 0 --mqtt-port 0)")
        raise typer.Exit(1) from None
