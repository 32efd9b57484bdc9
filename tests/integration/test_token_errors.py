"""A rejected credential says what is wrong with it (issue 19 #6d): a REST API key that is not
one, a G-SDK login token where an API key belongs and the other way round, a revoked key, a
cut secret, a G-SDK token that is not a JWT. PyJWT's own messages ("Not enough segments") never
reach the user."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from gatehub.domain.permissions import Role
from tests.conftest import RunningHub
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master

API = "/api/v1"


async def _401(hub: RunningHub, key: str) -> str:
    async with hub.as_key(key) as c:
        r = await c.get(f"{API}/tenants")
    assert r.status_code == 401, r.text
    body = r.json()["error"]
    assert body["code"] == "unauthenticated"
    message: str = body["message"]
    return message


async def test_rest_401_says_what_is_wrong_with_the_key(hub: RunningHub) -> None:
    assert hub.node.store is not None
    info, key = await hub.node.store.accounts.create_api_key("ops", Role.SYSTEM_ADMIN, None)
    assert "not a gatehub API key" in (msg := await _401(hub, "abc"))
    assert "ghk_<id>_<secret>" in msg and "gatehub apikey create" in msg
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2ln"
    assert "G-SDK login token" in await _401(hub, jwt_like)
    assert "secret part is wrong" in await _401(hub, key[:-3])
    await hub.node.store.accounts.delete_api_key(info["id"])
    assert f"API key {info['id']} was revoked" in await _401(hub, key)
    r = await httpx.AsyncClient(base_url=hub.url).get(f"{API}/tenants")
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("abc", "not a JWT"),
        ("Bearer a.b.c", "without 'Bearer '"),
        ("ghk_0123_secret", "REST API key, not a G-SDK login token"),
        ("a.b.c", "damaged"),
        ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhY21lIn0.AAAA", "not signed by this hub"),
    ],
)
async def test_grpc_bad_login_token_says_what_is_wrong(tmp_path: Path, db_url: str, token: str, says: str) -> None:
    async with running_master(tmp_path, db_url) as m:
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await m.gateway(ch).GetList(
                    m.g.gateway_pb2.GetListRequest(), metadata=(("token", token),), timeout=CALL_TIMEOUT
                )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        details = err.value.details() or ""
        assert says in details, details
        assert "segments" not in details
