"""The agent's MQTT 5 connection to the hub (aiomqtt): authentication, subscriptions, requests
of the gatehub extension with their answers, and publishes whose PUBACK reason code is known.

aiomqtt's ``publish`` waits for the PUBACK but drops its reason code, and the outbox must not
forget a batch the hub refused; ``AckingClient`` adds ``publish_acked`` that returns it. It uses
aiomqtt's paho client (``_client``), the one place where the agent relies on aiomqtt internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError, MqttError
from paho.mqtt.enums import MQTTErrorCode

from gatehub.agent.config import HubConfig
from gatehub.protocols.tbext import ANSWERS

log = logging.getLogger(__name__)

GW_CONNECT = "v1/gateway/connect"
GW_DISCONNECT = "v1/gateway/disconnect"
GW_RPC = "v1/gateway/rpc"
GW_ATTRIBUTES = "v1/gateway/attributes"
ME_RPC_REQUEST = "v1/devices/me/rpc/request/"
ME_RPC_RESPONSE = "v1/devices/me/rpc/response/"
SUBSCRIPTIONS = (
    GW_RPC,
    GW_ATTRIBUTES,
    GW_DISCONNECT,
    "v1/gateway/topology/#",
    "v1/gateway/register/response",
    "v1/devices/me/rpc/response/+",
)


class HubUnavailable(Exception):
    """The connection to the hub is gone (or an answer did not come)."""


class AckingClient(aiomqtt.Client):
    """aiomqtt's client plus ``publish_acked``: QoS 1, returns the PUBACK's reason code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, asyncio.Future[int]] = {}
        self._early: dict[int, int] = {}
        self.pending_calls_threshold = 100_000
        inner: Any = self._client.on_publish

        def on_publish(client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            code = int(getattr(reason_code, "value", reason_code) or 0)
            fut = self._acks.pop(mid, None)
            if fut is None:
                self._early[mid] = code
            elif not fut.done():
                fut.set_result(code)
            if inner is not None:
                inner(client, userdata, mid, reason_code, properties)

        self._client.on_publish = on_publish

    async def publish_acked(self, topic: str, payload: bytes, timeout: float) -> int:
        info = self._client.publish(topic, payload, 1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttCodeError(info.rc, "could not publish")
        code = self._early.pop(info.mid, None)
        if code is not None:
            return code
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise MqttError("no PUBACK in time") from None
        finally:
            self._acks.pop(info.mid, None)

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """QoS 0: handed to the socket, nothing to wait for."""
        info = self._client.publish(topic, payload, 0)
        self._early.pop(info.mid, None)  # paho reports a QoS 0 publish at once
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttCodeError(info.rc, "could not publish")

    def fail_pending(self) -> None:
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(MqttError("connection lost"))
        self._acks.clear()


def tls_context(cfg: HubConfig) -> ssl.SSLContext | None:
    if not (cfg.cert or cfg.tls):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.ca) if cfg.ca else None)
    if cfg.cert and cfg.key:
        ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    return ctx


def client_id(cfg: HubConfig) -> str:
    if cfg.client_id:
        return cfg.client_id
    if cfg.access_token:
        return f"gatehub-agent-{cfg.access_token[:12]}"
    return f"gatehub-agent-{cfg.cert.stem if cfg.cert else 'gw'}"


class HubLink:
    """One live connection; ``messages()`` must be iterated for answers and downlink to arrive."""

    def __init__(self, cfg: HubConfig, extra_filters: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.filters = tuple(dict.fromkeys((*SUBSCRIPTIONS, *extra_filters)))
        self.client = AckingClient(
            cfg.host,
            cfg.port,
            username=cfg.access_token if not cfg.cert else None,
            password="" if cfg.access_token and not cfg.cert else None,
            identifier=client_id(cfg),
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=paho.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=cfg.keepalive,
            timeout=cfg.request_timeout,
            tls_context=tls_context(cfg),
            max_inflight_messages=1000,
        )
        self._ids = itertools.count(1)
        self._waiting: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self.limits: dict[str, Any] = {}

    async def __aenter__(self) -> HubLink:
        await self.client.__aenter__()
        # paho leaves Nagle's algorithm on: small messages (acks, device-link frames) would wait
        # for the peer's delayed ACK, ~40 ms a round trip
        sock = self.client._client.socket()
        if isinstance(sock, socket.socket):  # an ssl.SSLSocket too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for topic in self.filters:
            await self.client.subscribe(topic, qos=1)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.client.fail_pending()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(HubUnavailable("connection lost"))
        self._waiting.clear()
        try:
            await self.client.__aexit__(None, None, None)
        except MqttError:
            pass

    # requests of the extension ----------------------------------------------------------------
    async def request(self, topic: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send an extension request and wait for its answer (raises HubUnavailable)."""
        rid = next(self._ids)
        key = (ANSWERS[topic], rid)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            code = await self.publish(topic, orjson.dumps({"id": rid, "v": 1, **body}))
            if code >= 0x80:
                raise HubUnavailable(f"the hub refused {topic} (reason code 0x{code:02x})")
            answer = await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            raise HubUnavailable(f"no answer to {topic} within {self.cfg.request_timeout} s") from None
        finally:
            self._waiting.pop(key, None)
        if not isinstance(answer, dict):
            raise HubUnavailable(f"a malformed answer to {topic}")
        return answer

    async def session_limits(self) -> dict[str, Any]:
        """ThingsBoard's ``getSessionLimits`` (client-side RPC); {} if the hub does not answer."""
        rid = next(self._ids)
        key = (f"{ME_RPC_RESPONSE}{rid}", None)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            await self.publish(f"{ME_RPC_REQUEST}{rid}", b'{"method":"getSessionLimits","params":{}}')
            got = await asyncio.wait_for(fut, self.cfg.request_timeout)
        except (TimeoutError, HubUnavailable, MqttError):
            got = {}
        finally:
            self._waiting.pop(key, None)
        self.limits = got if isinstance(got, dict) else {}
        return self.limits

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code."""
        try:
            if qos:
                return await self.client.publish_acked(topic, payload, self.cfg.request_timeout * 3)
            self.client.publish_nowait(topic, payload)
            return 0
        except MqttError as exc:
            raise HubUnavailable(str(exc)) from None

    def answer(self, topic: str, payload: bytes) -> bool:
        """An answer to a request of ours? Then it is handed to its waiter."""
        if topic.startswith(ME_RPC_RESPONSE):
            key: tuple[str, Any] = (topic, None)
        elif topic in ANSWERS.values():
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return True
            key = (topic, body.get("id") if isinstance(body, dict) else None)
        else:
            return False
        fut = self._waiting.get(key)
        if fut is not None and not fut.done():
            try:
                fut.set_result(orjson.loads(payload) if payload else {})
            except orjson.JSONDecodeError:
                fut.set_result({})
        return True

    async def messages(self, handle: Callable[[str, bytes], None]) -> None:
        """Deliver every incoming message until the connection ends (then raise HubUnavailable)."""
        try:
            async for msg in self.client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
                topic = str(msg.topic)
                if not self.answer(topic, payload):
                    handle(topic, payload)
        except MqttError as exc:
            raise HubUnavailable(str(exc)) from None
        raise HubUnavailable("the connection ended")
