"""The `gatehub` command as a user runs it: a real subprocess on a real SQLite data folder.

Commands that do not depend on each other run at the same time (as two operators might), which
keeps the module fast and exercises concurrent use of one database by several processes.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import gatehub
from gatehub.config import Settings
from gatehub.store import Database, Store

BIN = Path(sys.executable).parent
GATEHUB = shutil.which("gatehub", path=str(BIN))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return orjson.loads(self.out)


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
        env.pop("FORCE_COLOR", None)
        env.update({"GATEHUB_DATA_DIR": str(data_dir), "COLUMNS": "200", "NO_COLOR": "1"})
        self.env = env

    async def run(self, *args: str, env: dict[str, str] | None = None, code: int | None = 0) -> Result:
        assert GATEHUB is not None, f"no gatehub script in {BIN}"
        proc = await asyncio.create_subprocess_exec(
            GATEHUB, *args, env={**self.env, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        res = Result(args, proc.returncode, out.decode(), err.decode())
        if code is not None:
            assert res.code == code, res
        return res

    async def many(self, *commands: tuple[str, ...]) -> list[Result]:
        return list(await asyncio.gather(*(self.run(*c) for c in commands)))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "var")


def test_the_script_is_installed_in_the_venv() -> None:
    assert GATEHUB is not None and Path(GATEHUB).parent == BIN


async def test_manage_a_fleet(cli: Cli) -> None:
    acme = (await cli.run("tenant", "create", "acme", "--name", "Acme Corp", "--json")).json()
    assert acme["id"] == "acme" and acme["name"] == "Acme Corp" and isinstance(acme["createdAt"], int)
    assert (cli.data_dir / "gatehub.db").is_file()
    beta, gwprod, sensor = await cli.many(
        ("tenant", "create", "beta", "--json"),
        ("product", "create", "gwprod", "--tenant", "acme", "--node-type", "gateway", "--json"),
        ("product", "create", "sensor", "-t", "acme", "--node-type", "sub-device", "--name", "Sensor", "--json"),
    )
    assert beta.json()["name"] == "beta"
    gwp = gwprod.json()
    assert (gwp["id"], gwp["tenantId"], gwp["nodeType"]) == ("gwprod", "acme", "gateway")
    assert re.fullmatch(r"[0-9a-f]{32}", gwp["secret"])
    assert (sensor.json()["nodeType"], sensor.json()["name"]) == ("sub-device", "Sensor")

    tenants, gw1, gw2 = await cli.many(
        ("tenant", "list", "--json"),
        ("gateway", "create", "Gateway 1", "--tenant", "acme", "--product", "gwprod", "--id", "gw1", "--json"),
        ("gateway", "create", "Gateway 2", "-t", "acme", "-p", "gwprod", "--id", "gw2", "--token", "gw2-token",
         "--json"),
    )  # fmt: skip
    assert [(t["id"], t["name"]) for t in tenants.json()] == [("acme", "Acme Corp"), ("beta", "beta")]
    g1, g2 = gw1.json(), gw2.json()
    assert (g1["id"], g1["kind"], g1["name"], g1["parentId"]) == ("gw1", "gateway", "Gateway 1", None)
    assert g2["accessToken"] == "gw2-token" and g1["accessToken"] and g1["number"] != g2["number"]

    temp, hum, key = await cli.many(
        ("device", "create", "temp_1", "--tenant", "acme", "--product", "sensor", "--gateway", "gw1", "--json"),
        ("device", "create", "hum-1", "-t", "acme", "-p", "sensor", "-g", "gw1", "--id", "hum1", "--json"),
        ("apikey", "create", "dashboard", "--role", "viewer", "--tenant", "acme"),
    )
    # on a narrow terminal too, the key comes whole on a line of its own (it is shown only once)
    narrow = await cli.run("apikey", "create", "narrow", "--tenant", "acme", env={"COLUMNS": "40"})
    assert re.search(r"^key: ghk_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}$", narrow.out, re.M), narrow.out
    t = temp.json()
    assert (t["id"], t["name"], t["kind"], t["parentId"]) == ("sensor_temp_1", "temp_1", "sub-device", "gw1")
    assert (hum.json()["id"], hum.json()["parentId"]) == ("hum1", "gw1")
    # the key is printed once (table on stdout), with a warning on stderr
    m = re.search(r"ghk_([0-9a-f]{16})_[A-Za-z0-9_-]+", key.out)
    assert m, key.out
    token, key_id = m.group(0), m.group(1)
    assert "shown once" in key.err

    subs, prefixed, keys = await cli.many(
        ("device", "list", "--tenant", "acme", "--kind", "sub-device", "--gateway", "gw1", "--json"),
        ("device", "list", "--tenant", "acme", "--name-prefix", "temp_", "--json"),
        ("apikey", "list", "--json"),
    )
    assert sorted(d["id"] for d in subs.json()) == ["hum1", "sensor_temp_1"]
    assert [d["id"] for d in prefixed.json()] == ["sensor_temp_1"]
    listed = keys.json()
    mine = [k for k in listed if k["id"] == key_id]
    assert len(mine) == 1
    assert (mine[0]["name"], mine[0]["role"], mine[0]["tenantId"], mine[0]["customerId"]) == (
        "dashboard", "viewer", "acme", None)  # fmt: skip
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert token not in keys.out

    renamed, moved = await cli.many(
        ("device", "rename", "sensor_temp_1", "Temperature 1", "--tenant", "acme", "--json"),
        ("device", "move", "hum1", "--gateway", "gw2", "--tenant", "acme", "--json"),
    )
    assert (renamed.json()["id"], renamed.json()["name"]) == ("sensor_temp_1", "Temperature 1")
    assert moved.json()["parentId"] == "gw2"

    everything, table = await cli.many(
        ("device", "list", "--tenant", "acme", "--json"),
        ("device", "list", "--tenant", "acme"),
    )
    by_id = {d["id"]: d for d in everything.json()}
    assert sorted(by_id) == ["gw1", "gw2", "hum1", "sensor_temp_1"]
    assert by_id["sensor_temp_1"]["name"] == "Temperature 1" and by_id["sensor_temp_1"]["parentId"] == "gw1"
    assert by_id["hum1"]["parentId"] == "gw2"
    # gw1 gained two children and lost one; gw2 gained one
    assert (by_id["gw1"]["topologyVersion"], by_id["gw2"]["topologyVersion"]) == (3, 1)
    assert "Temperature 1" in table.out and "hum1" in table.out and "devices" in table.out

    # the printed key is a real key of tenant acme in the same database the server would use
    settings = Settings(data_dir=cli.data_dir)
    db = Database.open(settings.effective_database_url)
    try:
        principal = await Store(db).accounts.authenticate(token)
    finally:
        await db.close()
    assert (principal.key_id, principal.role.value, principal.tenant_id) == (key_id, "viewer", "acme")


async def test_errors_are_red_lines_with_exit_code_2(cli: Cli) -> None:
    await cli.run("tenant", "create", "acme")
    color = {"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm"}
    dup, plain_dup, bad_id, no_product, _ = await asyncio.gather(
        cli.run("tenant", "create", "acme", env=color, code=2),
        cli.run("tenant", "create", "acme", code=2),
        cli.run("tenant", "create", "bad id", code=2),
        cli.run("device", "create", "x", "--tenant", "acme", "--product", "nope", code=2),
        cli.run("product", "create", "plain", "--tenant", "acme"),
    )
    assert dup.out == ""
    assert "\x1b[31merror:" in dup.err  # red
    lines = ANSI.sub("", dup.err).strip().splitlines()
    assert len(lines) == 1 and lines[0] == "error: tenant acme already exists"
    assert plain_dup.err.strip() == "error: tenant acme already exists"
    assert bad_id.err.startswith("error: tenant id must be")
    assert no_product.err.strip() == "error: product nope not found"
    # a gateway needs a gateway product; the list shows nothing was created
    not_gw = await cli.run("gateway", "create", "g", "--tenant", "acme", "--product", "plain", code=2)
    assert "not a gateway product" in not_gw.err and not_gw.err.startswith("error:")
    assert (await cli.run("device", "list", "--tenant", "acme", "--json")).json() == []


async def test_serve_help_lists_every_setting(cli: Cli) -> None:
    helps = await asyncio.gather(
        cli.run("serve", "--help"),
        cli.run("serve", "--help", env={"COLUMNS": "80"}),
        cli.run("version"),
    )
    for res in helps[:2]:
        words = set(re.findall(r"[A-Za-z0-9_]+", res.out))
        missing = [n for n in Settings.model_fields if n not in words]
        assert missing == [], (missing, res.out[-2000:])
        missing_env = [n for n in Settings.model_fields if f"GATEHUB_{n.upper()}" not in words]
        assert missing_env == []
    assert helps[2].out.strip() == gatehub.__version__


async def _store_points(data_dir: Path, tenant: str, device_id: str, body: Any) -> None:
    """Points as the hub stores them (its ingest writer), into the CLI's database."""
    from gatehub.cli.common import opened_store
    from gatehub.domain.telemetry import flatten_points
    from gatehub.store import WriteBatch

    settings = Settings.model_validate({"data_dir": data_dir})
    async with opened_store(settings, with_writer=True) as (_store, writer):
        assert writer is not None
        rows: list[Any] = []
        flatten_points(device_id, body, 0, rows)
        await writer.write(WriteBatch(tenant, telemetry=rows))


