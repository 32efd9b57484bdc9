"""IoTDA gateway batch reports (50 children, ownership, all-or-nothing) and curl against the hub CA."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gatehub.protocols import iotda as p
from tests.integration.iotda_helpers import DIRECT, GATEWAY, GATEWAY2, SECRET, TENANT, IotdaHub, error, iotda_hub

BATCH = f"/v5/devices/{GATEWAY}/sys/gateway/sub-devices/properties/report"


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[IotdaHub]:
    async with iotda_hub(tmp_path, db_url, n_children=50) as h:
        yield h


def child(device_id: str, **props: object) -> dict[str, object]:
    return {
        "device_id": device_id,
        "services": [{"service_id": "env", "properties": props or {"t": 1}, "event_time": "20240101T000000Z"}],
    }


async def test_batch_of_50_children_is_stored(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    body = {"devices": [child(c, t=n, ok=True) for n, c in enumerate(hub.children)]}
    r = await hub.post(BATCH, token, body)
    assert r.status_code == 200, r.text
    assert await hub.count_rows() == 100
    st = hub.node.store
    assert st is not None
    assert (await st.data.latest("c07"))["env.t"] == {"ts": 1704067200000, "value": 7}


async def test_more_than_50_children_refused(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    body = {"devices": [child(c) for c in hub.children] + [child("c00")]}
    msg = error(await hub.post(BATCH, token, body), 403, "IOTDA.021103")
    assert msg == "The number of child devices in the request has reached the upper limit (50)."
    assert await hub.count_rows() == 0


async def test_children_of_another_gateway_or_unknown_refused_and_nothing_stored(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    expected = "Subdevices in the request does not exist or does not belong to the gateway."
    for stranger in ("cx", "nobody", GATEWAY, DIRECT):  # another gateway's child, unknown, itself, a direct device
        body = {"devices": [child("c00"), child("c01"), child(stranger)]}
        assert error(await hub.post(BATCH, token, body), 400, "IOTDA.021104") == expected
    # a gateway without children owns nobody
    token2 = await hub.auth(GATEWAY2)
    r = await hub.post(
        f"/v5/devices/{GATEWAY2}/sys/gateway/sub-devices/properties/report", token2, {"devices": [child("c00")]}
    )
    error(r, 400, "IOTDA.021104")
    assert await hub.count_rows() == 0


async def test_invalid_child_data_stores_nothing(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    # "cm" has a thing model: env.temp is a float in [-40, 85]
    body = {"devices": [child("c00"), child("cm", temp=200)]}
    msg = error(await hub.post(BATCH, token, body), 400, "IOTDA.000006")
    assert "devices[1].services[0].properties.temp" in msg
    for bad in (
        {"devices": []},
        {"devices": [{"device_id": "c00"}]},
        {"devices": [{"device_id": "no such!", "services": []}]},
        {},
    ):
        error(await hub.post(BATCH, token, bad), 400, "IOTDA.000006")
    assert await hub.count_rows() == 0
    r = await hub.post(BATCH, token, {"devices": [child("c00"), child("cm", temp=20.5)]})
    assert r.status_code == 200
    assert await hub.count_rows() == 2


async def test_topology_change_is_seen_at_once(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    assert (await hub.post(BATCH, token, {"devices": [child("c05")]})).status_code == 200  # now cached
    st = hub.node.store
    assert st is not None
    await st.devices.set_parent(TENANT, "c05", GATEWAY2)
    await asyncio.sleep(0.05)  # the bus delivers the topology event to the listener's task
    error(await hub.post(BATCH, token, {"devices": [child("c05")]}), 400, "IOTDA.021104")
    await st.devices.set_parent(TENANT, "cx", GATEWAY)
    await asyncio.sleep(0.05)
    assert (await hub.post(BATCH, token, {"devices": [child("cx")]})).status_code == 200


async def test_batch_body_limit(hub: IotdaHub) -> None:
    token = await hub.auth(GATEWAY)
    big = json.dumps({"devices": [child("c00", pad="z" * p.MAX_BODY_BYTES)]}).encode()
    error(await hub.post(BATCH, token, content=big), 403, "IOTDA.021105")
    assert await hub.count_rows() == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_versions_and_http_10(hub: IotdaHub) -> None:
    old = ssl.create_default_context(cafile=str(hub.ca_file))
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        async with httpx.AsyncClient(verify=old, timeout=10) as c:
            await c.get(f"{hub.url}/v5/openapi.json")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(hub.ca_file))
        ctx.minimum_version = ctx.maximum_version = version
        async with httpx.AsyncClient(verify=ctx, timeout=10) as c:
            assert (await c.get(f"{hub.url}/v5/openapi.json")).status_code == 200
    # HTTP/1.0 by hand over TLS
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", hub.port, ssl=ssl.create_default_context(cafile=str(hub.ca_file)), server_hostname="127.0.0.1"
        ),
        10,
    )
    ts = hub.now_ts()
    body = json.dumps(
        {"device_id": DIRECT, "sign_type": 0, "timestamp": ts, "password": p.password(SECRET, ts)}
    ).encode()
    writer.write(
        b"POST /v5/device-auth HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert b"access_token" in answer


async def _curl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, (out + err).decode()


async def test_curl_against_the_hub_ca(hub: IotdaHub) -> None:
    ts = hub.now_ts()
    auth = json.dumps({"device_id": GATEWAY, "sign_type": 1, "timestamp": ts, "password": p.password(SECRET, ts)})
    rc, out = await _curl(
        "--cacert", str(hub.ca_file), "-H", "Content-Type: application/json", "-d", auth, f"{hub.url}/v5/device-auth"
    )
    assert rc == 0, out
    token = json.loads(out)["access_token"]
    report = json.dumps({"devices": [child("c01", Height=124, Speed=23.24)]})
    for flag in ("--http1.1", "--http1.0"):
        rc, out = await _curl(
            flag, "--cacert", str(hub.ca_file), "-H", f"access_token: {token}", "-H", "Content-Type: application/json",
            "-d", report, "-w", "%{http_code} %{http_version}", f"{hub.url}{BATCH}",
        )  # fmt: skip
        assert rc == 0 and out.startswith("200 1."), out
    props = json.dumps({"services": [{"service_id": "s", "properties": {"v": 1}}]})
    # curl -d alone sends application/x-www-form-urlencoded: refused (415), nothing stored
    rc, out = await _curl(
        "--cacert", str(hub.ca_file), "-H", f"access_token: {token}", "-d", props,
        f"{hub.url}/v5/devices/{GATEWAY}/sys/properties/report", "-w", " %{http_code}",
    )  # fmt: skip
    assert out.endswith(" 415") and '"IOTDA.000006"' in out and "x-www-form-urlencoded" in out, out
    rc, out = await _curl(
        "--cacert", str(hub.ca_file), "-H", f"access_token: {token}", "-H", "Content-Type: application/json",
        "-d", props, f"{hub.url}/v5/devices/{GATEWAY}/sys/properties/report", "-w", "%{http_code}",
    )  # fmt: skip
    assert out == "200", out
    rc, out = await _curl(
        "--cacert",
        str(hub.ca_file),
        "-H",
        f"access_token: {token}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"m":1}',
        "-w",
        " %{http_code}",
        f"{hub.url}/v5/devices/{GATEWAY}/sys/messages/up",
    )
    assert out == " 200", out
    rc, out = await _curl(
        "--cacert",
        str(hub.ca_file),
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
        "-w",
        " %{http_code}",
        f"{hub.url}/v5/devices/{GATEWAY}/sys/messages/up",
    )
    assert out.endswith(" 403") and '"IOTDA.000004"' in out, out
    # without trusting the hub CA curl refuses the server; TLS 1.1 is refused by the hub
    rc, out = await _curl("-d", "{}", f"{hub.url}/v5/device-auth")
    assert rc != 0
    rc, out = await _curl(
        "--cacert", str(hub.ca_file), "--tlsv1.0", "--tls-max", "1.1", "-d", "{}", f"{hub.url}/v5/device-auth"
    )
    assert rc != 0
    assert await hub.count_rows() == 3
