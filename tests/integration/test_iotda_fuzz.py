"""Fuzzing the four IoTDA endpoints with schemathesis against the hub's own OpenAPI: no 5xx.

The hub runs in the test's event loop; schemathesis (requests, synchronous) runs in a worker
thread and calls it over real HTTPS, trusting the hub CA. Half of the report cases carry a valid
token for the device in the path, so the fuzzer reaches the validation behind authentication.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from tests.integration.iotda_helpers import DIRECT, GATEWAY, IotdaHub, iotda_hub

EXAMPLES = 25  # per endpoint and generation mode (keeps the test near 30 s)


def _fuzz(spec: dict[str, Any], base_url: str, ca_file: str, tokens: dict[str, str]) -> dict[str, int]:
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    session.verify = ca_file
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
            def run(case: Any, real: bool) -> None:
                if real and case.path_parameters is not None and "device_id" in case.path_parameters:
                    device = GATEWAY if "gateway" in case.operation.path else DIRECT
                    case.path_parameters["device_id"] = device
                    case.headers = {**(case.headers or {}), "access_token": tokens[device]}
                resp = case.call(base_url=base_url, session=session, timeout=10, verify=ca_file)
                key = f"{case.operation.label} {resp.status_code}"
                seen[key] = seen.get(key, 0) + 1
                assert resp.status_code < 500, (case.operation.label, resp.status_code, resp.text[:300])
                if resp.status_code != 200:
                    body = orjson.loads(resp.content)
                    assert set(body) == {"error_code", "error_msg"}, body
                    assert body["error_code"].startswith("IOTDA.")

            run()
    return seen


@pytest.mark.slow
async def test_fuzz_no_server_errors(tmp_path: Path, db_url: str) -> None:
    from gatehub.transports.http.iotda_openapi import openapi

    # the fuzzer sends hundreds of wrong tokens and signatures from one address on purpose: the
    # credential guard's back-off (tests/e2e/test_credential_guard.py) would make it crawl
    async with iotda_hub(tmp_path, db_url, n_children=3, guard_backoff_after=100_000) as hub:
        tokens = {DIRECT: await hub.auth(DIRECT), GATEWAY: await hub.auth(GATEWAY)}
        spec = (await hub.client.get("/v5/openapi.json")).json()
        assert spec == orjson.loads(orjson.dumps(openapi()))
        seen = await asyncio.wait_for(asyncio.to_thread(_fuzz, spec, hub.url, str(hub.ca_file), tokens), 120)
        await _check_reached(hub, seen)


async def _check_reached(hub: IotdaHub, seen: dict[str, int]) -> None:
    """The fuzzer got past authentication and stored something, and hit every endpoint."""
    assert any(k.endswith(" 200") and "properties/report" in k for k in seen), seen
    assert any(k.endswith(" 400") for k in seen), seen
    assert {k.rsplit(" ", 1)[0] for k in seen} >= {
        "POST /v5/device-auth",
        "POST /v5/devices/{device_id}/sys/messages/up",
        "POST /v5/devices/{device_id}/sys/properties/report",
        "POST /v5/devices/{device_id}/sys/gateway/sub-devices/properties/report",
    }
    assert await hub.count_rows() + await hub.count_events() > 0