async def test_telemetry_latest_range_count(cli: Cli) -> None:
    await cli.run("tenant", "create", "acme")
    await cli.run("product", "create", "meter", "--tenant", "acme")
    dev = (await cli.run("device", "create", "m1", "-t", "acme", "-p", "meter", "--json")).json()
    t0 = 1_780_000_000_000
    await _store_points(
        cli.data_dir,
        "acme",
        dev["id"],
        [{"ts": t0 + i * 1000, "values": {"temp": 20 + i, "state": f"s{i}"}} for i in range(5)],
    )
    latest, rng, agg, count, some, table = await cli.many(
        ("telemetry", "latest", dev["id"], "-t", "acme", "--json"),
        ("telemetry", "range", dev["id"], "-t", "acme", "--keys", "temp", "--start", str(t0 + 1000),
         "--end", str(t0 + 4000), "--json"),
        ("telemetry", "range", dev["id"], "-t", "acme", "-k", "temp", "--start", str(t0), "--end",
         str(t0 + 5000), "--agg", "max", "--interval", "2000", "--json"),
        ("telemetry", "count", dev["id"], "-t", "acme", "--json"),
        ("telemetry", "count", dev["id"], "-t", "acme", "--keys", "state", "--start", "2026-05-28T20:26:41Z",
         "--json"),
        ("telemetry", "latest", dev["id"], "-t", "acme"),
    )  # fmt: skip
    assert latest.json() == {"state": {"ts": t0 + 4000, "value": "s4"}, "temp": {"ts": t0 + 4000, "value": 24}}
    assert rng.json() == {"temp": [{"ts": t0 + i * 1000, "value": 20 + i} for i in (1, 2, 3)]}
    assert [(b["ts"], b["value"]) for b in agg.json()["temp"]] == [(t0, 21.0), (t0 + 2000, 23.0), (t0 + 4000, 24.0)]
    assert count.json() == {"total": 10, "keys": {"state": 5, "temp": 5}}
    # 2026-05-28T20:26:41Z is t0 + 1000 ms
    assert some.json() == {"total": 4, "keys": {"state": 4}}
    assert "temp" in table.out and "24" in table.out and "2026-05-28T20:26:44.000Z" in table.out
    bad = await cli.run("telemetry", "range", dev["id"], "-t", "acme", "--start", "yesterday", code=2)
    assert "--start must be" in ANSI.sub("", bad.err)
    missing = await cli.run("telemetry", "latest", "nope", "-t", "acme", code=2)
    assert "nope not found" in missing.err


