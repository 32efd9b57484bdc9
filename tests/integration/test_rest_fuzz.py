"""Fuzzing the whole REST API (``/api/v1``) with schemathesis against the hub's own OpenAPI.

The node runs in the test's event loop with MQTT and device links on (so no route answers 503
for a transport that is off); schemathesis (requests, synchronous) runs in a worker thread and
calls it over a real socket. Every generated request goes out with a real API key: the system
administrator's or a tenant administrator's of tenant ``fz``. Some cases get a real id in their
path (one of ``fz``'s objects, or one of tenant ``other``'s, which a tenant key must not see),
so the fuzzer reaches the code behind the lookups, where the big integers used to overflow.

What each answer must satisfy (schemathesis' own checks): a status code the operation documents,
a response that fits the documented schema and content type, and no server error. The one
exception to "no 5xx" is documented behaviour of a call to a device: a two-way RPC that gets no
reply answers 504 ``rpc_timeout`` (its timeout is capped at 200 ms here to keep the test quick).
``GET /events/stream`` is left out: it is an endless stream (its errors are tested elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gatehub.app.node import Node
from tests.conftest import RunningHub, node_settings

EXAMPLES = 6  # per operation and generation mode (keeps the test near 30 s on a loaded 2-core box)
API = "/api/v1"
SKIPPED = {"GET /api/v1/events/stream"}
RPC_TIMEOUT_MS = 200

#: what a path parameter names, for a tenant's own object ("fz") and another tenant's ("other")
REAL: dict[str, dict[str, str]] = {
    "fz": {
        "tenant_id": "fz",
        "product_id": "fzDir",
        "device_id": "fzdev",
        "gateway_id": "fzgw",
        "device_identifier": "FZDEV",
    },
    "other": {
        "tenant_id": "other",
        "product_id": "otherDir",
        "device_id": "otherdev",
        "gateway_id": "othergw",
        "device_identifier": "OTHERDEV",
    },
}


@dataclass
class World:
    url: str
    keys: dict[str, str]
    serials: dict[str, str]
    seen: dict[str, int] = field(default_factory=dict)


async def _ok(r: httpx.Response, status: int = 201) -> Any:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    return r.json() if r.content else None


async def _provision(c: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    serials = {}
    for t in ("fz", "other"):
        await _ok(await c.post(f"{API}/tenants", json={"id": t}))
        for suffix, node_type in (("Dir", "direct"), ("Gw", "gateway"), ("Sub", "sub-device")):
            await _ok(await c.post(f"{API}/products?tenantId={t}", json={"id": t + suffix, "nodeType": node_type}))
        gw = {"id": f"{t}gw", "name": f"{t} gateway", "productId": f"{t}Gw"}
        await _ok(await c.post(f"{API}/gateways?tenantId={t}", json=gw))
        dev = {"id": f"{t}dev", "name": f"{t} device", "productId": f"{t}Dir"}
        await _ok(await c.post(f"{API}/devices?tenantId={t}", json=dev))
        sub = {"id": f"{t}sub", "name": f"{t} sub", "productId": f"{t}Sub", "parentId": f"{t}gw"}
        await _ok(await c.post(f"{API}/devices?tenantId={t}", json=sub))
        await _ok(await c.post(f"{API}/devices/{t}dev/telemetry", json={"ts": 1000, "values": {"t": 1.5}}), 200)
        cert = await _ok(await c.post(f"{API}/gateways/{t}gw/certificates?tenantId={t}", json={}))
        serials[t] = str(cert["serialNO"])
    made = await _ok(
        await c.post(f"{API}/apikeys", json={"name": "fz admin", "role": "tenant-admin", "tenantId": "fz"})
    )
    return made["key"], serials


@asynccontextmanager
async def fuzz_node(tmp_path: Path) -> AsyncIterator[World]:
    settings = node_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}",
        mqtt_port=0,
        devicelink_port_min=0,
        devicelink_port_max=0,
        rpc_default_timeout_ms=RPC_TIMEOUT_MS,
    )
    node = Node(settings)
    async with node:
        admin = node.settings.admin_key_path.read_text().strip()
        url = f"http://127.0.0.1:{node.endpoints.http}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as c:
            tenant_key, serials = await _provision(c)
        yield World(url, {"admin": admin, "tenant": tenant_key}, serials)


def _inject(case: Any, who: str, real: str | None, world: World) -> None:
    """Put a real id where the case has an id parameter; keep the fixtures alive (no DELETE of a
    real object except another tenant's by the tenant key, which must answer 404)."""
    if real is None:
        return
    path = case.operation.path
    is_delete_of_object = case.method == "DELETE" and path.endswith("}") and "attributes" not in path
    if is_delete_of_object and not (who == "tenant" and real == "other"):
        return
    ids = REAL[real]
    params = case.path_parameters or {}
    for name in list(params):
        if name in ids:
            params[name] = ids[name]
        elif name == "serial":
            params[name] = world.serials[real]
    if case.query is not None and "tenantId" in case.query:
        case.query["tenantId"] = real
    if isinstance(case.body, dict):
        if "/rpc" in path or "/services/" in path or "/properties/set" in path:
            case.body["timeout"] = RPC_TIMEOUT_MS  # a device that never answers: do not wait long
        if "/devicelink/" in path:
            case.body.pop("source", None)  # no name lookups of generated host names


def _fuzz(spec: dict[str, Any], world: World) -> None:
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(
                case=operation.as_strategy(generation_mode=mode),
                who=st.sampled_from(["admin", "tenant"]),
                real=st.sampled_from([None, "fz", "other"]),
            )
            def run(case: Any, who: str, real: str | None) -> None:
                _inject(case, who, real, world)
                headers = {**(case.headers or {}), "Authorization": f"Bearer {world.keys[who]}"}
                resp = case.call(base_url=world.url, session=session, headers=headers, timeout=20)
                key = f"{case.operation.label} {resp.status_code}"
                world.seen[key] = world.seen.get(key, 0) + 1
                text = resp.content.decode(errors="replace")  # the CRL in DER is binary
                where = (case.operation.label, who, real, resp.status_code, text[:300])
                if resp.status_code >= 500:
                    # documented: an RPC the device never answers times out
                    assert resp.status_code == 504 and "rpc_timeout" in text, where
                assert "another tenant" not in text, where
                case.validate_response(resp, checks=checks, headers=headers)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # an operation with no input cannot be sent invalid input
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


@pytest.mark.slow
async def test_fuzz_rest_api(tmp_path: Path) -> None:
    async with fuzz_node(tmp_path) as world:
        async with httpx.AsyncClient(base_url=world.url) as c:
            spec = (await c.get("/openapi.json")).json()
        await asyncio.wait_for(asyncio.to_thread(_fuzz, spec, world), 150)
    seen = world.seen
    operations = {k.rsplit(" ", 1)[0] for k in seen}
    assert len(operations) >= 55, sorted(operations)
    assert any(k.endswith(" 200") for k in seen) and any(k.endswith(" 201") for k in seen), seen
    assert any(k.endswith(" 400") for k in seen) and any(k.endswith(" 404") for k in seen), seen


def _integers(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every integer schema under ``node``, with where it is."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "integer":
            found.append((where, node))
        for k, v in node.items():
            found += _integers(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _integers(v, f"{where}[{i}]")
    return found


async def test_openapi_states_bounds_errors_and_the_api_key(hub: RunningHub) -> None:
    """The description the fuzzer trusts: every integer has both bounds (so no input overflows the
    64-bit database integers), validation is 400 (no 422 anywhere), every REST operation
    documents the error statuses with the error body, and API keys are a bearer scheme."""
    spec = (await hub.client.get("/openapi.json")).json()
    ints = _integers(spec, "")
    assert len(ints) > 20
    for where, schema in ints:
        assert isinstance(schema.get("minimum"), int) and isinstance(schema.get("maximum"), int), (where, schema)
        assert -(2**63) <= schema["minimum"] <= schema["maximum"] <= 2**63 - 1, (where, schema)
    assert '"422"' not in str(spec).replace("'", '"'), "422 is documented somewhere"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"] == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "gatehub API key",
            "description": spec["components"]["securitySchemes"]["apiKey"]["description"],
        }
    }
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    public = {"/api/v1/certificates/crl", "/api/v1/certificates/crl.der", "/api/v1/certificates/ca"}
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in ops.items():
            codes = set(op["responses"])
            want = {"400", "503"} if path in public else {"400", "401", "403", "429", "503"}
            assert want <= codes, (method, path, sorted(codes))
            assert (path in public) == ("security" not in op), (method, path)
            for code in codes - {"200", "201", "202", "204"}:
                body = op["responses"][code]["content"]["application/json"]["schema"]
                assert body == error_ref, (method, path, code, body)

    # the security scheme is the one the API checks: every operation that declares it answers
    # 401 without a key and with a key of another scheme, and none that does not declare it does
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as anon:
        for path, ops in spec["paths"].items():
            if not path.startswith("/api/v1/"):
                continue
            url = path.replace("{serial}", "1")
            for name in ("device_id", "gateway_id", "product_id", "tenant_id", "key_id", "rpc_id", "scope"):
                url = url.replace("{" + name + "}", "shared" if name == "scope" else "x")
            url = url.replace("{identifier}", "x").replace("{device_identifier}", "x")
            url = url.replace("{device_link_token}", "x")
            assert "{" not in url, url
            for method, op in ops.items():
                for headers in ({}, {"Authorization": f"Basic {hub.admin_key}"}):
                    r = await anon.request(method, url, headers=headers)
                    if "security" in op:
                        assert r.status_code == 401, (method, url, r.status_code, r.text)
                        assert r.json()["error"]["code"] == "unauthenticated"
                    else:
                        assert r.status_code == 200, (method, url, r.status_code, r.text)
