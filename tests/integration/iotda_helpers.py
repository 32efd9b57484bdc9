"""A running node with the IoTDA HTTPS listener, devices to use it, and an HTTPS client."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from gatehub.app.node import Node
from gatehub.domain.model import NodeType
from gatehub.domain.telemetry import now_ms
from gatehub.protocols import iotda as p
from gatehub.store.tables import events, telemetry
from gatehub.transports.http.iotda import IotdaService
from tests.conftest import node_settings

TENANT = "t1"
DIRECT = "dev1"
OTHER = "dev2"
GATEWAY = "gw1"
GATEWAY2 = "gw2"
SECRET = "s3cret-of-dev1"
MODEL = {
    "properties": [
        {"identifier": "env.temp", "dataType": {"type": "float", "specs": {"min": "-40", "max": "85"}}},
        {"identifier": "hum", "dataType": {"type": "int", "specs": {"min": "0", "max": "100"}}, "key": "humidity"},
        {"identifier": "mode", "service": "env", "dataType": {"type": "enum", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "label", "dataType": {"type": "text", "specs": {"length": "8"}}},
    ]
}


class Clock:
    """A clock the test moves: real time (or a frozen instant) plus ``offset`` ms."""

    def __init__(self) -> None:
        self.offset = 0
        self.frozen: int | None = None

    def freeze(self) -> None:
        self.frozen = now_ms()

    def __call__(self) -> int:
        return (now_ms() if self.frozen is None else self.frozen) + self.offset


class IotdaHub:
    def __init__(self, node: Node, client: httpx.AsyncClient, ca_file: Path, children: list[str]) -> None:
        self.node = node
        self.client = client
        self.ca_file = ca_file
        self.children = children
        self.clock = Clock()
        self.service.clock = self.clock

    @property
    def port(self) -> int:
        return self.node.endpoints.extra["iotda"]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def service(self) -> IotdaService:
        svc: IotdaService = self.node.iotda.service  # type: ignore[union-attr]
        return svc

    def now_ts(self, hours: int = 0) -> str:
        when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
        return when.strftime("%Y%m%d%H")

    async def auth(
        self, device_id: str = DIRECT, secret: str = SECRET, sign_type: int = 0, ts: str | None = None
    ) -> str:
        ts = ts or self.now_ts()
        r = await self.client.post(
            "/v5/device-auth",
            json={"device_id": device_id, "sign_type": sign_type, "timestamp": ts, "password": p.password(secret, ts)},
        )
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token

    async def post(
        self,
        path: str,
        token: str | None,
        body: Any = None,
        content: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> httpx.Response:
        headers = {} if token is None else {"access_token": token}
        if content is not None:
            if content_type is not None:
                headers["content-type"] = content_type
            return await self.client.post(path, headers=headers, content=content)
        return await self.client.post(path, headers=headers, json=body)

    async def count_rows(self, device_id: str | None = None) -> int:
        q = select(func.count()).select_from(telemetry)
        if device_id is not None:
            q = q.where(telemetry.c.device_id == device_id)
        async with self.node.store.db.connect() as c:  # type: ignore[union-attr]
            return int((await c.execute(q)).scalar_one())

    async def count_events(self) -> int:
        """Events the device API logged (the provisioning's topology changes are logged too: not these)."""
        q = select(func.count()).select_from(events).where(events.c.type != "topology")
        async with self.node.store.db.connect() as c:  # type: ignore[union-attr]
            return int((await c.execute(q)).scalar_one())


def error(r: httpx.Response, status: int, code: str) -> str:
    """Assert an IoTDA error answer; returns its message."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error_code", "error_msg"}, body
    assert body["error_code"] == code, body
    msg: str = body["error_msg"]
    return msg


async def provision(node: Node, n_children: int) -> list[str]:
    st = node.store
    assert st is not None
    await st.accounts.create_tenant(TENANT)
    await st.catalog.create_product(TENANT, "dp", node_type=NodeType.DIRECT)
    await st.catalog.create_product(TENANT, "mp", node_type=NodeType.DIRECT, thing_model=MODEL)
    await st.catalog.create_product(TENANT, "gwp", node_type=NodeType.GATEWAY)
    await st.catalog.create_product(TENANT, "subp", node_type=NodeType.SUBDEVICE, thing_model=MODEL)
    await st.catalog.create_product(TENANT, "subfree", node_type=NodeType.SUBDEVICE)
    await st.devices.create(TENANT, "device one", "dp", device_id=DIRECT, secret=SECRET)
    await st.devices.create(TENANT, "device two", "mp", device_id=OTHER, secret=SECRET)
    await st.devices.create(TENANT, "gateway one", "gwp", device_id=GATEWAY, secret=SECRET)
    await st.devices.create(TENANT, "gateway two", "gwp", device_id=GATEWAY2, secret=SECRET)
    kids = []
    for i in range(n_children):
        cid = f"c{i:02d}"
        await st.devices.create(TENANT, f"child {i}", "subfree", device_id=cid, parent_id=GATEWAY)
        kids.append(cid)
    await st.devices.create(TENANT, "modelled child", "subp", device_id="cm", parent_id=GATEWAY)
    await st.devices.create(TENANT, "foreign child", "subfree", device_id="cx", parent_id=GATEWAY2)
    return kids


@asynccontextmanager
async def iotda_hub(tmp_path: Path, db_url: str, n_children: int = 0, **over: Any) -> AsyncIterator[IotdaHub]:
    values: dict[str, Any] = {"iotda_port": 0, "iotda_rate_per_device": 0, "iotda_rate_per_tenant": 0}
    values.update(over)
    node = Node(node_settings(tmp_path, db_url, **values))
    async with node:
        assert node.pki is not None
        ca_file = tmp_path / "hub-ca.pem"
        ca_file.write_text(node.pki.ca.cert_pem)
        kids = await provision(node, n_children)
        tls = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{node.endpoints.extra['iotda']}", verify=tls, timeout=30
        ) as client:
            yield IotdaHub(node, client, ca_file, kids)
