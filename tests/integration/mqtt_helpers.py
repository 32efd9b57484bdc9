"""MQTT test kit: a running node with its MQTT listeners, paho clients driven from a thread,
and a raw asyncio client built on gatehub's own codec (for exact bytes and reason codes)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from gatehub.app.node import Node
from gatehub.domain.model import NodeType
from gatehub.pki import IssuedCertificate, PKIName, issue_gateway_certificate
from gatehub.protocols.mqtt import ConnackPacket, ConnectPacket, Decoder, Packet, encode_packet
from gatehub.transports.mqtt.hub import MqttHub
from tests.conftest import node_settings

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
ANON = "anon"
TIMEOUT = 5.0


# --- the node --------------------------------------------------------------------------------
class MqttNode:
    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def hub(self) -> MqttHub:
        hub: MqttHub = self.node.mqtt
        return hub

    @property
    def port(self) -> int:
        return self.node.endpoints.extra["mqtt_tcp"]

    @property
    def tls_port(self) -> int:
        return self.node.endpoints.extra["mqtt_tls"]

    @property
    def store(self) -> Any:
        return self.node.store

    async def tenant_with_devices(self, tenant: str, *devices: tuple[str, str], gateway: bool = False) -> None:
        """A tenant, a product and devices given as (device id, access token)."""
        await self.store.accounts.create_tenant(tenant)
        product = f"{tenant}-p"
        await self.store.catalog.create_product(
            tenant, product, node_type=NodeType.GATEWAY if gateway else NodeType.DIRECT
        )
        for dev_id, token in devices:
            await self.store.devices.create(tenant, f"device {dev_id}", product, device_id=dev_id, access_token=token)

    async def gateway_cert(
        self, tenant: str, gateway: str, *, years: int = 1, now: dt.datetime | None = None
    ) -> IssuedCertificate:
        assert self.node.pki is not None
        cert = issue_gateway_certificate(self.node.pki.ca, tenant, gateway, PKIName(), years, now=now)
        await self.store.certificates.record(cert)
        return cert

    def client_tls(self, tmp_path: Path, cert: IssuedCertificate | None = None) -> ssl.SSLContext:
        assert self.node.pki is not None
        ctx = self.node.pki.client_context(cert.cert_pem if cert else None, cert.key_pem if cert else None)
        return ctx


@asynccontextmanager
async def mqtt_node(tmp_path: Path, db_url: str, **over: Any) -> AsyncIterator[MqttNode]:
    values: dict[str, Any] = {"mqtt_port": 0, "mqtts_port": 0, "mqtt_anonymous_tenant": ANON}
    values.update(over)
    node = Node(node_settings(tmp_path, db_url, **values))
    async with node:
        if values.get("mqtt_anonymous_tenant"):
            assert node.store is not None
            await node.store.accounts.create_tenant(values["mqtt_anonymous_tenant"])
        yield MqttNode(node)


async def eventually(check: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# --- paho ------------------------------------------------------------------------------------
@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any


class Paho:
    """A paho-mqtt 2.x client whose network loop runs in its own thread (no auto-reconnect);
    the test awaits results without blocking the node's event loop.

    paho writes a packet at once from the thread that calls ``publish``/``subscribe`` when it
    runs no loop thread of its own (``loop_start``), and a TLS socket must never be read and
    written from two threads at the same time (OpenSSL's state is not thread-safe: the
    connection breaks or a packet vanishes). Every call into the client therefore holds
    ``_io``, as the loop thread does while it reads and writes."""

    def __init__(
        self,
        client_id: str = "",
        version: int = V5,
        *,
        clean_session: bool | None = None,
        transport: str = "tcp",
    ) -> None:
        kw: dict[str, Any] = {}
        if version != V5 and clean_session is not None:
            kw["clean_session"] = clean_session
        self.version = version
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, transport=transport, **kw
        )  # type: ignore[call-overload]
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connack: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()
        c = self.client
        c.on_message = self._on_message
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect

    # callbacks (paho's thread)
    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        props = getattr(m, "properties", None)
        self.messages.put(Msg(m.topic, m.payload, m.qos, bool(m.retain), props))

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack.put((int(rc.value), bool(flags.session_present), props))

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _props: Any) -> None:
        self.subacks.put([int(c.value) for c in codes])

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        self.disconnects.put(int(rc.value))

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._io:
                rc = self.client.loop(0.02)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                time.sleep(0.02)

    def _locked(self, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        with self._io:
            return call(*args, **kw)

    async def _call(self, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``call`` in a worker thread while the loop thread is not using the socket."""
        return await asyncio.to_thread(self._locked, call, *args, **kw)

    # actions
    async def connect(
        self,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 30,
        tls: ssl.SSLContext | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        will_delay: int | None = None,
        host: str = "127.0.0.1",
    ) -> tuple[int, bool]:
        """Connect and wait for the CONNACK: (reason code, session present)."""
        c = self.client
        if username is not None:
            c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set_context(tls)
        if will is not None:
            wprops = None
            if will_delay is not None:
                wprops = PahoProperties(PacketTypes.WILLMESSAGE)
                wprops.WillDelayInterval = will_delay
            c.will_set(*will, properties=wprops)
        kw: dict[str, Any] = {}
        if self.version == V5:
            kw["clean_start"] = clean_start
            if session_expiry is not None:
                props = PahoProperties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = session_expiry
                kw["properties"] = props
        await asyncio.to_thread(c.connect, host, port, keepalive, **kw)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        rc, present, _props = await asyncio.to_thread(self.connack.get, True, TIMEOUT)
        return rc, present

    async def subscribe(self, topic: str, qos: int = 0, props: Any = None, **options: Any) -> list[int]:
        if self.version == V5:
            opts = mqtt.SubscribeOptions(qos=qos, **options)
            await self._call(self.client.subscribe, topic, options=opts, properties=props)
        else:
            await self._call(self.client.subscribe, topic, qos)
        return await asyncio.to_thread(self.subacks.get, True, TIMEOUT)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, props: Any = None) -> None:
        info = await self._call(self.client.publish, topic, payload, qos, retain, properties=props)
        await asyncio.to_thread(info.wait_for_publish, TIMEOUT)
        assert info.is_published(), f"PUBLISH {topic} not acknowledged"

    async def expect(self, n: int = 1, timeout: float = TIMEOUT) -> list[Msg]:
        out = []
        deadline = time.monotonic() + timeout
        for _ in range(n):
            left = max(0.01, deadline - time.monotonic())
            try:
                out.append(await asyncio.to_thread(self.messages.get, True, left))
            except queue.Empty:
                raise AssertionError(f"expected {n} messages, got {len(out)}: {out}") from None
        return out

    async def nothing(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.messages.empty(), f"unexpected message {self.messages.get_nowait()}"

    async def disconnected(self, timeout: float = TIMEOUT) -> int:
        """Wait for the connection to end; the reason code paho reports."""
        return await asyncio.to_thread(self.disconnects.get, True, timeout)

    async def disconnect(self) -> None:
        if self.client.is_connected():
            await self._call(self.client.disconnect)
            with contextlib.suppress(queue.Empty):
                await asyncio.to_thread(self.disconnects.get, True, TIMEOUT)
        self.stop()

    def abort(self) -> None:
        """Close the socket without DISCONNECT (the server must publish the will)."""
        self.stop()
        sock = self.client.socket()
        sock = getattr(sock, "_socket", sock)  # paho's WebSocket wrapper holds the real socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def __enter__(self) -> Paho:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            s = self.client.socket()
            if s is not None:
                s.close()


def sub_id_props(sub_id: int) -> Any:
    props = PahoProperties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = sub_id
    return props


# --- a raw client on gatehub's codec ------------------------------------------------------------
class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder(version=version)
        self.version = version

    @classmethod
    async def open(cls, port: int, version: int = 5) -> RawClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w, version)

    def send(self, *packets: Packet) -> None:
        self.writer.write(b"".join(encode_packet(p, self.version) for p in packets))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def connect(self, client_id: str = "raw", **fields: Any) -> ConnackPacket:
        self.send(ConnectPacket(client_id, self.version, **fields))
        pkt = await self.recv()
        assert isinstance(pkt, ConnackPacket), pkt
        return pkt

    async def recv(self, timeout: float = TIMEOUT) -> Packet | None:
        """The next packet, or None once the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.decoder.next_packet()
            if pkt is not None:
                return pkt
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no packet from the server in time")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self.decoder.feed(data)

    async def closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Read until the server closes; every packet it sent before closing."""
        out = []
        while True:
            pkt = await self.recv(timeout)
            if pkt is None:
                return out
            out.append(pkt)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
