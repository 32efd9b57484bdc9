"""Tenant isolation and roles of the management API, resource by resource.

Every test runs against a real node (SQLite and PostgreSQL) over real HTTP. Tenant B holds data;
keys of tenant A (and narrower keys) try to reach it and must fail without changing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gatehub.store import WriteBatch
from tests.conftest import RunningHub

API = "/api/v1"


@dataclass
class World:
    a_admin: str  # tenant-admin key of A
    b_admin: str  # tenant-admin key of B
    b_viewer_id: str  # id of a viewer key of B
    a_key_id: str  # id of A's tenant-admin key


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    return r.json() if r.content else None


async def _key(hub: RunningHub, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await _ok(await hub.client.post(f"{API}/apikeys", json=body), 201)
    assert out["key"].startswith("ghk_")
    return out


def _assert_error(r: httpx.Response, statuses: tuple[int, ...], code: str | None = None) -> None:
    assert r.status_code in statuses, (r.request.method, str(r.request.url), r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, r.text


async def build_world(hub: RunningHub) -> World:
    """Tenants A and B; B gets products, a gateway with a sub-device, a customer, keys, data."""
    c = hub.client
    for t in ("A", "B"):
        await _ok(await c.post(f"{API}/tenants", json={"id": t, "name": f"tenant {t}"}), 201)
    a_admin = await _key(hub, {"name": "a admin", "role": "tenant-admin", "tenantId": "A"})
    b_admin = await _key(hub, {"name": "b admin", "role": "tenant-admin", "tenantId": "B"})
    await _ok(await c.post(f"{API}/customers?tenantId=B", json={"id": "custB", "name": "customer of B"}), 201)
    b_viewer = await _key(hub, {"name": "b viewer", "role": "viewer", "tenantId": "B"})
    for pid, nt in (("pB-gw", "gateway"), ("pB-sub", "sub-device"), ("pB-direct", "direct")):
        await _ok(await c.post(f"{API}/products?tenantId=B", json={"id": pid, "nodeType": nt}), 201)
    await _ok(
        await c.post(f"{API}/gateways?tenantId=B", json={"id": "gwB", "name": "gateway B", "productId": "pB-gw"}), 201
    )
    await _ok(
        await c.post(
            f"{API}/devices?tenantId=B",
            json={"id": "subB", "name": "sub B", "productId": "pB-sub", "parentId": "gwB", "customerId": "custB"},
        ),
        201,
    )
    await _ok(
        await c.post(f"{API}/devices?tenantId=B", json={"id": "dirB", "name": "direct B", "productId": "pB-direct"}),
        201,
    )
    await _ok(
        await c.post(
            f"{API}/devices/subB/telemetry",
            json=[{"ts": 1000, "values": {"temp": 20.5, "on": True}}, {"ts": 2000, "values": {"temp": 21}}],
        )
    )
    await _ok(await c.post(f"{API}/devices/subB/attributes/shared", json={"interval": 30}))
    await _ok(await c.post(f"{API}/devices/subB/attributes/server", json={"location": "hall"}))
    await hub.node.writer.write(WriteBatch("B", events=[("B", "subB", 1500, "message", '{"hello": "B"}')]))
    # A has a little of its own
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA", "nodeType": "direct"}), 201)
    await _ok(await c.post(f"{API}/devices?tenantId=A", json={"id": "devA", "name": "dev A", "productId": "pA"}), 201)
    return World(a_admin["key"], b_admin["key"], b_viewer["id"], a_admin["id"])


async def snapshot_b(hub: RunningHub) -> dict[str, Any]:
    """Everything of tenant B as the system administrator sees it."""
    c = hub.client
    out: dict[str, Any] = {}
    for name, path in (
        ("tenant", "/tenants/B"),
        ("products", "/products?tenantId=B"),
        ("devices", "/devices?tenantId=B"),
        ("gateway", "/gateways/gwB/devices"),
        ("customers", "/customers?tenantId=B"),
        ("apikeys", "/apikeys?tenantId=B"),
        ("telemetry", "/devices/subB/telemetry?start=0"),
        ("latest", "/devices/subB/telemetry/latest"),
        ("attributes", "/devices/subB/attributes"),
        ("events", "/events?tenantId=B"),
    ):
        out[name] = await _ok(await c.get(API + path))
    # sanity: the snapshot holds what build_world created
    assert {d["id"] for d in out["devices"]["items"]} == {"gwB", "subB", "dirB"}
    assert out["telemetry"]["temp"] == [{"ts": 1000, "value": 20.5}, {"ts": 2000, "value": 21}]
    assert out["attributes"] == {"shared": {"interval": 30}, "server": {"location": "hall"}}
    assert [e["body"] for e in out["events"]["items"] if e["type"] == "message"] == [{"hello": "B"}]
    assert [e["deviceId"] for e in out["events"]["items"] if e["type"] == "topology"] == ["gwB"]  # subB joined it
    assert len(out["apikeys"]["items"]) == 2
    return out


async def test_other_tenant_cannot_read_anything(hub: RunningHub) -> None:
    w = await build_world(hub)
    async with hub.as_key(w.a_admin) as a:
        # single resources of B: not found (or forbidden), never B's data
        for path in (
            "/tenants/B",
            "/products/pB-gw",
            "/products/pB-sub",
            "/devices/subB",
            "/devices/gwB",
            "/gateways/gwB",
            "/gateways/gwB/devices",
            "/devices/subB/telemetry",
            "/devices/subB/telemetry?start=0",
            "/devices/subB/telemetry?agg=avg&interval=1000&start=0",
            "/devices/subB/telemetry/latest",
            "/devices/subB/attributes",
            "/devices/subB/attributes/shared",
            "/devices/subB/attributes/server",
        ):
            r = await a.get(API + path)
            _assert_error(r, (404,), "not_found")  # not found, never "forbidden" (which would say it exists)
            assert "20.5" not in r.text and "hall" not in r.text
        # listing B explicitly: B is not found for A (the same answer as for a tenant that does not exist)
        for path in ("/products", "/devices", "/gateways", "/customers", "/events"):
            _assert_error(await a.get(f"{API}{path}?tenantId=B"), (404,), "not_found")
            _assert_error(await a.get(f"{API}{path}?tenantId=nobody"), (404,), "not_found")
        # plain lists show A's items only
        tenants = await _ok(await a.get(f"{API}/tenants"))
        assert [t["id"] for t in tenants["items"]] == ["A"] and tenants["total"] == 1
        products = await _ok(await a.get(f"{API}/products"))
        assert [p["id"] for p in products["items"]] == ["pA"] and products["total"] == 1
        devices = await _ok(await a.get(f"{API}/devices"))
        assert [d["id"] for d in devices["items"]] == ["devA"] and devices["total"] == 1
        gateways = await _ok(await a.get(f"{API}/gateways"))
        assert gateways["items"] == [] and gateways["total"] == 0
        customers = await _ok(await a.get(f"{API}/customers"))
        assert customers["items"] == []
        keys = await _ok(await a.get(f"{API}/apikeys"))
        assert [k["id"] for k in keys["items"]] == [w.a_key_id]
        keys = await _ok(await a.get(f"{API}/apikeys?tenantId=B"))  # the parameter cannot widen the scope
        assert all(k["tenantId"] == "A" for k in keys["items"])
        events = await _ok(await a.get(f"{API}/events"))
        assert events["items"] == []
        events = await _ok(await a.get(f"{API}/events?deviceId=subB"))
        assert events["items"] == []


async def test_other_tenant_cannot_change_anything(hub: RunningHub) -> None:
    w = await build_world(hub)
    before = await snapshot_b(hub)
    async with hub.as_key(w.a_admin) as a:
        attempts: list[tuple[str, str, Any]] = [
            ("PATCH", "/products/pB-gw", {"name": "stolen"}),
            ("DELETE", "/products/pB-direct", None),
            ("PATCH", "/devices/subB", {"name": "stolen"}),
            ("PATCH", "/devices/subB", {"parentId": None}),
            ("PATCH", "/devices/dirB", {"customerId": None}),
            ("DELETE", "/devices/dirB", None),
            ("DELETE", "/devices/subB", None),
            ("DELETE", "/gateways/gwB", None),
            ("DELETE", f"/apikeys/{w.b_viewer_id}", None),
            ("DELETE", "/tenants/B", None),
            ("POST", "/devices/subB/telemetry", {"temp": 99}),
            ("POST", "/devices/subB/telemetry", [{"ts": 1000, "values": {"temp": -1}}]),
            ("POST", "/devices/subB/attributes/shared", {"interval": 1}),
            ("POST", "/devices/subB/attributes/server", {"location": "stolen"}),
            ("DELETE", "/devices/subB/attributes/shared?keys=interval", None),
            ("DELETE", "/devices/subB/attributes/server?keys=location", None),
            # creating things inside B
            ("POST", "/products?tenantId=B", {"id": "pX"}),
            ("POST", "/devices?tenantId=B", {"name": "x", "productId": "pB-direct"}),
            ("POST", "/gateways?tenantId=B", {"name": "x", "productId": "pB-gw"}),
            ("POST", "/customers?tenantId=B", {"id": "cX"}),
            ("POST", "/apikeys", {"name": "x", "role": "tenant-admin", "tenantId": "B"}),
            ("POST", "/apikeys", {"name": "x", "role": "viewer", "tenantId": "B"}),
            ("POST", "/apikeys", {"name": "x", "role": "system-admin"}),
            ("POST", "/tenants", {"id": "C"}),
            # reaching into B from A: B's product, B's gateway as parent, B's customer
            ("POST", "/devices", {"name": "x1", "productId": "pB-direct"}),
            ("POST", "/devices", {"name": "x2", "productId": "pB-sub", "parentId": "gwB"}),
            ("POST", "/gateways", {"name": "x3", "productId": "pB-gw"}),
            ("POST", "/devices", {"name": "x4", "productId": "pA", "customerId": "custB"}),
            ("PATCH", "/devices/devA", {"customerId": "custB"}),
            ("POST", "/apikeys", {"name": "x5", "role": "viewer", "customerId": "custB"}),
        ]
        for method, path, body in attempts:
            r = await a.request(method, API + path, json=body)
            _assert_error(r, (400, 403, 404))
    after = await snapshot_b(hub)
    assert after == before
    # and A did not gain anything either
    a_devices = await _ok(await hub.client.get(f"{API}/devices?tenantId=A"))
    assert [d["id"] for d in a_devices["items"]] == ["devA"]
    assert a_devices["items"][0]["customerId"] is None
    tenants = await _ok(await hub.client.get(f"{API}/tenants"))
    assert [t["id"] for t in tenants["items"]] == ["A", "B"]
    # B's own admin still works on its data (the refusals were about A, not about B)
    async with hub.as_key(w.b_admin) as b:
        await _ok(await b.get(f"{API}/devices/subB"))
        await _ok(await b.post(f"{API}/devices/subB/telemetry", json={"ts": 3000, "values": {"temp": 22}}))
        tel = await _ok(await b.get(f"{API}/devices/subB/telemetry?start=0&keys=temp"))
        assert [p["value"] for p in tel["temp"]] == [20.5, 21, 22]


class Sse:
    """Reads server-sent events from a streaming httpx response (one line iterator for its life)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.lines = resp.aiter_lines()

    async def connected(self) -> None:
        line = await asyncio.wait_for(self.lines.__anext__(), 5)
        assert line == ": connected"

    async def frames(self, want: int, timeout: float = 3.0) -> list[tuple[str, dict[str, Any]]]:
        """Frames (event, data) until ``want`` arrived or ``timeout`` passed."""
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


