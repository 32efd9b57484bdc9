"""IoTDA HTTPS input strictness over real HTTPS: every body must be declared application/json."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehub.protocols import iotda as p
from tests.integration.iotda_helpers import DIRECT, GATEWAY, SECRET, IotdaHub, error, iotda_hub
from tests.integration.tls_helpers import answer_to, legacy_hello

PROPS = f"/v5/devices/{DIRECT}/sys/properties/report"
MSG = f"/v5/devices/{DIRECT}/sys/messages/up"
BATCH = f"/v5/devices/{GATEWAY}/sys/gateway/sub-devices/properties/report"
REPORT = b'{"services":[{"service_id":"s","properties":{"h":1}}]}'
WRONG = ("text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data", "")


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[IotdaHub]:
    async with iotda_hub(tmp_path, db_url, n_children=1) as h:
        yield h


def _media_error(r: object, ctype: str | None) -> None:
    msg = error(r, 415, "IOTDA.000006")  # type: ignore[arg-type]
    assert msg.startswith("Invalid input data. Content-Type must be application/json, got "), msg
    assert ("none" if ctype is None else repr(ctype)) in msg


async def test_reports_with_another_content_type_are_refused_and_not_stored(hub: IotdaHub) -> None:
    token = await hub.auth()
    gw_token = await hub.auth(GATEWAY)
    batch = b'{"devices":[{"device_id":"c00","services":[{"service_id":"s","properties":{"h":1}}]}]}'
    for ctype in (*WRONG, None):
        _media_error(await hub.post(PROPS, token, content=REPORT, content_type=ctype), ctype)
        _media_error(await hub.post(MSG, token, content=REPORT, content_type=ctype), ctype)
        _media_error(await hub.post(BATCH, gw_token, content=batch, content_type=ctype), ctype)
    assert await hub.count_rows() == 0 and await hub.count_events() == 0
    # the media type is case-insensitive and may carry parameters
    for ctype in (
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "APPLICATION/JSON;charset=UTF-8",
    ):
        assert (await hub.post(PROPS, token, content=REPORT, content_type=ctype)).status_code == 200
    assert (
        await hub.post(BATCH, gw_token, content=batch, content_type="application/json;charset=utf-8")
    ).status_code == 200
    assert (await hub.post(MSG, token, content=b"plain text", content_type="application/json")).status_code == 200
    assert await hub.count_rows() == 5 and await hub.count_events() == 1


async def test_device_auth_with_a_form_body_is_refused(hub: IotdaHub) -> None:
    ts = hub.now_ts()
    form = {"device_id": DIRECT, "sign_type": "0", "timestamp": ts, "password": p.password(SECRET, ts)}
    r = await hub.client.post("/v5/device-auth", data=form)  # application/x-www-form-urlencoded
    _media_error(r, "application/x-www-form-urlencoded")
    json_text = (
        f'{{"device_id":"{DIRECT}","sign_type":0,"timestamp":"{ts}","password":"{p.password(SECRET, ts)}"}}'
    ).encode()
    for ctype in ("text/plain", None):
        headers = {} if ctype is None else {"content-type": ctype}
        _media_error(await hub.client.post("/v5/device-auth", content=json_text, headers=headers), ctype)
    r = await hub.client.post(
        "/v5/device-auth", content=json_text, headers={"content-type": "application/json; charset=UTF-8"}
    )
    assert r.status_code == 200 and "access_token" in r.json()


async def test_openapi_states_the_request_media_type_and_415(hub: IotdaHub) -> None:
    spec = (await hub.client.get("/v5/openapi.json")).json()
    posts = [ops["post"] for ops in spec["paths"].values() if "post" in ops]
    assert len(posts) == 4
    for op in posts:
        assert list(op["requestBody"]["content"]) == ["application/json"]
        assert "application/json" in op["requestBody"]["description"]
        assert "IOTDA.000006" in op["responses"]["415"]["description"]


# -- TLS versions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "name"), [(b"\x03\x01", "1.0"), (b"\x03\x02", "1.1")], ids=["tls1.0", "tls1.1"])
async def test_tls_1_0_and_1_1_get_the_protocol_version_alert(hub: IotdaHub, version: bytes, name: str) -> None:
    answer = await answer_to(hub.port, legacy_hello(version))
    # one plaintext alert record: content type 21, the client's version, length 2, fatal (2), 70
    assert answer == b"\x15" + version + b"\x00\x02\x02\x46", (name, answer.hex())
    # the listener still serves TLS 1.2+ afterwards
    assert (await hub.client.get("/v5/openapi.json")).status_code == 200


async def test_openssl_s_client_tls1_1_reads_alert_70(hub: IotdaHub) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-tls1_1", "-connect", f"127.0.0.1:{hub.port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode(errors="replace")
    if "no protocols available" in text:
        pytest.skip("this openssl cannot offer TLS 1.1 at all")
    assert "alert protocol version" in text and "alert number 70" in text, text
