"""Alink test kit: a hub with a Link SDK gateway product and sub-device products, and an
in-process paho client (MQTT 3.1.1, like the Link SDK) that signs its CONNECT and its
sub-devices like the SDK does and awaits replies by id."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatehub.domain.model import Device, NodeType
from gatehub.domain.permissions import Role
from gatehub.protocols import alink
from tests.integration.mqtt_helpers import V311, MqttNode, Msg, Paho, mqtt_node

TENANT = "ali"
GW_PK, SUB_PK, TRUST_PK, FREE_PK = "a1GwPk", "a1SubPk", "a1TrustPk", "a1FreePk"
GW_SECRET = "gw-secret-0123456789abcdef"

SUB_MODEL: dict[str, Any] = {
    "properties": [
        {
            "identifier": "temp",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "120", "unit": "°C"}},
        },
        {"identifier": "level", "accessMode": "rw", "dataType": {"type": "int", "specs": {"min": "0", "max": "10"}}},
        {"identifier": "mode", "dataType": {"type": "enum", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "label", "dataType": {"type": "text", "specs": {"length": "8"}}, "key": "name_label"},
    ],
    "events": [
        {"identifier": "overheat", "type": "alert", "outputData": [{"identifier": "t", "dataType": {"type": "double"}}]}
    ],
    "services": [
        {
            "identifier": "calibrate",
            "callType": "sync",
            "inputData": [{"identifier": "offset", "dataType": {"type": "double", "specs": {"min": "-5", "max": "5"}}}],
            "outputData": [{"identifier": "ok", "dataType": {"type": "bool"}}],
        }
    ],
}


@dataclass
class AlinkHub:
    m: MqttNode
    gateway: Device
    subs: dict[str, Device] = field(default_factory=dict)  # name -> device
    key: str = ""

    @property
    def store(self) -> Any:
        return self.m.store

    @property
    def port(self) -> int:
        return self.m.port

    def http(self) -> Any:
        import httpx

        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.m.node.endpoints.http}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )


@asynccontextmanager
async def alink_hub(tmp_path: Path, db_url: str, n_subs: int = 3, **settings: Any) -> AsyncIterator[AlinkHub]:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None, mqtts_port=-1, **settings) as m:
        st = m.store
        await st.accounts.create_tenant(TENANT)
        await st.catalog.create_product(TENANT, GW_PK, node_type=NodeType.GATEWAY, dynamic_register=True)
        await st.catalog.create_product(
            TENANT, SUB_PK, node_type=NodeType.SUBDEVICE, thing_model=SUB_MODEL, dynamic_register=True
        )
        await st.catalog.create_product(TENANT, TRUST_PK, node_type=NodeType.SUBDEVICE, trusted_gateway_add=True)
        await st.catalog.create_product(TENANT, FREE_PK, node_type=NodeType.SUBDEVICE)
        gw = await st.devices.create(TENANT, "gw-0001", GW_PK, device_id="gw-0001", secret=GW_SECRET)
        h = AlinkHub(m, gw)
        for i in range(n_subs):
            name = f"sub-{i}"
            h.subs[name] = await st.devices.create(TENANT, name, SUB_PK, device_id=name, secret=f"sub-secret-{i:04d}")
        _info, h.key = await st.accounts.create_api_key("admin", Role.TENANT_ADMIN, TENANT)
        yield h


def connect_creds(
    pk: str, dn: str, secret: str, method: str = "hmacsha1", ts: str | None = None
) -> tuple[str, str, str]:
    ts = ts or str(int(time.time()))
    cid = f"{pk}&{dn}"
    client_id = f"{cid}|securemode=3,signmethod={method},timestamp={ts}|"
    return client_id, f"{dn}&{pk}", alink.sign(secret, method, cid, dn, pk, ts)


def sub_sign(pk: str, dn: str, secret: str, client_id: str | None = None, ts: str | None = None) -> dict[str, str]:
    """A sub-device's credentials as the SDK signs them (hmacSha256, clientId as sent)."""
    ts = ts or str(int(time.time() * 1000))
    cid = client_id or f"{pk}.{dn}"
    content = f"clientId{cid}deviceName{dn}productKey{pk}timestamp{ts}"
    import hashlib
    import hmac

    sign = hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()
    return {
        "productKey": pk,
        "deviceName": dn,
        "clientId": cid,
        "timestamp": ts,
        "signmethod": "hmacSha256",
        "sign": sign,
    }


class AlinkClient(Paho):
    _ids = itertools.count(1)

    def __init__(self, pk: str, dn: str, secret: str) -> None:
        self.pk, self.dn, self.secret = pk, dn, secret
        client_id, self.username, self.password = connect_creds(pk, dn, secret)
        super().__init__(client_id, V311)
        self.kept: list[Msg] = []

    async def start(self, port: int) -> int:
        rc, _ = await self.connect(port, username=self.username, password=self.password)
        return rc

    def topic(self, path: str, pk: str | None = None, dn: str | None = None) -> str:
        return f"/sys/{pk or self.pk}/{dn or self.dn}/{path}"

    async def request(
        self, topic: str, params: Any, qos: int = 1, timeout: float = 5.0, **extra: Any
    ) -> dict[str, Any]:
        rid = str(next(self._ids))
        body = {"id": rid, "version": "1.0", "params": params, **extra}
        await self.publish(topic, orjson.dumps(body), qos)
        return await self.reply(topic + "_reply", rid, timeout)

    async def reply(self, topic: str, rid: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.wait_for(topic, timeout, lambda b: rid is None or b.get("id") == rid)
        return msg

    async def wait_for(self, topic: str, timeout: float = 5.0, pred: Any = None) -> dict[str, Any]:
        for i, m in enumerate(self.kept):
            body = orjson.loads(m.payload)
            if m.topic == topic and (pred is None or pred(body)):
                del self.kept[i]
                return body  # type: ignore[no-any-return]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"nothing on {topic} within {timeout} s; kept {[k.topic for k in self.kept]}")
            try:
                (m,) = await self.expect(1, left)
            except AssertionError:
                continue
            body = orjson.loads(m.payload)
            if m.topic == topic and (pred is None or pred(body)):
                return body  # type: ignore[no-any-return]
            self.kept.append(m)