async def test_event_stream_is_scoped_to_the_tenant(hub: RunningHub) -> None:
    w = await build_world(hub)
    async with hub.as_key(w.a_admin) as a:
        _assert_error(await a.get(f"{API}/events/stream?tenantId=B"), (404,), "not_found")
        _assert_error(await a.get(f"{API}/events/stream?deviceId=subB"), (404,), "not_found")
        async with a.stream("GET", f"{API}/events/stream?types=telemetry") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            sse = Sse(resp)
            await sse.connected()
            # B's telemetry first, then A's: only A's may arrive
            await _ok(await hub.client.post(f"{API}/devices/subB/telemetry", json={"secretB": 1}))
            await _ok(await hub.client.post(f"{API}/devices/devA/telemetry", json={"mine": 2}))
            frames = await sse.frames(1)
    assert len(frames) == 1
    event, data = frames[0]
    assert event == "telemetry"
    assert data["deviceId"] == "devA"
    assert [v for _ts, v in data["data"]["mine"]] == [2]


async def test_viewer_reads_but_cannot_write(hub: RunningHub) -> None:
    w = await build_world(hub)
    c = hub.client
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA-gw", "nodeType": "gateway"}), 201)
    await _ok(await c.post(f"{API}/gateways?tenantId=A", json={"id": "gwA", "name": "gw A", "productId": "pA-gw"}), 201)
    await _ok(await c.post(f"{API}/devices/devA/telemetry", json={"ts": 5, "values": {"t": 1}}))
    await _ok(await c.post(f"{API}/devices/devA/attributes/shared", json={"s": "x"}))
    viewer = await _key(hub, {"name": "a viewer", "role": "viewer", "tenantId": "A"})
    async with hub.as_key(viewer["key"]) as v:
        dev = await _ok(await v.get(f"{API}/devices/devA"))
        assert dev["name"] == "dev A"
        assert "accessToken" not in dev  # a viewer does not see credentials
        assert (await _ok(await v.get(f"{API}/devices")))["total"] == 2
        assert (await _ok(await v.get(f"{API}/gateways/gwA")))["id"] == "gwA"
        assert (await _ok(await v.get(f"{API}/products/pA")))["id"] == "pA"
        assert "secret" not in await _ok(await v.get(f"{API}/products/pA"))
        assert (await _ok(await v.get(f"{API}/devices/devA/telemetry?start=0")))["t"] == [{"ts": 5, "value": 1}]
        assert (await _ok(await v.get(f"{API}/devices/devA/telemetry/latest")))["t"]["value"] == 1
        assert await _ok(await v.get(f"{API}/devices/devA/attributes")) == {"shared": {"s": "x"}}
        assert (await _ok(await v.get(f"{API}/events")))["items"] == []
        assert (await _ok(await v.get(f"{API}/tenants/A")))["id"] == "A"
        await _ok(await v.get(f"{API}/customers"))
        await _ok(await v.get(f"{API}/apikeys"))
        writes: list[tuple[str, str, Any]] = [
            ("POST", "/tenants", {"id": "Z"}),
            ("DELETE", "/tenants/A", None),
            ("POST", "/customers", {"id": "c9"}),
            ("POST", "/apikeys", {"name": "k", "role": "viewer"}),
            ("DELETE", f"/apikeys/{w.a_key_id}", None),
            ("POST", "/products", {"id": "p9"}),
            ("PATCH", "/products/pA", {"name": "renamed"}),
            ("DELETE", "/products/pA", None),
            ("POST", "/devices", {"name": "new", "productId": "pA"}),
            ("PATCH", "/devices/devA", {"name": "renamed"}),
            ("DELETE", "/devices/devA", None),
            ("POST", "/gateways", {"name": "gw2", "productId": "pA-gw"}),
            ("DELETE", "/gateways/gwA", None),
            ("POST", "/devices/devA/telemetry", {"t": 2}),
            ("POST", "/devices/devA/attributes/shared", {"s": "y"}),
            ("POST", "/devices/devA/attributes/server", {"s": "y"}),
            ("DELETE", "/devices/devA/attributes/shared?keys=s", None),
        ]
        for method, path, body in writes:
            _assert_error(await v.request(method, API + path, json=body), (403,), "permission_denied")
    # nothing changed in A
    devs = await _ok(await c.get(f"{API}/devices?tenantId=A"))
    assert sorted((d["id"], d["name"]) for d in devs["items"]) == [("devA", "dev A"), ("gwA", "gw A")]
    prods = await _ok(await c.get(f"{API}/products?tenantId=A"))
    assert sorted((p["id"], p["name"]) for p in prods["items"]) == [("pA", "pA"), ("pA-gw", "pA-gw")]
    assert (await _ok(await c.get(f"{API}/devices/devA/telemetry?start=0")))["t"] == [{"ts": 5, "value": 1}]
    assert await _ok(await c.get(f"{API}/devices/devA/attributes")) == {"shared": {"s": "x"}}
    assert (await _ok(await c.get(f"{API}/customers?tenantId=A")))["items"] == []
    assert len((await _ok(await c.get(f"{API}/apikeys?tenantId=A")))["items"]) == 2
    assert [t["id"] for t in (await _ok(await c.get(f"{API}/tenants")))["items"]] == ["A", "B"]