async def test_device_create_secret(cli: Cli) -> None:
    await cli.run("tenant", "create", "acme")
    await cli.run("product", "create", "meter", "--tenant", "acme")
    given, generated, short = await asyncio.gather(
        cli.run("device", "create", "m1", "-t", "acme", "-p", "meter", "--secret", "s3cret-of-m1", "--json"),
        cli.run("device", "create", "m2", "-t", "acme", "-p", "meter"),
        cli.run("device", "create", "m3", "-t", "acme", "-p", "meter", "--secret", "short", code=2),
    )
    assert given.json()["secret"] == "s3cret-of-m1"
    store_secret = await _device_secret(cli.data_dir, "acme", "meter_m1")
    assert store_secret == "s3cret-of-m1"
    m2 = await _device_secret(cli.data_dir, "acme", "meter_m2")
    assert f"secret: {m2}" in generated.out and "shown once" in generated.err
    assert short.code == 2 and "--secret must be 8-128 characters" in ANSI.sub("", short.err)


async def _device_secret(data_dir: Path, tenant: str, device_id: str) -> str:
    from gatehub.cli.common import opened_store

    async with opened_store(Settings.model_validate({"data_dir": data_dir})) as (store, _):
        return (await store.devices.get(tenant, device_id)).secret


async def test_cert_before_init_says_to_run_init(cli: Cli, tmp_path: Path) -> None:
    await cli.run("tenant", "create", "acme")
    tenant, gateway = await asyncio.gather(
        cli.run("cert", "tenant", "acme", "--out", str(tmp_path / "out"), code=1),
        cli.run("cert", "gateway", "g1", "-t", "acme", "--out", str(tmp_path / "out"), code=1),
    )
    for res in (tenant, gateway):
        assert res.code == 1
        assert "run `gatehub cert init` first" in ANSI.sub("", res.err), res.err
    await cli.run("cert", "init", "--out", str(tmp_path / "out"))
    await cli.run("cert", "tenant", "acme", "--out", str(tmp_path / "out"))
