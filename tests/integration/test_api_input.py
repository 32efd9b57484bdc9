"""Bad input to every route of the management API: a clear 4xx JSON error, and nothing changes.

Each case sends one bad request, checks the status and the error body
``{"error": {"code", "message"}}``, and then checks that the hub's state (as the system
administrator reads it) is exactly what it was before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tests.conftest import RunningHub

API = "/api/v1"
T = "T"

#: a request: (method, path, body); a bytes body is sent raw as application/json
Req = tuple[str, str, Any]


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    return r.json() if r.content else None


async def build(hub: RunningHub) -> None:
    """Tenant T: products of each node type, a gateway with a sub-device, a direct device, a customer."""
    c = hub.client
    await _ok(await c.post(f"{API}/tenants", json={"id": T}), 201)
    await _ok(await c.post(f"{API}/customers?tenantId={T}", json={"id": "c1"}), 201)
    for pid, nt in (("pDir", "direct"), ("pGw", "gateway"), ("pSub", "sub-device")):
        await _ok(await c.post(f"{API}/products?tenantId={T}", json={"id": pid, "nodeType": nt}), 201)
    await _ok(
        await c.post(f"{API}/gateways?tenantId={T}", json={"id": "gw1", "name": "gateway one", "productId": "pGw"}),
        201,
    )
    await _ok(
        await c.post(
            f"{API}/devices?tenantId={T}",
            json={"id": "d1", "name": "device one", "productId": "pDir", "accessToken": "token-d1"},
        ),
        201,
    )
    await _ok(
        await c.post(
            f"{API}/devices?tenantId={T}", json={"id": "s1", "name": "sub one", "productId": "pSub", "parentId": "gw1"}
        ),
        201,
    )
    await _ok(await c.post(f"{API}/devices/d1/telemetry", json={"ts": 1000, "values": {"t": 1.5, "n": 3}}))
    await _ok(await c.post(f"{API}/devices/d1/attributes/shared", json={"mode": "eco"}))
    await _ok(await c.post(f"{API}/devices/d1/attributes/server", json={"room": 7}))
    await _ok(await c.post(f"{API}/apikeys", json={"name": "viewer", "role": "viewer", "tenantId": T}), 201)


STATE_PATHS = {
    "tenants": "/tenants",
    "customers": f"/customers?tenantId={T}",
    "apikeys": "/apikeys",
    "products": f"/products?tenantId={T}",
    "devices": f"/devices?tenantId={T}",
    "children": "/gateways/gw1/devices",
    "telemetry": "/devices/d1/telemetry?start=0",
    "latest": "/devices/d1/telemetry/latest",
    "attributes": "/devices/d1/attributes",
    "s1attributes": "/devices/s1/attributes",
}


async def state(hub: RunningHub, names: Sequence[str] = tuple(STATE_PATHS)) -> dict[str, Any]:
    """What the system administrator sees of tenant T."""
    return {n: await _ok(await hub.client.get(API + STATE_PATHS[n])) for n in names}


def _check_error(r: httpx.Response, status: int, code: str | None) -> None:
    where = (r.request.method, str(r.request.url)[:200], r.status_code, r.text[:300])
    assert r.status_code == status, where
    assert r.headers["content-type"].startswith("application/json"), where
    body = r.json()
    assert set(body) == {"error"}, where
    err = body["error"]
    assert {"code", "message"} <= set(err), where
    assert isinstance(err["code"], str) and err["code"], where
    assert isinstance(err["message"], str) and err["message"], where
    if code is not None:
        assert err["code"] == code, where


async def _send(client: httpx.AsyncClient, req: Req) -> httpx.Response:
    method, path, body = req
    if isinstance(body, bytes):
        return await client.request(method, API + path, content=body, headers={"content-type": "application/json"})
    if body is None:
        return await client.request(method, API + path)
    return await client.request(method, API + path, json=body)


async def expect_refused(hub: RunningHub, watch: Sequence[str], cases: list[tuple[Req, int, str | None]]) -> None:
    """Send each bad request; each must fail as stated. After each one the ``watch`` part of the
    state is checked, after all of them the whole state."""
    before = await state(hub)
    for req, status, code in cases:
        r = await _send(hub.client, req)
        _check_error(r, status, code)
        now = await state(hub, watch)
        assert now == {n: before[n] for n in watch}, f"state changed by {req[0]} {req[1]}"
    assert await state(hub) == before


BAD = "invalid_input"
NF = "not_found"
DUP = "already_exists"


async def test_tenant_input(hub: RunningHub) -> None:
    await build(hub)
    await expect_refused(
        hub,
        ("tenants",),
        [
            (("POST", "/tenants", {}), 400, BAD),
            (("POST", "/tenants", {"id": 5}), 400, BAD),
            (("POST", "/tenants", {"id": None}), 400, BAD),
            (("POST", "/tenants", {"id": ""}), 400, BAD),
            (("POST", "/tenants", {"id": "has space"}), 400, BAD),
            (("POST", "/tenants", {"id": "x" * 129}), 400, BAD),
            (("POST", "/tenants", {"id": "ténant"}), 400, BAD),
            (("POST", "/tenants", {"id": "a/b"}), 400, BAD),
            (("POST", "/tenants", {"id": "ok", "extra": 1}), 400, BAD),
            (("POST", "/tenants", {"id": "ok", "name": "x" * 256}), 400, BAD),
            (("POST", "/tenants", {"id": "ok", "name": "line\nbreak"}), 400, BAD),
            (("POST", "/tenants", {"id": "ok", "name": "   "}), 400, BAD),
            (("POST", "/tenants", {"id": "administrator"}), 400, BAD),
            (("POST", "/tenants", [{"id": "ok"}]), 400, BAD),
            (("POST", "/tenants", b'{"id": "ok"'), 400, BAD),
            (("POST", "/tenants", b""), 400, BAD),
            (("POST", "/tenants", {"id": T}), 409, DUP),
            (("GET", "/tenants/nope", None), 404, NF),
            (("DELETE", "/tenants/nope", None), 404, NF),
            (("GET", "/tenants?limit=0", None), 400, BAD),
            (("GET", "/tenants?offset=-1", None), 400, BAD),
            (("GET", "/tenants?limit=many", None), 400, BAD),
        ],
    )


async def test_customer_and_apikey_input(hub: RunningHub) -> None:
    await build(hub)
    await expect_refused(
        hub,
        ("customers", "apikeys"),
        [
            (("POST", f"/customers?tenantId={T}", {}), 400, BAD),
            (("POST", f"/customers?tenantId={T}", {"id": "c 2"}), 400, BAD),
            (("POST", f"/customers?tenantId={T}", {"id": "c2", "tenant": T}), 400, BAD),
            (("POST", f"/customers?tenantId={T}", {"id": "c1"}), 409, DUP),
            (("POST", "/customers", {"id": "c2"}), 400, BAD),  # the admin must name the tenant
            (("POST", "/customers?tenantId=nope", {"id": "c2"}), 404, NF),
            (("GET", "/customers", None), 400, BAD),
            (("POST", "/apikeys", {"role": "viewer", "tenantId": T}), 400, BAD),
            (("POST", "/apikeys", {"name": "", "role": "viewer", "tenantId": T}), 400, BAD),
            (("POST", "/apikeys", {"name": "k", "role": "king", "tenantId": T}), 400, BAD),
            (("POST", "/apikeys", {"name": "k", "role": "viewer"}), 400, BAD),
            (("POST", "/apikeys", {"name": "k", "role": "viewer", "tenantId": "nope"}), 404, NF),
            (("POST", "/apikeys", {"name": "k", "role": "viewer", "tenantId": T, "customerId": "nope"}), 404, NF),
            (
                ("POST", "/apikeys", {"name": "k", "role": "custom", "tenantId": T, "permissions": {"device": "read"}}),
                400,
                BAD,
            ),
            (
                ("POST", "/apikeys", {"name": "k", "role": "custom", "tenantId": T, "permissions": {"nope": ["read"]}}),
                400,
                BAD,
            ),
            (
                (
                    "POST",
                    "/apikeys",
                    {"name": "k", "role": "custom", "tenantId": T, "permissions": {"device": ["fly"]}},
                ),
                400,
                BAD,
            ),
            (("POST", "/apikeys", {"name": "k", "role": "viewer", "tenantId": T, "secret": "mine"}), 400, BAD),
            (("DELETE", "/apikeys/nope", None), 404, NF),
        ],
    )


async def test_product_input(hub: RunningHub) -> None:
    await build(hub)
    P = f"/products?tenantId={T}"
    await expect_refused(
        hub,
        ("products",),
        [
            (("POST", P, {}), 400, BAD),
            (("POST", P, {"id": "p x"}), 400, BAD),
            (("POST", P, {"id": "p" * 129}), 400, BAD),
            (("POST", P, {"id": "pü"}), 400, BAD),
            (("POST", P, {"id": 12}), 400, BAD),
            (("POST", P, {"id": "pNew", "nodeType": "robot"}), 400, BAD),
            (("POST", P, {"id": "pNew", "thingModel": [1, 2]}), 400, BAD),
            (("POST", P, {"id": "pNew", "trustedGatewayAdd": "perhaps"}), 400, BAD),
            (("POST", P, {"id": "pNew", "secret": "s3cr3t"}), 400, BAD),
            (("POST", P, {"id": "pDir"}), 409, DUP),  # id taken
            (("POST", P, {"id": "pNew", "name": "pGw"}), 409, DUP),  # name taken
            (("POST", "/products", {"id": "pNew"}), 400, BAD),
            (("GET", "/products/nope", None), 404, NF),
            (("GET", "/products/" + "p" * 200, None), 404, NF),
            (("PATCH", "/products/nope", {"name": "x"}), 404, NF),
            (("PATCH", "/products/pDir", {"name": ""}), 400, BAD),
            (("PATCH", "/products/pDir", {"name": "pGw"}), 409, DUP),
            (("PATCH", "/products/pDir", {"nodeType": "gateway"}), 400, BAD),
            (("PATCH", "/products/pDir", {"thingModel": "text"}), 400, BAD),
            (("PATCH", "/products/pDir", {"dynamicRegister": [True]}), 400, BAD),
            (("PATCH", "/products/pDir", b"{nope}"), 400, BAD),
            (("DELETE", "/products/pDir", None), 409, "conflict"),  # d1 still uses it
            (("DELETE", "/products/pSub", None), 409, "conflict"),  # s1 still uses it
            (("DELETE", "/products/nope", None), 404, NF),
            (("GET", f"{P}&limit=0", None), 400, BAD),
            (("GET", f"{P}&offset=-5", None), 400, BAD),
        ],
    )
    # a product without devices can be deleted: the refusals above were about use, not rights
    await _ok(await hub.client.post(f"{API}{P}", json={"id": "pFree"}), 201)
    await _ok(await hub.client.delete(f"{API}/products/pFree"), 204)


async def test_device_input(hub: RunningHub) -> None:
    await build(hub)
    D = f"/devices?tenantId={T}"
    ok = {"name": "new one", "productId": "pDir"}
    await expect_refused(
        hub,
        ("devices",),
        [
            (("POST", D, {}), 400, BAD),
            (("POST", D, {"name": "x"}), 400, BAD),
            (("POST", D, {"productId": "pDir"}), 400, BAD),
            (("POST", D, {"name": 5, "productId": "pDir"}), 400, BAD),
            (("POST", D, {"name": ["x"], "productId": "pDir"}), 400, BAD),
            (("POST", D, {**ok, "id": "bad id"}), 400, BAD),
            (("POST", D, {**ok, "id": "x" * 129}), 400, BAD),
            (("POST", D, {**ok, "id": "dév"}), 400, BAD),
            (("POST", D, {**ok, "id": "a.b"}), 400, BAD),
            (("POST", D, {**ok, "kind": "gateway"}), 400, BAD),
            (("POST", D, {"name": "   ", "productId": "pDir"}), 400, BAD),
            (("POST", D, {"name": "tab\there", "productId": "pDir"}), 400, BAD),
            (("POST", D, {"name": "n" * 256, "productId": "pDir"}), 400, BAD),
            (("POST", D, {**ok, "secret": "short"}), 400, BAD),
            (("POST", D, {**ok, "accessToken": ""}), 400, BAD),
            (("POST", D, {"name": "x", "productId": "nope"}), 404, NF),
            (("POST", D, {"name": "device one", "productId": "pDir"}), 409, DUP),
            (("POST", D, {**ok, "id": "d1"}), 409, DUP),
            (("POST", D, {**ok, "accessToken": "token-d1"}), 409, DUP),
            (("POST", D, {"name": "x", "productId": "pSub", "parentId": "nope"}), 404, NF),
            (("POST", D, {"name": "x", "productId": "pDir", "parentId": "gw1"}), 400, BAD),
            (("POST", D, {"name": "x", "productId": "pSub", "parentId": "d1"}), 400, BAD),
            (("POST", D, {**ok, "customerId": "nope"}), 404, NF),
            (("POST", "/devices", ok), 400, BAD),
            (("POST", f"/gateways?tenantId={T}", {"name": "x", "productId": "pDir"}), 400, BAD),
            (("GET", "/devices/nope", None), 404, NF),
            (("GET", "/devices/has%20space", None), 404, NF),
            (("GET", "/devices/" + "d" * 200, None), 404, NF),
            (("GET", "/devices/%C3%A9t%C3%A9", None), 404, NF),
            (("PATCH", "/devices/nope", {"name": "x"}), 404, NF),
            (("PATCH", "/devices/d1", {"name": ""}), 400, BAD),
            (("PATCH", "/devices/d1", {"name": 7}), 400, BAD),
            (("PATCH", "/devices/d1", {"name": "gateway one"}), 409, DUP),
            (("PATCH", "/devices/d1", {"parentId": "gw1"}), 400, BAD),
            (("PATCH", "/devices/s1", {"parentId": "d1"}), 400, BAD),
            (("PATCH", "/devices/s1", {"parentId": "nope"}), 404, NF),
            (("PATCH", "/devices/d1", {"customerId": "nope"}), 404, NF),
            (("PATCH", "/devices/d1", {"productId": "pSub"}), 400, BAD),
            (("PATCH", "/devices/d1", b'{"name": "x",}'), 400, BAD),
            (("DELETE", "/devices/nope", None), 404, NF),
            (("GET", "/gateways/d1", None), 400, BAD),
            (("GET", "/gateways/nope", None), 404, NF),
            (("GET", "/gateways/d1/devices", None), 400, BAD),
            (("DELETE", "/gateways/d1", None), 400, BAD),
            (("GET", f"{D}&limit=0", None), 400, BAD),
            (("GET", f"{D}&offset=-1", None), 400, BAD),
            (("GET", f"{D}&kind=robot", None), 400, BAD),
            (("GET", f"{D}&presence=sleepy", None), 400, BAD),
            (("GET", f"{D}&namePrefix={'n' * 256}", None), 400, BAD),
            (("GET", "/devices", None), 400, BAD),
            (("GET", f"/gateways?tenantId={T}&presence=maybe", None), 400, BAD),
        ],
    )


async def test_telemetry_input(hub: RunningHub) -> None:
    await build(hub)
    P = "/devices/d1/telemetry"
    await expect_refused(
        hub,
        ("latest",),
        [
            (("POST", P, "text"), 400, BAD),
            (("POST", P, 5), 400, BAD),
            (("POST", P, True), 400, BAD),
            (("POST", P, []), 400, BAD),
            (("POST", P, {}), 400, BAD),
            (("POST", P, [1, 2]), 400, BAD),
            (("POST", P, b"null"), 400, BAD),
            (("POST", P, None), 400, BAD),  # no body at all
            (("POST", P, {"ts": "yesterday", "values": {"a": 1}}), 400, BAD),
            (("POST", P, {"ts": -1, "values": {"a": 1}}), 400, BAD),
            (("POST", P, {"ts": 1.5, "values": {"a": 1}}), 400, BAD),
            (("POST", P, {"ts": True, "values": {"a": 1}}), 400, BAD),
            (("POST", P, {"ts": 10**15, "values": {"a": 1}}), 400, BAD),
            (("POST", P, {"ts": 1, "values": [1]}), 400, BAD),
            (("POST", P, {"a": None}), 400, BAD),
            (("POST", P, {"": 1}), 400, BAD),
            (("POST", P, {"k" * 256: 1}), 400, BAD),
            # one bad point spoils the whole body: nothing of it is stored
            (("POST", P, [{"ok": 1}, {"ts": 5, "values": {"bad": None}}]), 400, BAD),
            (("POST", P, {"ok": 1, "bad": None}), 400, BAD),
            (("POST", P, b'{"a": 1'), 400, BAD),
            (("POST", P, b'{"nan": NaN}'), 400, BAD),
            (("POST", P, b'{"inf": Infinity}'), 400, BAD),
            (("POST", P, b'{"huge": 1' + b"0" * 400 + b"}"), 400, BAD),
            (("POST", P, {"obj": {"x": 2**64}}), 400, BAD),
            (("POST", "/devices/nope/telemetry", {"a": 1}), 404, NF),
            (("GET", "/devices/nope/telemetry", None), 404, NF),
            (("GET", "/devices/nope/telemetry/latest", None), 404, NF),
        ],
    )


async def test_telemetry_query_params(hub: RunningHub) -> None:
    await build(hub)
    Q = "/devices/d1/telemetry?"
    await expect_refused(
        hub,
        ("latest",),
        [
            (("GET", Q + "limit=0", None), 400, BAD),
            (("GET", Q + "limit=-3", None), 400, BAD),
            (("GET", Q + "limit=100001", None), 400, BAD),
            (("GET", Q + "limit=ten", None), 400, BAD),
            (("GET", Q + "start=-1", None), 400, BAD),
            (("GET", Q + "end=0", None), 400, BAD),
            (("GET", Q + "start=100&end=100", None), 400, BAD),
            (("GET", Q + "start=200&end=100", None), 400, BAD),
            (("GET", Q + "order=sideways", None), 400, BAD),
            (("GET", Q + "agg=avg", None), 400, BAD),  # agg without interval
            (("GET", Q + "agg=avg&interval=0", None), 400, BAD),
            (("GET", Q + "agg=median&interval=10", None), 400, BAD),
            (("GET", Q + "agg=AVG&interval=10", None), 400, BAD),
            (("GET", Q + "agg=avg&interval=10&start=500&end=100", None), 400, BAD),
            (("GET", f"/events?tenantId={T}&limit=0", None), 400, BAD),
            (("GET", f"/events?tenantId={T}&limit=10001", None), 400, BAD),
            (("GET", f"/events?tenantId={T}&start=-1", None), 400, BAD),
            (("GET", "/events", None), 400, BAD),
            (("GET", f"/events/stream?tenantId={T}&types=telemetry,bogus", None), 400, BAD),
            (("GET", "/events/stream", None), 400, BAD),
            (("GET", f"/events/stream?tenantId={T}&deviceId=nope", None), 404, NF),
        ],
    )
    # the same queries with good values answer
    assert (await _ok(await hub.client.get(f"{API}{Q}limit=1&start=0&keys=t")))["t"] == [{"ts": 1000, "value": 1.5}]
    agg = await _ok(await hub.client.get(f"{API}{Q}agg=max&interval=1000&start=0&end=2000"))
    assert agg["n"] == [{"ts": 1000, "value": 3.0, "count": 1}]


async def test_attribute_input(hub: RunningHub) -> None:
    await build(hub)
    A = "/devices/d1/attributes"
    await expect_refused(
        hub,
        ("attributes",),
        [
            (("POST", f"{A}/client", {"a": 1}), 400, BAD),
            (("POST", f"{A}/bogus", {"a": 1}), 400, BAD),
            (("POST", f"{A}/shared", {}), 400, BAD),
            (("POST", f"{A}/shared", {"a": None}), 400, BAD),
            (("POST", f"{A}/shared", {"ok": 1, "bad": None}), 400, BAD),
            (("POST", f"{A}/server", [1, 2]), 400, BAD),
            (("POST", f"{A}/server", "text"), 400, BAD),
            (("POST", f"{A}/server", {"": 1}), 400, BAD),
            (("POST", f"{A}/server", {"k" * 256: 1}), 400, BAD),
            (("POST", f"{A}/server", {"big": 2**64}), 400, BAD),
            (("POST", f"{A}/server", b'{"nan": NaN}'), 400, BAD),
            (("POST", f"{A}/server", b'{"a": '), 400, BAD),
            (("POST", f"{A}/shared", None), 400, BAD),
            (("DELETE", f"{A}/shared", None), 400, BAD),  # keys are required
            (("DELETE", f"{A}/shared?keys=", None), 400, BAD),
            (("DELETE", f"{A}/bogus?keys=mode", None), 400, BAD),
            (("GET", f"{A}?scope=bogus", None), 400, BAD),
            (("GET", f"{A}/bogus", None), 400, BAD),
            (("GET", "/devices/nope/attributes", None), 404, NF),
            (("POST", "/devices/nope/attributes/shared", {"a": 1}), 404, NF),
            (("DELETE", "/devices/nope/attributes/shared?keys=a", None), 404, NF),
        ],
    )


async def test_oversized_bodies_get_413(hub: RunningHub) -> None:
    await build(hub)
    limit = hub.node.settings.http_max_body_bytes
    assert limit == 1_048_576
    big = b'{"blob": "' + b"x" * (limit + 10) + b'"}'
    before = await state(hub)
    c = hub.client
    # with a Content-Length
    for path in ("/devices/d1/telemetry", "/devices/d1/attributes/shared", "/tenants", f"/devices?tenantId={T}"):
        r = await c.post(API + path, content=big, headers={"content-type": "application/json"})
        _check_error(r, 413, "payload_too_large")

    # chunked, without a Content-Length
    async def chunks() -> Any:
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    for path in ("/devices/d1/telemetry", "/devices/d1/attributes/shared", "/tenants"):
        r = await c.post(API + path, content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        _check_error(r, 413, "payload_too_large")
    assert await state(hub) == before
    # the connection pool still works, and a body just under the limit is fine (chunked too)
    fits = b'{"blob": "' + b"y" * (limit - 100) + b'"}'
    assert len(fits) <= limit
    json_ct = {"content-type": "application/json"}
    assert (await _ok(await c.post(f"{API}/devices/d1/telemetry", content=fits, headers=json_ct)))["stored"] == 1

    async def fit_chunks() -> Any:
        for i in range(0, len(fits), 100_000):
            yield fits[i : i + 100_000]

    r = await c.post(f"{API}/devices/d1/attributes/server", content=fit_chunks(), headers=json_ct)
    assert (await _ok(r))["updated"] == ["blob"]
    latest = await _ok(await c.get(f"{API}/devices/d1/telemetry/latest?keys=blob"))
    assert len(latest["blob"]["value"]) == limit - 100


async def test_unknown_routes_and_methods(hub: RunningHub) -> None:
    for method, path, status, code in (
        ("GET", "/api/v1/nothing", 404, "not_found"),
        ("GET", "/api/v2/devices", 404, "not_found"),
        ("PUT", "/api/v1/tenants", 405, "method_not_allowed"),
        ("POST", "/api/v1/devices/d1", 405, "method_not_allowed"),
        ("PATCH", "/api/v1/tenants/T", 405, "method_not_allowed"),
    ):
        _check_error(await hub.client.request(method, path), status, code)


async def test_wrong_content_type(hub: RunningHub) -> None:
    await build(hub)
    before = await state(hub)
    r = await hub.client.post(f"{API}/tenants", content=b'{"id": "Z"}', headers={"content-type": "text/plain"})
    _check_error(r, 400, BAD)
    r = await hub.client.post(
        f"{API}/tenants", content=b"id=Z", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _check_error(r, 400, BAD)
    assert await state(hub) == before
    # curl -d sends JSON as application/x-www-form-urlencoded, or a client sends no type: read as JSON
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {}):
        body = b'{"id": "Z%d", "name": "z"}' % len(headers)
        r = await hub.client.post(f"{API}/tenants", content=body, headers=headers)
        assert r.status_code == 201, r.text
    # the error of a validation failure names the field
    r = await hub.client.post(f"{API}/devices?tenantId={T}", json={"name": "x"})
    _check_error(r, 400, BAD)
    err = r.json()["error"]
    assert "productId" in err["message"]
    assert any(d["field"] == "productId" for d in err["details"])
