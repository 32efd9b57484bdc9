"""The happy paths of the management API that users rely on, against a real node.

Devices (CRUD, paging, filters, rename, move), telemetry (three body shapes, raw queries,
aggregates, latest values, typed values), attributes, the event log, the live event stream and
the ingest counter in /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import httpx
import orjson

from gatehub.domain.model import Presence
from gatehub.store import WriteBatch
from tests.conftest import RunningHub

API = "/api/v1"
T = "T"


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    return r.json() if r.content else None


async def _post(hub: RunningHub, path: str, body: Any, status: int = 200) -> Any:
    return await _ok(await hub.client.post(API + path, json=body), status)


async def _get(hub: RunningHub, path: str, **params: Any) -> Any:
    return await _ok(await hub.client.get(API + path, params=params or None))


async def setup(hub: RunningHub) -> None:
    await _post(hub, "/tenants", {"id": T}, 201)
    for pid, nt in (("pDir", "direct"), ("pGw", "gateway"), ("pSub", "sub-device")):
        await _post(hub, f"/products?tenantId={T}", {"id": pid, "nodeType": nt}, 201)


async def _device(hub: RunningHub, name: str, product: str = "pDir", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "productId": product, **extra}
    path = f"/gateways?tenantId={T}" if product == "pGw" else f"/devices?tenantId={T}"
    out: dict[str, Any] = await _post(hub, path, body, 201)
    return out


# devices --------------------------------------------------------------------------------------


async def test_device_crud_and_paging(hub: RunningHub) -> None:
    await setup(hub)
    created = [await _device(hub, f"dev-{i:02d}") for i in range(25)]
    assert [d["id"] for d in created] == [f"pDir_dev-{i:02d}" for i in range(25)]
    numbers = [d["number"] for d in created]
    assert numbers == sorted(numbers) and len(set(numbers)) == 25
    first = created[0]
    assert first["kind"] == "direct" and first["presence"] == "offline" and first["parentId"] is None
    assert first["tenantId"] == T and first["productId"] == "pDir" and first["topologyVersion"] == 0
    assert len(first["secret"]) == 32 and first["accessToken"]
    # paging: offset/limit/total, ordered by number
    seen: list[str] = []
    for offset, size in ((0, 10), (10, 10), (20, 5)):
        page = await _get(hub, "/devices", tenantId=T, offset=offset, limit=10)
        assert page["total"] == 25 and page["offset"] == offset and page["limit"] == 10
        assert len(page["items"]) == size
        seen += [d["id"] for d in page["items"]]
    assert seen == [d["id"] for d in created]
    past_end = await _get(hub, "/devices", tenantId=T, offset=25)
    assert past_end["items"] == [] and past_end["total"] == 25
    capped = await _get(hub, "/devices", tenantId=T, limit=100_000)
    assert capped["limit"] == hub.node.settings.http_page_limit == 1000 and len(capped["items"]) == 25
    # read, update, delete
    got = await _get(hub, "/devices/pDir_dev-03")
    assert got["name"] == "dev-03" and got["number"] == numbers[3]
    assert got["accessToken"] == created[3]["accessToken"] and "secret" not in got
    explicit = await _device(hub, "explicit", id="my-device_1", accessToken="tok-123", secret="s" * 16)
    assert explicit["id"] == "my-device_1" and explicit["accessToken"] == "tok-123" and explicit["secret"] == "s" * 16
    await _ok(await hub.client.delete(f"{API}/devices/pDir_dev-03"), 204)
    r = await hub.client.get(f"{API}/devices/pDir_dev-03")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    page = await _get(hub, "/devices", tenantId=T, limit=1000)
    assert page["total"] == 25
    assert "pDir_dev-03" not in [d["id"] for d in page["items"]]
    # numbers are not reused
    again = await _device(hub, "dev-03")
    assert again["id"] == "pDir_dev-03" and again["number"] > explicit["number"]


async def test_device_filters(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "gwA", "pGw", id="gwA")
    await _device(hub, "gwB", "pGw", id="gwB")
    for did, name, gw in (("s1", "temp_1", "gwA"), ("s2", "temp%2", "gwA"), ("s3", "tempX3", "gwA"),
                          ("s4", "hum_1", "gwB")):  # fmt: skip
        await _device(hub, name, "pSub", id=did, parentId=gw)
    await _device(hub, "Temp_upper", id="d1")
    await _device(hub, "t", id="d2")

    async def ids(**params: Any) -> list[str]:
        page = await _get(hub, "/devices", tenantId=T, **params)
        assert page["total"] == len(page["items"])
        return sorted(d["id"] for d in page["items"])

    assert await ids() == ["d1", "d2", "gwA", "gwB", "s1", "s2", "s3", "s4"]
    assert await ids(kind="gateway") == ["gwA", "gwB"]
    assert await ids(kind="sub-device") == ["s1", "s2", "s3", "s4"]
    assert await ids(kind="direct") == ["d1", "d2"]
    assert await ids(productId="pSub") == ["s1", "s2", "s3", "s4"]
    assert await ids(productId="pGw") == ["gwA", "gwB"]
    assert await ids(parentId="gwA") == ["s1", "s2", "s3"]
    assert await ids(parentId="gwB") == ["s4"]
    assert await ids(parentId="nope") == []
    # namePrefix is literal: '_' and '%' are not wildcards; case matters
    assert await ids(namePrefix="temp") == ["s1", "s2", "s3"]
    assert await ids(namePrefix="temp_") == ["s1"]
    assert await ids(namePrefix="temp%") == ["s2"]
    assert await ids(namePrefix="%") == []
    assert await ids(namePrefix="_") == []
    assert await ids(namePrefix="hum_") == ["s4"]
    assert await ids(namePrefix="Temp") == ["d1"]
    assert await ids(namePrefix="t") == ["d2", "s1", "s2", "s3"]
    assert await ids(namePrefix="temp_1") == ["s1"]
    assert await ids(namePrefix="temp_12") == []
    assert await ids(kind="sub-device", parentId="gwA", namePrefix="temp%") == ["s2"]
    # presence (set the way a transport sets it), including offline because of the gateway
    devs = hub.node.store
    assert devs is not None
    assert await ids(presence="offline") == ["d1", "d2", "gwA", "gwB", "s1", "s2", "s3", "s4"]
    await devs.devices.set_presence(T, "gwA", Presence.ONLINE)
    await devs.devices.set_presence(T, "s1", Presence.ONLINE)
    await devs.devices.set_presence(T, "gwB", Presence.ONLINE)
    assert await ids(presence="online") == ["gwA", "gwB", "s1"]
    await devs.devices.set_presence(T, "gwA", Presence.OFFLINE)
    assert await ids(presence="online") == ["gwB"]
    assert await ids(presence="offline-gateway") == ["s1"]
    assert await ids(presence="offline-gateway", parentId="gwB") == []
    gws = await _get(hub, "/gateways", tenantId=T, presence="online")
    assert [g["id"] for g in gws["items"]] == ["gwB"] and gws["total"] == 1
    gw = await _get(hub, "/gateways/gwB")
    assert gw["isConnected"] is True and gw["presence"] == "online"
    assert (await _get(hub, "/gateways/gwA"))["isConnected"] is False


async def test_rename_keeps_identity_and_history(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "gw", "pGw", id="gw")
    dev = await _device(hub, "old name", "pSub", id="sub", parentId="gw")
    await _post(hub, "/devices/sub/telemetry", [{"ts": 1000, "values": {"t": 1}}, {"ts": 2000, "values": {"t": 2}}])
    await _post(hub, "/devices/sub/attributes/server", {"note": "kept"})
    renamed = await _ok(await hub.client.patch(f"{API}/devices/sub", json={"name": "new name"}))
    assert renamed["name"] == "new name"
    assert (renamed["id"], renamed["number"], renamed["parentId"]) == ("sub", dev["number"], "gw")
    await _post(hub, "/devices/sub/telemetry", {"ts": 3000, "values": {"t": 3}})
    tel = await _get(hub, "/devices/sub/telemetry", start=0)
    assert tel == {"t": [{"ts": 1000, "value": 1}, {"ts": 2000, "value": 2}, {"ts": 3000, "value": 3}]}
    assert await _get(hub, "/devices/sub/attributes") == {"server": {"note": "kept"}}
    assert [d["id"] for d in (await _get(hub, "/devices", tenantId=T, namePrefix="new"))["items"]] == ["sub"]
    assert (await _get(hub, "/devices", tenantId=T, namePrefix="old"))["items"] == []
    children = await _get(hub, "/gateways/gw/devices")
    assert [(c["id"], c["name"]) for c in children["items"]] == [("sub", "new name")]
    # the old name is free again, for a different device with a history of its own
    other = await _device(hub, "old name", "pSub", id="sub2", parentId="gw")
    assert other["number"] != dev["number"]
    assert await _get(hub, "/devices/sub2/telemetry", start=0) == {}


async def test_move_sub_device_between_gateways(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "gwA", "pGw", id="gwA")
    await _device(hub, "gwB", "pGw", id="gwB")
    sub = await _device(hub, "sub", "pSub", id="sub", parentId="gwA")

    async def versions() -> tuple[int, int]:
        a = await _get(hub, "/gateways/gwA/devices")
        b = await _get(hub, "/gateways/gwB/devices")
        return a["topologyVersion"], b["topologyVersion"]

    assert await versions() == (1, 0)
    moved = await _ok(await hub.client.patch(f"{API}/devices/sub", json={"parentId": "gwB"}))
    assert moved["parentId"] == "gwB"
    assert await versions() == (2, 1)
    assert (await _get(hub, "/gateways/gwA/devices"))["items"] == []
    assert [c["id"] for c in (await _get(hub, "/gateways/gwB/devices"))["items"]] == ["sub"]
    assert (await _get(hub, "/gateways/gwB"))["deviceIDs"] == [sub["number"]]
    assert (await _get(hub, "/gateways/gwA"))["deviceIDs"] == []
    # to the same gateway again: nothing changes
    await _ok(await hub.client.patch(f"{API}/devices/sub", json={"parentId": "gwB"}))
    assert await versions() == (2, 1)
    # detach
    detached = await _ok(await hub.client.patch(f"{API}/devices/sub", json={"parentId": None}))
    assert detached["parentId"] is None
    assert await versions() == (2, 2)
    assert (await _get(hub, "/devices/sub"))["parentId"] is None
    # the name and the history do not care
    assert detached["name"] == "sub" and detached["number"] == sub["number"]


# telemetry -----------------------------------------------------------------------------------


async def test_telemetry_shapes_and_raw_queries(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    before = int(time.time() * 1000)
    assert await _post(hub, "/devices/d/telemetry", {"now1": 1, "now2": "x"}) == {"stored": 2}
    after = int(time.time() * 1000)
    assert await _post(hub, "/devices/d/telemetry", {"ts": 500, "values": {"hum": 40, "temp": 0}}) == {"stored": 2}
    body = [{"ts": ts, "values": {"temp": ts // 1000}} for ts in range(1000, 11000, 1000)]
    body.append({"hum": 41})  # a plain object inside a list: now
    assert await _post(hub, "/devices/d/telemetry", body) == {"stored": 11}
    everything = await _get(hub, "/devices/d/telemetry")
    assert sorted(everything) == ["hum", "now1", "now2", "temp"]
    (now1,) = everything["now1"]
    assert now1["value"] == 1 and before <= now1["ts"] <= after + 1000
    assert everything["now2"][0]["value"] == "x"
    assert [p["value"] for p in everything["temp"]] == list(range(0, 11))
    assert [p["value"] for p in everything["hum"]] == [40, 41]
    # start inclusive, end exclusive, keys
    win = await _get(hub, "/devices/d/telemetry", keys="temp", start=3000, end=6000)
    assert win == {"temp": [{"ts": 3000, "value": 3}, {"ts": 4000, "value": 4}, {"ts": 5000, "value": 5}]}
    assert await _get(hub, "/devices/d/telemetry", keys="temp", start=10001) == {}
    # order and limit
    desc = await _get(hub, "/devices/d/telemetry", keys="temp", order="desc", limit=3)
    assert [p["ts"] for p in desc["temp"]] == [10000, 9000, 8000]
    asc = await _get(hub, "/devices/d/telemetry", keys="temp", order="asc", limit=2, start=600)
    assert [p["ts"] for p in asc["temp"]] == [1000, 2000]
    two = await _get(hub, "/devices/d/telemetry", keys="temp, hum", start=0, end=1001)
    assert two == {"hum": [{"ts": 500, "value": 40}], "temp": [{"ts": 500, "value": 0}, {"ts": 1000, "value": 1}]}
    # the same (ts, key) again: the newer value wins, no duplicate point
    await _post(hub, "/devices/d/telemetry", {"ts": 2000, "values": {"temp": 200.5}})
    again = await _get(hub, "/devices/d/telemetry", keys="temp", start=1500, end=2500)
    assert again == {"temp": [{"ts": 2000, "value": 200.5}]}
    # the same key twice in one body (a list): the later one wins
    await _post(
        hub, "/devices/d/telemetry", [{"ts": 7000, "values": {"temp": -1}}, {"ts": 7000, "values": {"temp": -2}}]
    )
    assert await _get(hub, "/devices/d/telemetry", keys="temp", start=7000, end=7001) == {
        "temp": [{"ts": 7000, "value": -2}]
    }


async def test_aggregates(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    points = [{"ts": ts, "values": {"v": ts // 1000}} for ts in range(1000, 11000, 1000)]  # v = 1..10
    points += [
        {"ts": 1000, "values": {"flag": True, "label": "a"}},
        {"ts": 2000, "values": {"flag": False, "label": "b"}},
        {"ts": 6000, "values": {"f": 0.25}},
        {"ts": 7000, "values": {"f": 0.5}},
    ]
    await _post(hub, "/devices/d/telemetry", points)

    async def agg(kind: str, keys: str = "v", start: int = 0, end: int = 15000, interval: int = 5000) -> Any:
        return await _get(hub, "/devices/d/telemetry", agg=kind, keys=keys, start=start, end=end, interval=interval)

    # buckets [0,5000) -> 1..4, [5000,10000) -> 5..9, [10000,15000) -> 10
    assert await agg("min") == {
        "v": [{"ts": 0, "value": 1.0, "count": 4}, {"ts": 5000, "value": 5.0, "count": 5},
              {"ts": 10000, "value": 10.0, "count": 1}]}  # fmt: skip
    assert [b["value"] for b in (await agg("max"))["v"]] == [4.0, 9.0, 10.0]
    assert [b["value"] for b in (await agg("sum"))["v"]] == [10.0, 35.0, 10.0]
    assert [b["value"] for b in (await agg("avg"))["v"]] == [2.5, 7.0, 10.0]
    counts = await agg("count")
    assert [(b["ts"], b["value"]) for b in counts["v"]] == [(0, 4), (5000, 5), (10000, 1)]
    assert all(type(b["value"]) is int for b in counts["v"])
    # one bucket over everything, with an offset start
    whole = await agg("sum", start=500, end=20000, interval=100_000)
    assert whole == {"v": [{"ts": 500, "value": 55.0, "count": 10}]}
    # end is exclusive: 10000 left out
    assert (await agg("sum", start=0, end=10000, interval=100_000))["v"][0]["value"] == 45.0
    # bools are numbers (avg of True, False), floats too; strings only count
    assert (await agg("avg", keys="flag", interval=100_000))["flag"][0]["value"] == 0.5
    assert (await agg("sum", keys="f", interval=100_000))["f"][0]["value"] == 0.75
    assert await agg("avg", keys="label") == {}
    assert (await agg("count", keys="label", interval=100_000))["label"] == [{"ts": 0, "value": 2, "count": 2}]
    # several keys at once, all keys when none named
    both = await _get(hub, "/devices/d/telemetry", agg="max", start=0, end=15000, interval=100_000)
    assert {k: [b["value"] for b in v] for k, v in both.items()} == {"v": [10.0], "flag": [1.0], "f": [0.5]}
    # no range given: from the epoch to now, and only intervals holding data come back (1 ms buckets
    # over decades of range are fine when the data is sparse)
    fine = await _get(hub, "/devices/d/telemetry", agg="count", keys="f", interval=1)
    assert fine == {"f": [{"ts": 6000, "value": 1, "count": 1}, {"ts": 7000, "value": 1, "count": 1}]}


async def test_latest_values(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    assert await _get(hub, "/devices/d/telemetry/latest") == {}
    await _post(hub, "/devices/d/telemetry", {"ts": 5000, "values": {"a": 5, "b": "five"}})
    await _post(hub, "/devices/d/telemetry", {"ts": 3000, "values": {"a": 3, "c": True}})  # older: a stays
    await _post(hub, "/devices/d/telemetry", {"ts": 6000, "values": {"b": "six"}})
    latest = await _get(hub, "/devices/d/telemetry/latest")
    assert latest == {"a": {"ts": 5000, "value": 5}, "b": {"ts": 6000, "value": "six"},
                      "c": {"ts": 3000, "value": True}}  # fmt: skip
    assert await _get(hub, "/devices/d/telemetry/latest", keys="a,c") == {
        "a": {"ts": 5000, "value": 5},
        "c": {"ts": 3000, "value": True},
    }
    # the same ts again replaces the latest value too
    await _post(hub, "/devices/d/telemetry", {"ts": 5000, "values": {"a": 55}})
    assert (await _get(hub, "/devices/d/telemetry/latest", keys="a"))["a"] == {"ts": 5000, "value": 55}


TYPED: dict[str, Any] = {
    "bool_t": True,
    "bool_f": False,
    "int": 42,
    "neg": -7,
    "zero": 0,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "float": 3.25,
    "float_whole": 2.0,
    "tiny": 1e-300,
    "str": "hello",
    "empty": "",
    "unicode": "héllo ✓ 温度",
    "numeric_str": "42",
    "obj": {"a": [1, 2, {"b": None}], "c": "d"},
    "list": [1, "x", False],
    "empty_obj": {},
}


def _assert_same_typed(got: Any, want: Any, key: str) -> None:
    assert got == want, key
    assert type(got) is type(want), (key, type(got), type(want))
    if isinstance(want, dict):
        for k in want:
            _assert_same_typed(got[k], want[k], f"{key}.{k}")
    if isinstance(want, list):
        for n, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_typed(g, w, f"{key}[{n}]")


async def test_typed_values_round_trip(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    await _post(hub, "/devices/d/telemetry", {"ts": 1000, "values": TYPED})
    raw = await _get(hub, "/devices/d/telemetry", start=0)
    latest = await _get(hub, "/devices/d/telemetry/latest")
    assert sorted(raw) == sorted(TYPED) == sorted(latest)
    for key, want in TYPED.items():
        _assert_same_typed(raw[key][0]["value"], want, key)
        _assert_same_typed(latest[key]["value"], want, key)
    # an integer beyond int64 is kept as a number (a float)
    await _post(hub, "/devices/d/telemetry", {"ts": 2000, "values": {"big": 2**64}})
    big = (await _get(hub, "/devices/d/telemetry", keys="big", start=0))["big"][0]["value"]
    assert big == float(2**64) and type(big) is float
    # attributes keep their JSON types as well
    await _post(hub, "/devices/d/attributes/server", TYPED)
    attrs = (await _get(hub, "/devices/d/attributes", scope="server"))["server"]
    for key, want in TYPED.items():
        _assert_same_typed(attrs[key], want, key)


# attributes ----------------------------------------------------------------------------------


async def test_shared_and_server_attributes(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    assert await _get(hub, "/devices/d/attributes") == {}
    assert await _post(hub, "/devices/d/attributes/shared", {"mode": "eco", "interval": 30}) == {
        "updated": ["interval", "mode"]
    }
    assert await _post(hub, "/devices/d/attributes/server", {"mode": "server-side", "room": 7}) == {
        "updated": ["mode", "room"]
    }
    assert await _get(hub, "/devices/d/attributes") == {
        "shared": {"interval": 30, "mode": "eco"},
        "server": {"mode": "server-side", "room": 7},
    }
    assert await _get(hub, "/devices/d/attributes", scope="shared") == {"shared": {"interval": 30, "mode": "eco"}}
    assert await _get(hub, "/devices/d/attributes", keys="mode") == {
        "shared": {"mode": "eco"},
        "server": {"mode": "server-side"},
    }
    assert await _get(hub, "/devices/d/attributes", scope="client") == {}
    t0 = int(time.time() * 1000)
    await _post(hub, "/devices/d/attributes/shared", {"interval": 60})
    detailed = await _get(hub, "/devices/d/attributes/shared")
    assert [(a["key"], a["value"]) for a in detailed] == [("interval", 60), ("mode", "eco")]
    assert detailed[0]["lastUpdateTs"] >= t0 - 1000
    assert detailed[1]["lastUpdateTs"] <= detailed[0]["lastUpdateTs"]
    # delete: only the named keys, only in the named scope; unknown keys are no error
    await _ok(await hub.client.delete(f"{API}/devices/d/attributes/shared", params={"keys": "mode,nope"}), 204)
    assert await _get(hub, "/devices/d/attributes") == {
        "shared": {"interval": 60},
        "server": {"mode": "server-side", "room": 7},
    }
    await _ok(await hub.client.delete(f"{API}/devices/d/attributes/server", params={"keys": "room"}), 204)
    await _ok(await hub.client.delete(f"{API}/devices/d/attributes/server", params={"keys": "room"}), 204)
    server = await _get(hub, "/devices/d/attributes/server")
    assert [(a["key"], a["value"]) for a in server] == [("mode", "server-side")]
    # deleting the device deletes its attributes and data
    await _post(hub, "/devices/d/telemetry", {"x": 1})
    await _ok(await hub.client.delete(f"{API}/devices/d"), 204)
    await _device(hub, "d", id="d")
    assert await _get(hub, "/devices/d/attributes") == {}
    assert await _get(hub, "/devices/d/telemetry", start=0) == {}
    assert await _get(hub, "/devices/d/telemetry/latest") == {}


# events ---------------------------------------------------------------------------------------


async def test_event_log(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d1", id="d1")
    await _device(hub, "d2", id="d2")
    await _post(hub, "/tenants", {"id": "U"}, 201)
    assert hub.node.writer is not None
    await hub.node.writer.write(WriteBatch(T, events=[
        (T, "d1", 1000, "message", '{"n": 1}'),
        (T, "d2", 2000, "message", '{"n": 2}'),
        (T, "d1", 3000, "alarm", '{"n": 3, "level": "high"}'),
        (T, None, 4000, "message", '{"n": 4}'),
    ]))  # fmt: skip
    await hub.node.writer.write(WriteBatch("U", events=[("U", None, 2500, "message", '{"n": "other tenant"}')]))
    log = await _get(hub, "/events", tenantId=T)
    assert [e["body"]["n"] for e in log["items"]] == [4, 3, 2, 1]  # newest first
    first = log["items"][-1]
    assert (first["deviceId"], first["ts"], first["type"]) == ("d1", 1000, "message")
    assert isinstance(first["id"], int)
    assert [e["body"]["n"] for e in (await _get(hub, "/events", tenantId=T, deviceId="d1"))["items"]] == [3, 1]
    assert [e["body"]["n"] for e in (await _get(hub, "/events", tenantId=T, type="alarm"))["items"]] == [3]
    assert (await _get(hub, "/events", tenantId=T, type="alarm"))["items"][0]["body"]["level"] == "high"
    window = await _get(hub, "/events", tenantId=T, start=2000, end=4000)
    assert [e["body"]["n"] for e in window["items"]] == [3, 2]
    assert [e["body"]["n"] for e in (await _get(hub, "/events", tenantId=T, limit=2))["items"]] == [4, 3]
    assert [e["body"]["n"] for e in (await _get(hub, "/events", tenantId="U"))["items"]] == ["other tenant"]


class Sse:
    """Reads server-sent events from a streaming httpx response."""

    def __init__(self, resp: httpx.Response) -> None:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        self.lines = resp.aiter_lines()

    async def connected(self) -> None:
        assert await asyncio.wait_for(self.lines.__anext__(), 5) == ": connected"

    async def frames(self, want: int, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []

        async def go() -> None:
            event = None
            async for line in self.lines:
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event is not None:
                    out.append((event, orjson.loads(line[len("data: ") :])))
                    event = None
                    if len(out) >= want:
                        return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(go(), timeout)
        return out


async def test_event_stream(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d1", id="d1")
    await _device(hub, "d2", id="d2")
    await _device(hub, "gw", "pGw", id="gw")
    await _device(hub, "sub", "pSub", id="sub")
    await _post(hub, "/devices/d1/attributes/shared", {"gone": 1})
    async with hub.client.stream("GET", f"{API}/events/stream", params={"tenantId": T}) as resp:
        sse = Sse(resp)
        assert resp.headers["cache-control"] == "no-cache"
        await sse.connected()
        await _post(
            hub, "/devices/d1/telemetry", [{"ts": 1000, "values": {"t": 21.5}}, {"ts": 2000, "values": {"t": 22}}]
        )
        await _post(hub, "/devices/d1/attributes/shared", {"mode": "eco", "n": 2})
        await _ok(await hub.client.delete(f"{API}/devices/d1/attributes/shared", params={"keys": "gone"}), 204)
        await _ok(await hub.client.patch(f"{API}/devices/sub", json={"parentId": "gw"}))
        assert hub.node.store is not None
        await hub.node.store.devices.set_presence(T, "d2", Presence.ONLINE)
        frames = await sse.frames(5)
    assert [e for e, _ in frames] == ["telemetry", "attributes", "attributes", "topology", "status"]
    tel, attrs, deleted, topo, status = (d for _, d in frames)
    assert tel == {"type": "telemetry", "deviceId": "d1", "data": {"t": [[1000, 21.5], [2000, 22]]}}
    assert attrs == {"type": "attributes", "deviceId": "d1", "scope": "shared", "data": {"mode": "eco", "n": 2}}
    assert deleted["deviceId"] == "d1" and deleted["deleted"] == ["gone"] and deleted["data"] == {}
    assert (topo["gatewayId"], topo["added"], topo["removed"]) == ("gw", ["sub"], [])
    assert (status["deviceId"], status["presence"]) == ("d2", "online")


async def test_event_stream_filters(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d1", id="d1")
    await _device(hub, "d2", id="d2")
    # by type: telemetry is skipped, attributes pass
    async with hub.client.stream("GET", f"{API}/events/stream", params={"tenantId": T, "types": "attributes"}) as r:
        sse = Sse(r)
        await sse.connected()
        await _post(hub, "/devices/d1/telemetry", {"skipped": 1})
        await _post(hub, "/devices/d1/attributes/server", {"wanted": 1})
        frames = await sse.frames(1)
    assert [(e, d["deviceId"], d["data"]) for e, d in frames] == [("attributes", "d1", {"wanted": 1})]
    # by device: d1's changes are skipped, d2's pass
    async with hub.client.stream("GET", f"{API}/events/stream", params={"tenantId": T, "deviceId": "d2"}) as r:
        sse = Sse(r)
        await sse.connected()
        await _post(hub, "/devices/d1/telemetry", {"other": 1})
        await _post(hub, "/devices/d1/attributes/server", {"other": 1})
        await _post(hub, "/devices/d2/telemetry", {"ts": 5, "values": {"mine": 2}})
        frames = await sse.frames(1)
    assert frames == [("telemetry", {"type": "telemetry", "deviceId": "d2", "data": {"mine": [[5, 2]]}})]
    # both, and several types
    params = {"tenantId": T, "deviceId": "d1", "types": "telemetry,status"}
    async with hub.client.stream("GET", f"{API}/events/stream", params=params) as r:
        sse = Sse(r)
        await sse.connected()
        await _post(hub, "/devices/d1/attributes/server", {"skipped": 1})
        await _post(hub, "/devices/d2/telemetry", {"skipped": 1})
        await _post(hub, "/devices/d1/telemetry", {"ts": 7, "values": {"x": True}})
        frames = await sse.frames(1)
    assert frames == [("telemetry", {"type": "telemetry", "deviceId": "d1", "data": {"x": [[7, True]]}})]


# metrics --------------------------------------------------------------------------------------


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


async def test_metrics_count_ingested_rows(hub: RunningHub) -> None:
    await setup(hub)
    await _device(hub, "d", id="d")
    r = await hub.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    rows0 = _metric(r.text, "gatehub_ingest_rows_total")
    batches0 = _metric(r.text, "gatehub_ingest_batches_total")
    await _post(hub, "/devices/d/telemetry", {"a": 1, "b": 2, "c": 3})
    await _post(hub, "/devices/d/telemetry", [{"ts": 1, "values": {"a": 1}}, {"ts": 2, "values": {"a": 2}}])
    await _post(hub, "/devices/d/attributes/shared", {"not": "a row"})
    text = (await hub.client.get("/metrics")).text
    assert _metric(text, "gatehub_ingest_rows_total") == rows0 + 5
    assert _metric(text, "gatehub_ingest_batches_total") == batches0 + 3
    assert _metric(text, "gatehub_ingest_queue_depth") == 0
    assert _metric(text, "gatehub_uptime_seconds") > 0
    # a refused body adds nothing
    r = await hub.client.post(f"{API}/devices/d/telemetry", json={"a": None})
    assert r.status_code == 400
    assert _metric((await hub.client.get("/metrics")).text, "gatehub_ingest_rows_total") == rows0 + 5
