"""IoTDA HTTPS device API over real HTTPS: authentication, tokens, reports, errors, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehub.protocols import iotda as p
from tests.integration.iotda_helpers import DIRECT, OTHER, SECRET, TENANT, IotdaHub, error, iotda_hub

PROPS = f"/v5/devices/{DIRECT}/sys/properties/report"
MSG = f"/v5/devices/{DIRECT}/sys/messages/up"


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[IotdaHub]:
    async with iotda_hub(tmp_path, db_url) as h:
        yield h


# -- device-auth ---------------------------------------------------------------------------------


async def test_auth_gives_a_token_that_reports(hub: IotdaHub) -> None:
    ts = hub.now_ts()
    r = await hub.client.post(
        "/v5/device-auth",
        json={"device_id": DIRECT, "sign_type": 0, "timestamp": ts, "password": p.password(SECRET, ts)},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"access_token", "expires_in"}
    assert 32 <= len(body["access_token"]) <= 256
    assert body["expires_in"] == 86399
    r = await hub.post(PROPS, body["access_token"], {"services": [{"service_id": "s", "properties": {"h": 1}}]})
    assert r.status_code == 200 and r.content == b""


async def test_auth_errors(hub: IotdaHub) -> None:
    ts = hub.now_ts()
    good = {"device_id": DIRECT, "sign_type": 0, "timestamp": ts, "password": p.password(SECRET, ts)}
    r = await hub.client.post("/v5/device-auth", json={**good, "password": p.password("wrong", ts)})
    assert error(r, 401, "IOTDA.000002") == "Authentication failed."
    r = await hub.client.post("/v5/device-auth", json={**good, "device_id": "nobody"})
    error(r, 401, "IOTDA.000002")
    for bad in (
        {**good, "sign_type": 2},
        {**good, "sign_type": True},
        {**good, "timestamp": ts[:9]},
        {**good, "timestamp": "2024133100"},
        {**good, "password": "ab" * 31},
        {**good, "device_id": "bad id!"},
        {**good, "device_id": "x" * 129},
        {k: v for k, v in good.items() if k != "password"},
        [good],
    ):
        r = await hub.client.post("/v5/device-auth", json=bad)
        assert error(r, 400, "IOTDA.000006").startswith("Invalid input data."), bad
    r = await hub.client.post("/v5/device-auth", content=b"{not json", headers={"content-type": "application/json"})
    error(r, 400, "IOTDA.000006")


async def test_sign_type_1_checks_the_hour_with_skew(hub: IotdaHub) -> None:
    await hub.auth(sign_type=1)  # this hour
    await hub.auth(sign_type=1, ts=hub.now_ts(-1))  # the adjacent hour (skew 1 by default)
    await hub.auth(sign_type=1, ts=hub.now_ts(1))
    for hours in (-2, 3, -24 * 400):
        ts = hub.now_ts(hours)
        r = await hub.client.post(
            "/v5/device-auth",
            json={"device_id": DIRECT, "sign_type": 1, "timestamp": ts, "password": p.password(SECRET, ts)},
        )
        error(r, 401, "IOTDA.000002")
    await hub.auth(sign_type=0, ts="2019120219")  # sign_type 0 checks the password only


async def test_auth_accepts_platform_allocated_ids(hub: IotdaHub) -> None:
    st = hub.node.store
    assert st is not None
    dev = await st.devices.create(TENANT, "node-42", "dp", secret="abcdefgh")
    assert dev.id == p.platform_device_id("dp", "node-42") == "dp_node-42"
    token = await hub.auth(dev.id, "abcdefgh")
    r = await hub.post(
        f"/v5/devices/{dev.id}/sys/properties/report",
        token,
        {"services": [{"service_id": "a", "properties": {"x": 1}}]},
    )
    assert r.status_code == 200


# -- tokens --------------------------------------------------------------------------------------


async def test_token_overlap_of_30_seconds_then_refused(hub: IotdaHub) -> None:
    body = {"services": [{"service_id": "s", "properties": {"v": 1}}]}
    old = await hub.auth()
    assert (await hub.post(PROPS, old, body)).status_code == 200
    hub.clock.freeze()
    new = await hub.auth()
    assert new != old
    hub.clock.offset = 29_000  # 29 s after the new token: both work
    assert (await hub.post(PROPS, old, body)).status_code == 200
    assert (await hub.post(PROPS, new, body)).status_code == 200
    hub.clock.offset = 30_000  # 30 s: the old one is refused, the new one works
    assert error(await hub.post(PROPS, old, body), 403, "IOTDA.000004") == "Invalid access token."
    assert (await hub.post(PROPS, new, body)).status_code == 200
    # the database says the same when the cache is cold (another node, or a restart)
    hub.service._tokens.clear()
    error(await hub.post(PROPS, old, body), 403, "IOTDA.000004")
    assert (await hub.post(PROPS, new, body)).status_code == 200
    # expiry: refused at expires_in seconds
    hub.clock.offset = 86_399_000 - 1
    assert (await hub.post(PROPS, new, body)).status_code == 200
    hub.clock.offset = 86_399_000
    error(await hub.post(PROPS, new, body), 403, "IOTDA.000004")


async def test_token_is_bound_to_its_device_and_required(hub: IotdaHub) -> None:
    body = {"services": [{"service_id": "s", "properties": {"v": 1}}]}
    token = await hub.auth()
    error(await hub.post(f"/v5/devices/{OTHER}/sys/properties/report", token, body), 403, "IOTDA.000004")
    error(await hub.post(f"/v5/devices/{OTHER}/sys/messages/up", token, {"a": 1}), 403, "IOTDA.000004")
    error(await hub.post(PROPS, None, body), 403, "IOTDA.000004")
    error(await hub.post(PROPS, "x" * 40, body), 403, "IOTDA.000004")
    error(await hub.post(PROPS, "x" * 300, body), 403, "IOTDA.000004")
    error(await hub.post("/v5/devices/bad%20id/sys/properties/report", token, body), 400, "IOTDA.000006")
    assert await hub.count_rows() == 0


async def test_token_from_the_database_when_not_cached(hub: IotdaHub) -> None:
    token = await hub.auth()
    hub.service._tokens.clear()
    hub.service._by_device.clear()
    r = await hub.post(PROPS, token, {"services": [{"service_id": "s", "properties": {"v": 1}}]})
    assert r.status_code == 200


# -- property reports ----------------------------------------------------------------------------


async def test_property_report_is_stored_with_event_times(hub: IotdaHub) -> None:
    token = await hub.auth()
    body = {
        "services": [
            {
                "service_id": "motor",
                "properties": {"Height": 124, "Speed": 23.24},
                "event_time": "2021-08-13T10:10:10.555Z",
            },
            {
                "service_id": "env",
                "properties": {"on": True, "name": "x", "obj": {"a": [1]}},
                "event_time": "20210813T101011Z",
            },
            {"service_id": "late", "properties": {"v": 7}, "event_time": "yesterday"},
        ]
    }
    before = hub.clock()
    r = await hub.post(PROPS, token, body)
    assert r.status_code == 200
    st = hub.node.store
    assert st is not None
    latest = await st.data.latest(DIRECT)
    assert latest["motor.Height"] == {"ts": 1628849410555, "value": 124}
    assert latest["motor.Speed"] == {"ts": 1628849410555, "value": 23.24}
    assert latest["env.on"] == {"ts": 1628849411000, "value": True}
    assert latest["env.obj"]["value"] == {"a": [1]}
    assert before <= latest["late.v"]["ts"] <= hub.clock()
    assert await hub.count_rows(DIRECT) == 6


async def test_property_report_shape_errors_store_nothing(hub: IotdaHub) -> None:
    token = await hub.auth()
    for bad in (
        {},
        {"services": []},
        {"services": {}},
        {"services": [{"properties": {"a": 1}}]},
        {"services": [{"service_id": "", "properties": {"a": 1}}]},
        {"services": [{"service_id": "s", "properties": [1]}]},
        {"services": [{"service_id": "s", "properties": {"a": 1}}, "nope"]},
        {"services": [{"service_id": "s", "properties": {"a": None}}]},
        [1, 2],
    ):
        error(await hub.post(PROPS, token, bad), 400, "IOTDA.000006")
    error(await hub.post(PROPS, token, content=b"\xff\xfe"), 400, "IOTDA.000006")
    assert await hub.count_rows() == 0


async def test_thing_model_validation(hub: IotdaHub) -> None:
    token = await hub.auth(OTHER)
    path = f"/v5/devices/{OTHER}/sys/properties/report"
    ok = {"services": [{"service_id": "env", "properties": {"temp": 21.5, "hum": 40, "mode": 1, "label": "abc"}}]}
    assert (await hub.post(path, token, ok)).status_code == 200
    st = hub.node.store
    assert st is not None
    latest = await st.data.latest(OTHER)
    assert set(latest) == {"env.temp", "humidity", "env.mode", "env.label"}  # "hum" maps to key "humidity"
    cases = [
        ({"temp": "hot"}, "services[0].properties.temp"),
        ({"temp": 90}, "services[0].properties.temp"),
        ({"hum": 1.5}, "services[0].properties.hum"),
        ({"mode": 3}, "services[0].properties.mode"),
        ({"label": "far too long"}, "services[0].properties.label"),
        ({"colour": "red"}, "services[0].properties.colour"),
    ]
    for props, field in cases:
        r = await hub.post(path, token, {"services": [{"service_id": "env", "properties": {"hum": 1, **props}}]})
        msg = error(r, 400, "IOTDA.000006")
        assert msg.startswith("Invalid input data.") and field in msg, msg
    # "mode" is declared for service "env" only
    r = await hub.post(path, token, {"services": [{"service_id": "other", "properties": {"mode": 1}}]})
    assert "services[0].properties.mode" in error(r, 400, "IOTDA.000006")
    assert await hub.count_rows(OTHER) == 4


# -- messages ------------------------------------------------------------------------------------


async def test_message_up_is_logged_and_published(hub: IotdaHub) -> None:
    token = await hub.auth()
    sub = hub.node.bus.subscribe(f"t.{TENANT}.message.{DIRECT}")
    try:
        r = await hub.post(MSG, token, {"name": "name", "id": "id", "content": "messageUp"})
        assert r.status_code == 200
        env = await sub.get(timeout=5)
        assert env is not None and env.data["body"] == {"name": "name", "id": "id", "content": "messageUp"}
        assert env.data["type"] == "message"
        assert (await hub.post(MSG, token, content=b"plain text")).status_code == 200
        assert (await hub.post(MSG, token, content=b"\x00\xff")).status_code == 200
    finally:
        sub.close()
    st = hub.node.store
    assert st is not None
    logged = await st.data.events(TENANT, DIRECT, "message")
    assert [e["body"] for e in logged] == [
        {"base64": "AP8="},
        {"raw": "plain text"},
        {"name": "name", "id": "id", "content": "messageUp"},
    ]
    error(await hub.post(MSG, token, content=b""), 400, "IOTDA.000006")


# -- limits and routing --------------------------------------------------------------------------


async def test_body_limit_before_parsing(hub: IotdaHub) -> None:
    token = await hub.auth()
    limit = p.MAX_BODY_BYTES
    big = b'{"services": "' + b"x" * limit + b'"}'
    msg = error(await hub.post(PROPS, token, content=big), 403, "IOTDA.021105")
    assert msg == "The content reported in a single request cannot exceed 1 MB."
    error(await hub.post(MSG, token, content=big), 403, "IOTDA.021105")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(20):
            yield b" " * 65536

    r = await hub.client.post(
        MSG, headers={"access_token": token, "content-type": "application/json"}, content=chunks()
    )
    error(r, 403, "IOTDA.021105")
    error(
        await hub.client.post("/v5/device-auth", content=big, headers={"content-type": "application/json"}),
        403,
        "IOTDA.021105",
    )
    at_limit = b'"' + b"y" * (limit - 2) + b'"'
    assert (await hub.post(MSG, token, content=at_limit)).status_code == 200
    assert await hub.count_rows() == 0 and await hub.count_events() == 1


async def test_unknown_paths_and_methods(hub: IotdaHub) -> None:
    error(await hub.client.get("/v5/nothing"), 404, "IOTDA.000006")
    error(await hub.client.post(f"/v5/devices/{DIRECT}/sys/other"), 404, "IOTDA.000006")
    error(await hub.client.get(PROPS), 405, "IOTDA.000006")
    error(await hub.client.get("/v5/device-auth"), 405, "IOTDA.000006")
    spec = (await hub.client.get("/v5/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/v5/devices/{device_id}/sys/gateway/sub-devices/properties/report" in spec["paths"]


async def test_rate_limit_per_device(tmp_path: Path, db_url: str) -> None:
    async with iotda_hub(tmp_path, db_url, iotda_rate_per_device=1) as hub:  # burst 2
        token = await hub.auth()  # auth takes from the bucket too
        body = {"services": [{"service_id": "s", "properties": {"v": 1}}]}
        assert (await hub.post(PROPS, token, body)).status_code == 200
        r = await hub.post(PROPS, token, body)
        assert error(r, 403, "IOTDA.021101") == "Request reached the maximum rate limit."
        other = await hub.auth(OTHER)  # another device has its own bucket
        r = await hub.post(f"/v5/devices/{OTHER}/sys/messages/up", other, {"a": 1})
        assert r.status_code == 200
        await asyncio.sleep(1.1)
        assert (await hub.post(PROPS, token, body)).status_code == 200
        assert await hub.count_rows(DIRECT) == 2


async def test_rate_limit_per_tenant(tmp_path: Path, db_url: str) -> None:
    async with iotda_hub(tmp_path, db_url, iotda_rate_per_tenant=2) as hub:  # burst 4
        t1 = await hub.auth()
        t2 = await hub.auth(OTHER)
        # a burst from both devices and a device-auth in it: the tenant's bucket (4, refilled at
        # 2/s) runs dry whatever the machine's speed; what was refused is refused with the limit
        ts = hub.now_ts()
        auth = {"device_id": DIRECT, "sign_type": 0, "timestamp": ts, "password": p.password(SECRET, ts)}
        answers = await asyncio.gather(
            *(hub.post(MSG, t1, {"a": i}) for i in range(10)),
            *(hub.post(f"/v5/devices/{OTHER}/sys/messages/up", t2, {"a": i}) for i in range(10)),
            *(hub.client.post("/v5/device-auth", json=auth) for _ in range(5)),
        )
        ok = [r for r in answers[:20] if r.status_code == 200]
        refused = [r for r in answers if r.status_code != 200]
        assert refused and len(ok) <= 18
        for r in refused:
            msg = error(r, 403, "IOTDA.021102")
            assert msg == "The request rate has reached the upper limit of the tenant, limit 2."
        assert any(r.status_code == 403 for r in answers[20:])  # device-auth counts too
        assert await hub.count_events() == len(ok)  # every accepted report stored, no refused one
