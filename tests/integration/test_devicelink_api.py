"""The device-link REST API and CLI: clear 4xx errors for bad requests, the case-insensitive
identifier and its ambiguity, permissions and tenant isolation, limits and 503 when no port is
free; the `gatehub link` commands against a running hub."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.devicelink_helpers import LinkNode, link_node, read_exactly, tcp_client, tcp_echo

GATEHUB = shutil.which("gatehub", path=str(Path(sys.executable).parent))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


def err(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, r.text
    msg: str = body["message"]
    return msg


async def _setup(h: LinkNode) -> None:
    await h.direct_device("acme", "plc")
    await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})


async def test_bad_requests_get_clear_errors(tmp_path: Path, db_url: str) -> None:
    async with link_node(tmp_path, db_url) as h:
        await _setup(h)
        await h.direct_device("acme", "nowhere")
        post = h.api.post
        ok_key = {"key": "00" * 32, "initializationVector": "11" * 16}
        cases: list[tuple[str, dict[str, Any], int, str, str]] = [
            (
                "plc",
                {"protocol": "tcp", "devicePort": 502, "encrypt": {**ok_key, "key": "00" * 16}},
                400,
                "invalid_input",
                "encrypt.key must be 64 hex digits",
            ),
            (
                "plc",
                {"protocol": "tcp", "devicePort": 502, "encrypt": {**ok_key, "initializationVector": "zz" * 16}},
                400,
                "invalid_input",
                "hexadecimal",
            ),
            ("plc", {"protocol": "tcp", "devicePort": 70000}, 400, "invalid_input", "devicePort"),
            ("plc", {"protocol": "tcp", "devicePort": 0}, 400, "invalid_input", "devicePort"),
            (
                "plc",
                {"protocol": "tcp", "devicePort": 502, "source": {"host": "127.0.0.1", "port": 65536}},
                400,
                "invalid_input",
                "source.port",
            ),
            ("plc", {"protocol": "sctp", "devicePort": 502}, 400, "invalid_input", "protocol"),
            ("plc", {"protocol": "tcp"}, 400, "invalid_input", "devicePort is required"),
            ("plc", {"protocol": "tcp", "devicePort": 502, "timeout": -1}, 400, "invalid_input", "timeout"),
            ("plc", {"protocol": "tcp", "devicePort": 502, "colour": "red"}, 400, "invalid_input", "colour"),
            (
                "plc",
                {"protocol": "tcp", "devicePort": 502, "source": {"host": "no-such-host.invalid"}},
                400,
                "invalid_input",
                "cannot be resolved",
            ),
            ("missing", {"protocol": "tcp", "devicePort": 502}, 404, "not_found", "MISSING"),
            ("bad id!", {"protocol": "tcp", "devicePort": 502}, 400, "invalid_input", "deviceIdentifier"),
            ("nowhere", {"protocol": "tcp", "devicePort": 502}, 409, "address_unknown", "deviceLinkAddress"),
        ]
        for ident, body, status, code, text in cases:
            msg = err(await post(f"/api/v1/devicelink/{ident}", json=body), status, code)
            assert text in msg, (body, msg)
        assert h.links.links == {}  # bad input changed nothing
        msg = err(await h.api.delete("/api/v1/devicelink/not-a-token"), 404, "not_found")
        assert "token" in msg


async def test_identifier_case_and_ambiguity(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url, devicelink_default_device_port=502) as h:
        await h.direct_device("acme", "Pump-3")
        await h.api.post("/api/v1/devices/Pump-3/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("pUMP-3", {"protocol": "tcp"})
        assert link["deviceIdentifier"] == "PUMP-3" and link["deviceId"] == "Pump-3" and link["devicePort"] == 502
        await h.direct_device("acme", "PUMP-3")
        msg = err(await h.api.post("/api/v1/devicelink/pump-3", json={"protocol": "tcp"}), 409, "ambiguous_device")
        assert "Pump-3" in msg and "PUMP-3" in msg


async def test_permissions_and_tenant_isolation(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await _setup(h)
        await h.store.accounts.create_tenant("other")

        keys = {}
        for name, body in {
            "viewer": {"name": "v", "role": "viewer", "tenantId": "acme"},
            "operator": {"name": "o", "role": "operator", "tenantId": "acme"},
            "outsider": {"name": "x", "role": "tenant-admin", "tenantId": "other"},
            "creator": {"name": "c", "role": "custom", "tenantId": "acme", "permissions": {"deviceLink": ["create"]}},
        }.items():
            r = await h.api.post("/api/v1/apikeys", json=body)
            assert r.status_code == 201, r.text
            keys[name] = r.json()["key"]
        import httpx

        def as_(name: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=h.api.base_url, headers={"Authorization": f"Bearer {keys[name]}"}, timeout=30
            )

        body = {"protocol": "tcp", "devicePort": dev_port}
        async with as_("viewer") as v, as_("operator") as o, as_("outsider") as x, as_("creator") as c:
            err(await v.post("/api/v1/devicelink/plc", json=body), 403, "permission_denied")
            err(await x.post("/api/v1/devicelink/plc", json=body), 404, "not_found")
            r = await c.post("/api/v1/devicelink/plc", json=body)
            assert r.status_code == 201, r.text
            made = r.json()
            err(await c.delete(f"/api/v1/devicelink/{made['token']}"), 403, "permission_denied")
            err(await c.get("/api/v1/devicelink"), 403, "permission_denied")
            listed = (await v.get("/api/v1/devicelink")).json()["items"]
            assert [x["id"] for x in listed] == [made["id"]] and "token" not in listed[0]
            assert (await x.get("/api/v1/devicelink")).json()["items"] == []
            err(await x.delete(f"/api/v1/devicelink/{made['token']}"), 404, "not_found")
            listed = (await o.get("/api/v1/devicelink")).json()["items"]
            assert listed[0]["token"] == made["token"]
            assert (await o.delete(f"/api/v1/devicelink/{made['token']}")).status_code == 204


async def test_limits_and_no_free_port(tmp_path: Path, sqlite_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    blocker = socket.socket()  # another program holds the pool's second port
    blocker.bind(("127.0.0.1", base + 1))
    blocker.listen()
    try:
        async with link_node(
            tmp_path,
            sqlite_url,
            devicelink_port_min=base,
            devicelink_port_max=base + 3,
            devicelink_max_per_device=2,
            devicelink_max_per_tenant=2,
        ) as h:
            await _setup(h)
            await h.direct_device("acme", "plc2")
            await h.direct_device("beta", "b1")
            for dev in ("plc2", "b1"):
                r = await h.api.post(f"/api/v1/devices/{dev}/attributes/server", json={"deviceLinkAddress": "::1"})
                assert r.status_code == 200, r.text
            body = {"protocol": "tcp", "devicePort": 502}
            a = await h.create("plc", body)
            b = await h.create("plc", body)
            assert a["port"] == base and b["port"] == base + 2  # base + 1 is taken by another program: skipped
            assert "devicelink_max_per_device" in err(
                await h.api.post("/api/v1/devicelink/plc", json=body), 409, "too_many_links"
            )
            assert "devicelink_max_per_tenant" in err(
                await h.api.post("/api/v1/devicelink/plc2", json=body), 409, "too_many_links"
            )
            e = await h.create("b1", body)
            assert e["port"] == base + 3
            msg = err(await h.api.post("/api/v1/devicelink/b1", json=body), 503, "no_free_port")
            assert "4 in the pool" in msg
            assert (await h.api.delete(f"/api/v1/devicelink/{a['token']}")).status_code == 204
            c = await h.create("b1", body)
            assert c["port"] == base  # the released port, least recently used
    finally:
        blocker.close()


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    assert GATEHUB is not None
    proc = await asyncio.create_subprocess_exec(
        GATEHUB, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, errb = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), errb.decode()


async def test_cli_create_list_delete(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await _setup(h)
        env = {
            **os.environ,
            "GATEHUB_DATA_DIR": str(h.node.settings.data_dir),
            "GATEHUB_DATABASE_URL": sqlite_url,
            "GATEHUB_HTTP_PORT": str(h.node.endpoints.http),
            "COLUMNS": "200",
        }
        code, out, errs = await _cli("link", "create", "PLC", "--device-port", str(dev_port), "--json", env=env)
        assert code == 0, errs
        link = orjson.loads(out)
        assert link["deviceIdentifier"] == "PLC" and link["token"]
        reader, writer = await tcp_client(link["port"])
        writer.write(b"cli")
        assert await read_exactly(reader, 3) == b"cli"
        writer.close()
        code, out, errs = await _cli("link", "list", "--tenant", "acme", "--json", env=env)
        assert code == 0, errs
        assert [x["token"] for x in orjson.loads(out)] == [link["token"]]
        code, out, errs = await _cli("link", "create", "plc", "--device-port", "99999", env=env)
        assert code == 2 and "devicePort" in errs
        keys = ("--key", "ab" * 32, "--iv", "cd" * 16)
        code, out, errs = await _cli("link", "create", "plc", "--device-port", "7", *keys, "--json", env=env)
        assert code == 0, errs
        assert orjson.loads(out)["encrypt"]["mode"] == "literal"  # the seed's fields only: literal mode
        enc_mode = ("--encryption-mode", "per-connection")
        code, out, errs = await _cli("link", "create", "plc", "--device-port", "7", *keys, *enc_mode, "--json", env=env)
        assert code == 0, errs
        assert orjson.loads(out)["encrypt"]["mode"] == "per-connection"
        for lk in [lk for lk in h.links.list(None) if lk.request.key_hex]:
            lk.close("test done")
        code, out, errs = await _cli("link", "create", "plc", "--device-port", "7", *enc_mode, env=env)
        assert code == 2 and "--encryption-mode needs --key and --iv" in errs
        code, out, errs = await _cli("link", "delete", link["token"], env=env)
        assert code == 0 and "closed" in out
        code, out, errs = await _cli("link", "delete", link["token"], env=env)
        assert code == 2 and "not_found" in errs
        assert h.links.links == {}
