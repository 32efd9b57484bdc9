"""Device-link requests are validated strictly (no JSON type coercion), errors name the field and
say why, malformed JSON says where; a client the link does not admit is reset (RST), as the docs
say, not closed like a finished session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.devicelink_helpers import LinkNode, link_node, read_exactly, tcp_client, tcp_echo


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


async def _setup(h: LinkNode) -> None:
    await h.direct_device("acme", "plc")
    r = await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
    assert r.status_code < 300, r.text


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body: dict[str, Any] = r.json()["error"]
    assert body["code"] == "invalid_input", r.text
    return body


async def test_link_input_is_not_coerced(tmp_path: Path, sqlite_url: str) -> None:
    key = {"key": "00" * 32, "initializationVector": "11" * 16}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"protocol": "tcp", "devicePort": True}, "devicePort", "got true (a boolean)"),
        ({"protocol": "tcp", "devicePort": "9"}, "devicePort", 'got "9" (a string)'),
        ({"protocol": "tcp", "devicePort": 9.0}, "devicePort", "got 9.0"),
        ({"protocol": "tcp", "devicePort": 9, "timeout": "100"}, "timeout", 'got "100" (a string)'),
        ({"protocol": "tcp", "devicePort": 9, "timeout": False}, "timeout", "got false (a boolean)"),
        ({"protocol": "tcp", "devicePort": 9, "source": {"host": "127.0.0.1", "port": 1.5}}, "source.port", "got 1.5"),
        ({"protocol": "tcp", "devicePort": 9, "source": {"host": 127}}, "source.host", "got 127 (an integer)"),
        ({"protocol": "tcp", "devicePort": 9, "encrypt": {**key, "key": 0}}, "encrypt.key", "got 0 (an integer)"),
        ({"protocol": True, "devicePort": 9}, "protocol", "got true (a boolean)"),
        ({"protocol": "tcp", "devicePort": 9, "source": "127.0.0.1"}, "source", 'got "127.0.0.1" (a string)'),
    ]
    async with link_node(tmp_path, sqlite_url) as h:
        await _setup(h)
        for body, field, reason in cases:
            err = _error(await h.api.post("/api/v1/devicelink/plc", json=body))
            assert err["message"].startswith(f"{field}: "), (body, err)
            assert reason in err["message"], (body, err)
            assert err["details"][0]["field"] == field, (body, err)
            assert reason in err["details"][0]["message"], (body, err)
        assert h.links.list(None) == []  # none of them opened a link
        ok = await h.create("plc", {"protocol": "TCP", "devicePort": 9, "timeout": 0})
        assert ok["devicePort"] == 9 and ok["protocol"] == "tcp"


async def test_malformed_json_says_where(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h:
        await _setup(h)
        body = b'{"protocol": "tcp",\n  "devicePort": 502,\n  "timeout": }'
        r = await h.api.post("/api/v1/devicelink/plc", content=body, headers={"Content-Type": "application/json"})
        err = _error(r)
        pos = body.index(b"}")
        assert err["message"] == (
            f"request body is not valid JSON: Expecting value at line 3, column 14 (char {pos})"
        ), err
        assert err["details"] == [
            {"field": "body", "message": err["message"], "line": 3, "column": 14, "position": pos}
        ]
        err = _error(await h.api.post("/api/v1/devicelink/plc", content=b'{"protocol": "tcp" "devicePort": 1}'))
        assert "Expecting ',' delimiter at line 1, column 20 (char 19)" in err["message"], err


async def _reset_on_read(port: int, source: tuple[str, int] | None = None) -> None:
    reader, writer = await tcp_client(port, source)
    try:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 10)
    finally:
        writer.close()


async def test_a_client_the_link_does_not_admit_is_reset(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, rec):
        await _setup(h)
        link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port})
        reader, writer = await tcp_client(link["port"])
        writer.write(b"first")
        assert await read_exactly(reader, 5) == b"first"  # the first client inherited the link
        await _reset_on_read(link["port"])  # a second concurrent client: RST, not EOF
        writer.write(b"still")
        assert await read_exactly(reader, 5) == b"still"  # the first one is unaffected
        writer.close()
        await asyncio.sleep(0.2)
        await _reset_on_read(link["port"], ("127.0.0.2", 0))  # another host than the inheritor
        assert h.links.get(link["token"], None).refused == 2
        assert rec.connections == 1