async def test_custom_key_gets_exactly_its_permissions(hub: RunningHub) -> None:
    await build_world(hub)
    await _ok(await hub.client.post(f"{API}/devices/devA/telemetry", json={"t": 1}))
    custom = await _key(
        hub, {"name": "device reader", "role": "custom", "tenantId": "A", "permissions": {"device": ["read"]}}
    )
    assert custom["permissions"] == {"device": ["read"]}
    async with hub.as_key(custom["key"]) as k:
        assert (await _ok(await k.get(f"{API}/devices/devA")))["id"] == "devA"
        assert [d["id"] for d in (await _ok(await k.get(f"{API}/devices")))["items"]] == ["devA"]
        for path in (
            "/devices/devA/telemetry",
            "/devices/devA/telemetry/latest",
            "/devices/devA/attributes",
            "/products",
            "/gateways",
            "/events",
            "/apikeys",
            "/customers",
        ):
            _assert_error(await k.get(API + path), (403,), "permission_denied")
        _assert_error(await k.post(f"{API}/devices/devA/telemetry", json={"t": 2}), (403,))
        _assert_error(await k.patch(f"{API}/devices/devA", json={"name": "x"}), (403,))
        _assert_error(await k.post(f"{API}/devices", json={"name": "x", "productId": "pA"}), (403,))
        _assert_error(await k.get(f"{API}/devices/subB"), (404,))  # still only its tenant
    tel = await _ok(await hub.client.get(f"{API}/devices/devA/telemetry?start=0"))
    assert [p["value"] for p in tel["t"]] == [1]
    # unknown resources or actions in a permission set are refused, not ignored
    for perms in ({"devices": ["read"]}, {"device": ["fly"]}):
        r = await hub.client.post(
            f"{API}/apikeys", json={"name": "bad", "role": "custom", "tenantId": "A", "permissions": perms}
        )
        _assert_error(r, (400,), "invalid_input")


