"""Device-link test kit: a node with MQTT and device links on loopback, echo devices (TCP, UDP)
that record what reached them, and small socket clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from gatehub.app.node import Node
from gatehub.domain.model import NodeType
from gatehub.services.links.service import DeviceLinks
from tests.conftest import node_settings

TIMEOUT = 10.0


@dataclass
class LinkNode:
    node: Node
    api: httpx.AsyncClient
    key: str

    @property
    def links(self) -> DeviceLinks:
        svc: DeviceLinks = self.node.services.links  # type: ignore[union-attr]
        return svc

    @property
    def mqtt_port(self) -> int:
        return self.node.endpoints.extra["mqtt_tcp"]

    @property
    def store(self) -> Any:
        return self.node.store

    async def direct_device(self, tenant: str, device_id: str, token: str | None = None) -> None:
        st = self.store
        with contextlib.suppress(Exception):
            await st.accounts.create_tenant(tenant)
        with contextlib.suppress(Exception):
            await st.catalog.create_product(tenant, f"{tenant}-direct", node_type=NodeType.DIRECT)
        await st.devices.create(tenant, f"dev {device_id}", f"{tenant}-direct", device_id=device_id, access_token=token)

    async def gateway_with_child(self, tenant: str, gateway: str, token: str, child: str) -> None:
        st = self.store
        with contextlib.suppress(Exception):
            await st.accounts.create_tenant(tenant)
        with contextlib.suppress(Exception):
            await st.catalog.create_product(tenant, f"{tenant}-gw", node_type=NodeType.GATEWAY)
        with contextlib.suppress(Exception):
            await st.catalog.create_product(tenant, f"{tenant}-sub", node_type=NodeType.SUBDEVICE)
        await st.devices.create(tenant, f"gw {gateway}", f"{tenant}-gw", device_id=gateway, access_token=token)
        await st.devices.create(tenant, child, f"{tenant}-sub", device_id=child, parent_id=gateway)

    async def create(self, ident: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        r = await self.api.post(f"/api/v1/devicelink/{ident}", json=body)
        assert r.status_code == expect, r.text
        out: dict[str, Any] = r.json()
        return out

    async def events(self, tenant: str, type_: str) -> list[dict[str, Any]]:
        r = await self.api.get("/api/v1/events", params={"tenantId": tenant, "type": type_})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


@asynccontextmanager
async def link_node(tmp_path: Path, db_url: str, **over: Any) -> AsyncIterator[LinkNode]:
    values: dict[str, Any] = {
        "mqtt_port": 0,
        "devicelink_port_min": 0,
        "devicelink_port_max": 0,
        "devicelink_connect_timeout": 5.0,
    }
    values.update(over)
    node = Node(node_settings(tmp_path, db_url, **values))
    async with node:
        key = node.settings.admin_key_path.read_text().strip()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{node.endpoints.http}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            yield LinkNode(node, api, key)


@asynccontextmanager
async def mqtt_device(port: int, token: str, client_id: str) -> AsyncIterator[aiomqtt.Client]:
    """A device connected over MQTT with its access token (the hub learns its address)."""
    async with aiomqtt.Client("127.0.0.1", port, username=token, identifier=client_id) as c:
        yield c


# --- devices ---------------------------------------------------------------------------------
@dataclass
class Recorder:
    received: bytearray = field(default_factory=bytearray)
    datagrams: list[bytes] = field(default_factory=list)
    connections: int = 0


class _TcpEcho(asyncio.Protocol):
    def __init__(self, rec: Recorder, banner: bytes) -> None:
        self.rec = rec
        self.banner = banner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.rec.connections += 1
        if self.banner:
            self.transport.write(self.banner)

    def data_received(self, data: bytes) -> None:
        self.rec.received += data
        self.transport.write(data)


@asynccontextmanager
async def tcp_echo(banner: bytes = b"") -> AsyncIterator[tuple[int, Recorder]]:
    rec = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _TcpEcho(rec, banner), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], rec
    finally:
        server.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.rec.datagrams.append(data)
        self.transport.sendto(b"echo:" + data, addr)


@asynccontextmanager
async def udp_echo() -> AsyncIterator[tuple[int, Recorder, asyncio.DatagramTransport]]:
    rec = Recorder()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpEcho(rec), local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1], rec, transport
    finally:
        transport.close()


# --- clients ---------------------------------------------------------------------------------
async def tcp_client(
    port: int, source: tuple[str, int] | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=source), TIMEOUT)


async def write_until_held_back(writer: asyncio.StreamWriter, limit: int = 32 * 1024 * 1024) -> int:
    """Write 64 KiB blocks until the link stops taking them (a drain does not finish within
    50 ms) or ``limit`` bytes went out; the bytes written."""
    sent = 0
    block = b"\xa5" * 65536
    while sent < limit:
        writer.write(block)
        sent += len(block)
        try:
            await asyncio.wait_for(writer.drain(), 0.05)
        except TimeoutError:
            break
    return sent


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), TIMEOUT)


async def refused(port: int, source: tuple[str, int] | None = None) -> bool:
    """True when a connection to the link is accepted by the kernel and then closed on us at once
    (the link refused the client), or not accepted at all."""
    try:
        reader, writer = await tcp_client(port, source)
    except OSError:
        return True
    try:
        data = await asyncio.wait_for(reader.read(1), TIMEOUT)
        return data == b""
    except (ConnectionError, OSError):
        return True
    finally:
        writer.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait(data)

    async def get(self, timeout: float = TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)


@asynccontextmanager
async def udp_client(port: int, bind: tuple[str, int] = ("127.0.0.1", 0)) -> AsyncIterator[tuple[Any, UdpClient]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(UdpClient, local_addr=bind, remote_addr=("127.0.0.1", port))
    try:
        yield transport, proto
    finally:
        transport.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def eventually(check: Any, timeout: float = TIMEOUT) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
