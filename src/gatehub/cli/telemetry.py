"""`gatehub telemetry`: read stored telemetry (latest values, a time range, aggregates, counts).

The same store functions as the REST data API (``GET /devices/{id}/telemetry[/latest]``), so
the answers are the same; ``--json`` prints what the API's body would hold.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import typer

from gatehub.cli.common import ConfigOpt, JsonOpt, TenantOpt, emit, opened_store, run, settings_from

telemetry_app = typer.Typer(help="Stored telemetry of a device: latest values, a range, counts", no_args_is_help=True)

KeysOpt = typer.Option(None, "--keys", "-k", help="Comma-separated keys (default: all)")
StartOpt = typer.Option(
    None,
    "--start",
    help="From (inclusive): ms since the epoch, ISO 8601 (2026-12-07T10:00Z) or -15m/-2h/-7d (default: 0)",
)
EndOpt = typer.Option(None, "--end", help="To (exclusive), same forms as --start (default: now)")

_RELATIVE = re.compile(r"^-(\d+)(s|m|h|d)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time(text: str | None, now: int, name: str) -> int | None:
    """Milliseconds since the epoch from ``text`` (ms, ISO 8601 or ``-<n><s|m|h|d>`` before now)."""
    if text is None:
        return None
    t = text.strip()
    if t.isdigit():
        return int(t)
    rel = _RELATIVE.match(t)
    if rel:
        return max(0, now - int(rel.group(1)) * _UNIT_MS[rel.group(2)])
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{name} must be ms since the epoch, ISO 8601 (2026-12-07T10:00Z) or -15m/-2h/-7d; got {text!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _keys(keys: str | None) -> list[str] | None:
    out = [k.strip() for k in (keys or "").split(",") if k.strip()]
    return out or None


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(start: str | None, end: str | None) -> tuple[int, int]:
    from gatehub.domain.telemetry import now_ms

    now = now_ms()
    lo = parse_time(start, now, "--start") or 0
    hi = parse_time(end, now, "--end")
    return lo, hi if hi is not None else now + 1


@telemetry_app.command("latest")
def telemetry_latest(
    device_id: str, tenant: str = TenantOpt, keys: str = KeysOpt, config: str = ConfigOpt, json: bool = JsonOpt
) -> None:
    """The latest value of every key (or of --keys): {key: {ts, value}} with --json."""

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            dev = await st.devices.get(tenant, device_id)
            return await st.data.latest(dev.id, _keys(keys))

    data: dict[str, dict[str, Any]] = run(go)
    if json:
        emit(data, True)
        return
    rows = [{"key": k, "time": _iso(v["ts"]), "value": v["value"]} for k, v in data.items()]
    emit(rows, False, ["key", "time", "value"], title=f"latest telemetry of {device_id}")


@telemetry_app.command("range")
def telemetry_range(
    device_id: str,
    tenant: str = TenantOpt,
    keys: str = KeysOpt,
    start: str = StartOpt,
    end: str = EndOpt,
    limit: int = typer.Option(1000, min=1, max=100_000, help="Most points"),
    desc: bool = typer.Option(False, "--desc", help="Newest first"),
    agg: str = typer.Option(None, "--agg", help="min, max, avg, sum or count per --interval"),
    interval: int = typer.Option(None, "--interval", min=1, help="Aggregation interval (ms), with --agg"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Points in a time range, per key (or aggregates with --agg/--interval): {key: [{ts, value}]} with --json."""
    if agg is not None and interval is None:
        raise typer.BadParameter("--agg needs --interval (ms)")
    if interval is not None and agg is None:
        raise typer.BadParameter("--interval goes with --agg")
    lo, hi = _window(start, end)

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            dev = await st.devices.get(tenant, device_id)
            if agg is not None:
                return await st.data.aggregate(dev.id, _keys(keys), lo, hi, interval, agg)
            return await st.data.telemetry(dev.id, _keys(keys), lo, hi, limit, "desc" if desc else "asc")

    data: dict[str, list[dict[str, Any]]] = run(go)
    if json:
        emit(data, True)
        return
    cols = ["key", "time", "value"] + (["count"] if agg is not None else [])
    rows = [
        {"key": k, "time": _iso(p["ts"]), "value": p["value"], "count": p.get("count")}
        for k, pts in data.items()
        for p in pts
    ]
    emit(rows, False, cols, title=f"telemetry of {device_id}")


@telemetry_app.command("count")
def telemetry_count(
    device_id: str,
    tenant: str = TenantOpt,
    keys: str = KeysOpt,
    start: str = StartOpt,
    end: str = EndOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """How many points are stored, per key and in all: {"total": n, "keys": {key: n}} with --json."""
    lo, hi = _window(start, end)

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            dev = await st.devices.get(tenant, device_id)
            # one interval spanning the window: the store's count aggregate, per key
            return await st.data.aggregate(dev.id, _keys(keys), lo, hi, hi - lo, "count")

    data: dict[str, list[dict[str, Any]]] = run(go)
    per_key = {k: sum(int(b["value"]) for b in buckets) for k, buckets in sorted(data.items())}
    out = {"total": sum(per_key.values()), "keys": per_key}
    if json:
        emit(out, True)
        return
    emit([{"key": k, "count": n} for k, n in per_key.items()], False, ["key", "count"], title=f"points of {device_id}")
    typer.echo(f"total: {out['total']}")