async def test_operator_creates_devices_but_not_products(hub: RunningHub) -> None:
    await build_world(hub)
    op = await _key(hub, {"name": "operator", "role": "operator", "tenantId": "A"})
    async with hub.as_key(op["key"]) as o:
        dev = await _ok(
            await o.post(f"{API}/devices", json={"id": "opDev", "name": "by operator", "productId": "pA"}), 201
        )
        assert dev["tenantId"] == "A"
        await _ok(await o.patch(f"{API}/devices/opDev", json={"name": "renamed by operator"}))
        await _ok(await o.post(f"{API}/devices/opDev/telemetry", json={"x": 1}))
        _assert_error(await o.post(f"{API}/products", json={"id": "opProd"}), (403,), "permission_denied")
        _assert_error(await o.patch(f"{API}/products/pA", json={"name": "x"}), (403,), "permission_denied")
        _assert_error(await o.delete(f"{API}/products/pA"), (403,), "permission_denied")
        _assert_error(await o.post(f"{API}/apikeys", json={"name": "x"}), (403,), "permission_denied")
        _assert_error(await o.post(f"{API}/customers", json={"id": "x"}), (403,), "permission_denied")
        assert [p["id"] for p in (await _ok(await o.get(f"{API}/products")))["items"]] == ["pA"]
    devs = await _ok(await hub.client.get(f"{API}/devices?tenantId=A"))
    assert sorted((d["id"], d["name"]) for d in devs["items"]) == [("devA", "dev A"), ("opDev", "renamed by operator")]
    assert [p["id"] for p in (await _ok(await hub.client.get(f"{API}/products?tenantId=A")))["items"]] == ["pA"]


