"""A running hub with the ThingsBoard API for tests: a tenant, a gateway (token ``gw-token``), a
second gateway, a customer with its API key, and a small asyncio wrapper around paho (MQTT 5)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from gatehub.app.node import Node
from gatehub.domain.model import Device, NodeType
from gatehub.domain.permissions import Role
from gatehub.store import Store
from tests.conftest import node_settings

TENANT = "acme"
GW_TOKEN = "gw-token"
GW2_TOKEN = "gw2-token"
CUSTOMER = "cust1"


@dataclass
class TbHub:
    node: Node
    http: httpx.AsyncClient
    customer_http: httpx.AsyncClient
    gateway: Device
    gateway2: Device

    @property
    def store(self) -> Store:
        assert self.node.store is not None
        return self.node.store

    @property
    def port(self) -> int:
        return self.node.endpoints.extra["mqtt_tcp"]

    async def device(self, name: str) -> Device:
        dev = await self.store.devices.find_by_name(TENANT, name)
        assert dev is not None, f"no device {name!r}"
        return dev

    async def points(self, device_id: str) -> dict[str, list[dict[str, Any]]]:
        return await self.store.data.telemetry(device_id, None, 0, 2**62, 10_000)

    async def wait_for(self, check: Any, timeout: float = 10.0) -> Any:
        """Poll the async predicate until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            res = await check()
            if res:
                return res
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s (last: {res!r})")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def tb_hub(tmp_path: Path, db_url: str, **settings: Any) -> AsyncIterator[TbHub]:
    node = Node(node_settings(tmp_path, db_url, mqtt_port=0, **settings))
    async with node:
        st = node.store
        assert st is not None
        await st.accounts.create_tenant(TENANT)
        await st.catalog.create_product(TENANT, "tbgw", "TB gateway", NodeType.GATEWAY)
        gw = await st.devices.create(TENANT, "Gateway 1", "tbgw", device_id="gw1", access_token=GW_TOKEN)
        gw2 = await st.devices.create(TENANT, "Gateway 2", "tbgw", device_id="gw2", access_token=GW2_TOKEN)
        await st.accounts.create_customer(TENANT, CUSTOMER)
        _i, tkey = await st.accounts.create_api_key("tenant admin", Role.TENANT_ADMIN, TENANT)
        _i, ckey = await st.accounts.create_api_key("customer", Role.OPERATOR, TENANT, CUSTOMER)
        base = f"http://127.0.0.1:{node.endpoints.http}"
        async with (
            httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tkey}"}, timeout=30) as http,
            httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ckey}"}, timeout=30) as chttp,
        ):
            yield TbHub(node, http, chttp, gw, gw2)


GATEWAY_TOPICS = (
    "v1/devices/me/attributes",
    "v1/devices/me/attributes/response/+",
    "v1/devices/me/rpc/request/+",
    "v1/devices/me/rpc/response/+",
    "v1/gateway/attributes",
    "v1/gateway/attributes/response",
    "v1/gateway/rpc",
    "v1/gateway/disconnect",
)


class Paho:
    """paho-mqtt (MQTT 5) driven from asyncio: its network loop runs in paho's own thread."""

    def __init__(self, port: int, token: str, client_id: str = "") -> None:
        self.port = port
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"c-{token}", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(token, "")
        self.msgs: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack = threading.Event()
        self.reason: Any = None
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[Any]] = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.msgs.put((m.topic, m.payload))
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.__setitem__(mid, list(codes))

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason = reason
        self.connack.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.acks[mid] = reason.value if hasattr(reason, "value") else int(reason)

    async def connect(self, *, expect_ok: bool = True) -> Paho:
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        ok = await asyncio.to_thread(self.connack.wait, 10)
        assert ok, "no CONNACK"
        if expect_ok:
            assert not self.reason.is_failure, f"refused: {self.reason}"
        return self

    async def subscribe(self, *topics: str) -> None:
        _rc, mid = self.c.subscribe([(t, SubscribeOptions(qos=1)) for t in topics])
        await self._until(lambda: mid in self.subacks)

    async def publish(self, topic: str, body: Any, qos: int = 1) -> int:
        """Publish and wait for the PUBACK; returns its reason code."""
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        info = self.c.publish(topic, payload, qos)
        if not qos:
            return 0
        await self._until(lambda: info.mid in self.acks)
        return self.acks.pop(info.mid)

    async def expect(self, topic: str, timeout: float = 10.0) -> Any:
        """The next message on ``topic`` (others received meanwhile are kept, in order)."""
        deadline = time.monotonic() + timeout
        kept: list[tuple[str, bytes]] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing on {topic} within {timeout} s; got {kept}")
                try:
                    t, payload = await asyncio.to_thread(self.msgs.get, True, min(left, 0.2))
                except queue.Empty:
                    continue
                if t == topic:
                    return orjson.loads(payload)
                kept.append((t, payload))
        finally:
            for m in kept:
                self.msgs.put(m)

    def pending(self) -> list[tuple[str, Any]]:
        out = []
        while True:
            try:
                t, p = self.msgs.get_nowait()
            except queue.Empty:
                return out
            out.append((t, orjson.loads(p)))

    async def _until(self, cond: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the broker")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.c.disconnect()
        await asyncio.sleep(0.05)
        self.c.loop_stop()


@contextlib.asynccontextmanager
async def gateway_client(h: TbHub, token: str = GW_TOKEN, client_id: str = "") -> AsyncIterator[Paho]:
    c = await Paho(h.port, token, client_id).connect()
    await c.subscribe(*GATEWAY_TOPICS)
    try:
        yield c
    finally:
        await c.close()
