"""Provisioning through the Alink dialect: the whitelist, dynamic registration through a gateway
(the secret comes once; an operator's reset allows it again), product-secret registration of
sub-devices, and the ``authType=register`` CONNECT of a device that knows only its product."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import orjson
import pytest

from gatehub.domain.model import NodeType
from tests.integration.alink_helpers import (
    FREE_PK,
    GW_PK,
    GW_SECRET,
    SUB_PK,
    TENANT,
    AlinkClient,
    AlinkHub,
    alink_hub,
    sub_sign,
)
from tests.integration.mqtt_helpers import V311, Paho


async def _gateway(h: AlinkHub) -> AlinkClient:
    c = AlinkClient(GW_PK, "gw-0001", GW_SECRET)
    assert await c.start(h.port) == 0
    return c


async def test_registration_through_the_gateway_delivers_once(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h, h.http() as http:
        csv = "deviceName,deviceId\nwl-1,wl-1\nwl-2,wl-2\nsub-0,sub-0\n"
        r = await http.post(f"/api/v1/products/{SUB_PK}/whitelist", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code == 200 and [d["name"] for d in r.json()["created"]] == ["wl-1", "wl-2"], r.text
        assert r.json()["existing"] == ["sub-0"]
        await h.store.devices.create(TENANT, "free-1", FREE_PK, device_id="free-1")
        c = await _gateway(h)
        try:
            reg = c.topic("thing/sub/register")
            r = await c.request(reg, [{"productKey": SUB_PK, "deviceName": "wl-1"}], qos=0)
            secret = (await h.store.devices.get(TENANT, "wl-1")).secret
            assert r == {
                "id": r["id"],
                "code": 200,
                "data": [{"iotId": "wl-1", "productKey": SUB_PK, "deviceName": "wl-1", "deviceSecret": secret}],
                "message": "success",
            }
            r = await c.request(reg, [{"productKey": SUB_PK, "deviceName": "wl-1"}], qos=0)
            assert r["code"] == 7105 and r["data"] == [] and "delivered already" in r["message"]
            for ref, code in (
                ({"productKey": SUB_PK, "deviceName": "not-listed"}, 6100),  # not pre-registered
                ({"productKey": FREE_PK, "deviceName": "free-1"}, 7106),  # the product does not allow it
                ({"productKey": "a1Nope", "deviceName": "x"}, 6250),
                ({"productKey": GW_PK, "deviceName": "gw-0001"}, 7107),  # not a sub-device
            ):
                r = await c.request(reg, [ref], qos=0)
                assert r["code"] == code, (ref, r)
            # a partly failed batch still returns the secret it delivered
            r = await c.request(
                reg, [{"productKey": SUB_PK, "deviceName": "wl-2"}, {"productKey": SUB_PK, "deviceName": "zz"}]
            )
            assert (
                r["code"] == 6100 and [d["deviceName"] for d in r["data"]] == ["wl-2"] and r["data"][0]["deviceSecret"]
            )
            # the delivered secret is the one the topology wants
            r = await c.request(c.topic("thing/topo/add"), [sub_sign(SUB_PK, "wl-1", secret)])
            assert r["code"] == 200
            # an operator resets it: a new secret, deliverable again
            r = await http.post("/api/v1/devices/wl-1/secret/reset", json={})
            assert r.status_code == 200 and r.json()["secretDelivered"] is False
            fresh = r.json()["secret"]
            assert fresh != secret
            r = await c.request(reg, [{"productKey": SUB_PK, "deviceName": "wl-1"}], qos=0)
            assert r["code"] == 200 and r["data"][0]["deviceSecret"] == fresh
        finally:
            await c.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_product_register_signed_with_the_product_secret(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        await h.store.devices.create(TENANT, "wl-9", SUB_PK, device_id="wl-9")
        prod = await h.store.catalog.get_product(TENANT, SUB_PK)
        rnd = "r4nd0m"

        def entry(secret: str) -> dict[str, str]:
            sign = hmac.new(secret.encode(), f"deviceNamewl-9productKey{SUB_PK}random{rnd}".encode(), hashlib.sha256)
            return {
                "productKey": SUB_PK,
                "deviceName": "wl-9",
                "random": rnd,
                "signMethod": "hmacSha256",
                "sign": sign.hexdigest(),
            }

        c = await _gateway(h)
        try:
            topic = c.topic("thing/proxy/provisioning/product_register")
            r = await c.request(topic, {"proxieds": [entry("not-the-product-secret")]}, qos=0)
            assert r["code"] == 7101 and r["data"]["successes"] == []
            assert r["data"]["failures"][0]["code"] == 7101
            r = await c.request(topic, {"proxieds": [entry(prod.secret)]}, qos=0)
            secret = (await h.store.devices.get(TENANT, "wl-9")).secret
            assert r["code"] == 200 and r["data"]["successes"][0]["deviceSecret"] == secret
            r = await c.request(topic, {"proxieds": [entry(prod.secret)]}, qos=0)
            assert r["code"] == 7105
        finally:
            await c.disconnect()


def _register_creds(pk: str, dn: str, product_secret: str, auth_type: str = "register") -> tuple[str, str, str]:
    rnd = "abc123xyz"
    cid = f"{dn}.{pk}|random={rnd},authType={auth_type},securemode=2,signmethod=hmacsha256|"
    pw = hmac.new(product_secret.encode(), f"deviceName{dn}productKey{pk}random{rnd}".encode(), hashlib.sha256)
    return cid, f"{dn}&{pk}", pw.hexdigest()


async def test_connect_with_the_product_secret_registers_once(tmp_path: Path, db_url: str) -> None:
    async with alink_hub(tmp_path, db_url) as h:
        st = h.store
        prod = await st.catalog.create_product(TENANT, "a1DynGw", node_type=NodeType.GATEWAY, dynamic_register=True)
        closed = await st.catalog.create_product(TENANT, "a1Closed", node_type=NodeType.GATEWAY)
        await st.devices.create(TENANT, "factory-1", "a1DynGw", device_id="factory-1")
        await st.devices.create(TENANT, "factory-2", "a1Closed", device_id="factory-2")
        cid, user, pw = _register_creds("a1DynGw", "factory-1", prod.secret)
        with Paho(cid, V311) as c:
            rc, _ = await c.connect(h.port, username=user, password=pw)
            assert rc == 0
            (msg,) = await c.expect(1)  # never subscribed: the hub sends it anyway
            dev = await st.devices.get(TENANT, "factory-1")
            assert msg.topic == "/ext/register" and dev.secret_delivered
            assert orjson.loads(msg.payload) == {
                "productKey": "a1DynGw",
                "deviceName": "factory-1",
                "deviceSecret": dev.secret,
            }
            # confined: nothing of the tenant is reachable from this session
            assert h.m.hub.session_for_device("factory-1") is None
            await c.disconnect()
        refused = [
            (_register_creds("a1DynGw", "factory-1", prod.secret), 0x87),  # delivered already
            (_register_creds("a1DynGw", "factory-1", "wrong-secret"), 0x86),  # bad product signature
            (_register_creds("a1DynGw", "ghost", prod.secret), 0x87),  # not on the whitelist
            (_register_creds("a1Closed", "factory-2", closed.secret), 0x87),  # registration is off
            (_register_creds("a1DynGw", "factory-1", prod.secret, "regnwl"), 0x87),  # no whitelist-free mode
            (_register_creds("a1Nope", "x", prod.secret), 0x86),
        ]
        for (cid, user, pw), want in refused:
            with Paho(cid, V311) as c:
                rc, _ = await c.connect(h.port, username=user, password=pw)
                assert rc == want, (cid, rc)