async def test_unauthenticated_and_bad_keys_get_401(hub: RunningHub) -> None:
    await _ok(await hub.client.post(f"{API}/tenants", json={"id": "A"}), 201)
    routes = [
        ("GET", "/tenants"),
        ("POST", "/tenants"),
        ("GET", "/devices"),
        ("GET", "/devices/x"),
        ("POST", "/devices"),
        ("PATCH", "/devices/x"),
        ("DELETE", "/devices/x"),
        ("GET", "/products"),
        ("POST", "/products"),
        ("GET", "/gateways"),
        ("GET", "/apikeys"),
        ("POST", "/apikeys"),
        ("GET", "/customers"),
        ("GET", "/events"),
        ("GET", "/events/stream"),
        ("GET", "/devices/x/telemetry"),
        ("POST", "/devices/x/telemetry"),
        ("GET", "/devices/x/attributes"),
        ("POST", "/devices/x/attributes/shared"),
    ]
    valid = hub.admin_key
    key_id = valid.split("_")[1]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {valid}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer ghk_0000000000000000_nope"},
        {"Authorization": f"Bearer ghk_{key_id}_wrongsecret"},
        {"Authorization": f"Bearer {valid}x"},
        {"Authorization": "Bearer ghk__"},
    ]
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as anon:
        for method, path in routes:
            body = {"id": "Z"} if method in ("POST", "PATCH") else None
            for headers in bad_headers[:2] if path != "/tenants" else bad_headers:
                r = await anon.request(method, API + path, json=body, headers=headers)
                _assert_error(r, (401,), "unauthenticated")
    # nothing was created by the refused requests
    tenants = await _ok(await hub.client.get(f"{API}/tenants"))
    assert [t["id"] for t in tenants["items"]] == ["A"]
    # a deleted key stops working at once
    k = await _key(hub, {"name": "short-lived", "role": "viewer", "tenantId": "A"})
    async with hub.as_key(k["key"]) as v:
        await _ok(await v.get(f"{API}/devices"))
        await _ok(await hub.client.delete(f"{API}/apikeys/{k['id']}"), 204)
        _assert_error(await v.get(f"{API}/devices"), (401,), "unauthenticated")
    # /healthz and /metrics need no key
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/metrics")).status_code == 200


async def test_customer_key_sees_only_its_customers_devices(hub: RunningHub) -> None:
    await build_world(hub)
    c = hub.client
    for cid in ("cust1", "cust2"):
        await _ok(await c.post(f"{API}/customers?tenantId=A", json={"id": cid}), 201)
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA-gw", "nodeType": "gateway"}), 201)
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA-sub", "nodeType": "sub-device"}), 201)
    await _ok(await c.post(f"{API}/gateways?tenantId=A", json={"id": "gwA", "name": "gw", "productId": "pA-gw"}), 201)
    for did, cust in (("mine1", "cust1"), ("mine2", "cust1"), ("theirs", "cust2")):
        await _ok(
            await c.post(
                f"{API}/devices?tenantId=A",
                json={"id": did, "name": did, "productId": "pA-sub", "parentId": "gwA", "customerId": cust},
            ),
            201,
        )
        await _ok(await c.post(f"{API}/devices/{did}/telemetry", json={"ts": 10, "values": {"v": did}}))
        await _ok(await c.post(f"{API}/devices/{did}/attributes/shared", json={"owner": did}))
    key = await _key(hub, {"name": "cust1 viewer", "role": "viewer", "tenantId": "A", "customerId": "cust1"})
    assert key["customerId"] == "cust1"
    async with hub.as_key(key["key"]) as k:
        listed = await _ok(await k.get(f"{API}/devices"))
        assert sorted(d["id"] for d in listed["items"]) == ["mine1", "mine2"]
        assert listed["total"] == 2
        listed = await _ok(await k.get(f"{API}/devices?parentId=gwA"))
        assert sorted(d["id"] for d in listed["items"]) == ["mine1", "mine2"]
        assert (await _ok(await k.get(f"{API}/devices/mine1")))["customerId"] == "cust1"
        assert (await _ok(await k.get(f"{API}/devices/mine1/telemetry?start=0")))["v"] == [{"ts": 10, "value": "mine1"}]
        for path in (
            "/devices/theirs",
            "/devices/theirs/telemetry",
            "/devices/theirs/telemetry/latest",
            "/devices/theirs/attributes",
            "/devices/theirs/attributes/shared",
            "/devices/devA",
            "/devices/subB",
        ):
            r = await k.get(API + path)
            _assert_error(r, (403, 404))
            assert "theirs" not in r.text.replace("/devices/theirs", "").replace("device theirs", "")


async def test_customer_key_does_not_see_other_customers_devices_behind_a_gateway(hub: RunningHub) -> None:
    """A customer key may see the gateway it shares, but not the other customers' sub-devices, nor
    their live events."""
    await build_world(hub)
    c = hub.client
    for cid in ("cust1", "cust2"):
        await _ok(await c.post(f"{API}/customers?tenantId=A", json={"id": cid}), 201)
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA-gw", "nodeType": "gateway"}), 201)
    await _ok(await c.post(f"{API}/products?tenantId=A", json={"id": "pA-sub", "nodeType": "sub-device"}), 201)
    await _ok(
        await c.post(
            f"{API}/gateways?tenantId=A", json={"id": "gwA", "name": "gw", "productId": "pA-gw", "customerId": "cust1"}
        ),
        201,
    )
    for did, cust in (("mine", "cust1"), ("theirs", "cust2")):
        await _ok(
            await c.post(
                f"{API}/devices?tenantId=A",
                json={"id": did, "name": did, "productId": "pA-sub", "parentId": "gwA", "customerId": cust},
            ),
            201,
        )
    key = await _key(hub, {"name": "cust1 viewer", "role": "viewer", "tenantId": "A", "customerId": "cust1"})
    async with hub.as_key(key["key"]) as k:
        children = await _ok(await k.get(f"{API}/gateways/gwA/devices"))
        assert [d["id"] for d in children["items"]] == ["mine"]
        gw = await _ok(await k.get(f"{API}/gateways/gwA"))
        assert len(gw["deviceIDs"]) == 1
        # events are read one own device at a time: the whole tenant's stream or log is not for a customer
        _assert_error(await k.get(f"{API}/events/stream?types=telemetry"), (403,), "permission_denied")
        _assert_error(await k.get(f"{API}/events"), (403,), "permission_denied")
        _assert_error(await k.get(f"{API}/events/stream?deviceId=theirs"), (404,), "not_found")
        _assert_error(await k.get(f"{API}/events?deviceId=theirs"), (404,), "not_found")
        assert (await _ok(await k.get(f"{API}/events?deviceId=mine")))["items"] == []
        async with k.stream("GET", f"{API}/events/stream?types=telemetry&deviceId=mine") as resp:
            assert resp.status_code == 200
            sse = Sse(resp)
            await sse.connected()
            await _ok(await c.post(f"{API}/devices/theirs/telemetry", json={"secret": 1}))
            await _ok(await c.post(f"{API}/devices/mine/telemetry", json={"ok": 2}))
            frames = await sse.frames(1)
        assert [(e, d["deviceId"], list(d["data"])) for e, d in frames] == [("telemetry", "mine", ["ok"])]


async def test_a_key_cannot_grant_more_than_it_has(hub: RunningHub) -> None:
    assert (await hub.client.post("/api/v1/tenants", json={"id": "esc"})).status_code == 201
    r = await hub.client.post(
        "/api/v1/apikeys",
        json={"name": "key-maker", "role": "custom", "tenantId": "esc", "permissions": {"apikey": ["create"]}},
    )
    assert r.status_code == 201
    async with hub.as_key(r.json()["key"]) as maker:
        for body in (
            {"name": "boss", "role": "tenant-admin"},
            {"name": "viewer", "role": "viewer"},
            {"name": "dev", "role": "custom", "permissions": {"device": ["delete"]}},
        ):
            denied = await maker.post("/api/v1/apikeys", json=body)
            assert denied.status_code == 403, body
            assert denied.json()["error"]["code"] == "permission_denied"
        same = await maker.post(
            "/api/v1/apikeys", json={"name": "twin", "role": "custom", "permissions": {"apikey": ["create"]}}
        )
        assert same.status_code == 201
    keys = (await hub.client.get("/api/v1/apikeys", params={"tenantId": "esc"})).json()["items"]
    assert sorted(k["name"] for k in keys) == ["key-maker", "twin"]
