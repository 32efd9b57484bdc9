"""A small stand-in for the gateway agent: a real aiomqtt connection to the hub (as the gateway,
with its access token) that subscribes the relay's topics and routes their messages to
``gatehub.agent.devicelink.DeviceLinkRelay``, exactly as the agent's extension hook will."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from gatehub.agent.devicelink import DeviceLinkRelay, Resolve


@asynccontextmanager
async def agent_relay(
    mqtt_port: int,
    token: str | None,
    resolve: Resolve,
    *,
    client_id: str = "gw-agent",
    tls: ssl.SSLContext | None = None,
    **kw: Any,
) -> AsyncIterator[DeviceLinkRelay]:
    async with aiomqtt.Client("127.0.0.1", mqtt_port, username=token, identifier=client_id, tls_context=tls) as client:
        _nodelay(client)

        async def publish(topic: str, payload: bytes, qos: int) -> None:
            await client.publish(topic, payload, qos=qos)

        relay = DeviceLinkRelay(publish, resolve, **kw)
        for topic in relay.topics:
            await client.subscribe(topic, qos=relay.subscribe_qos)

        async def pump() -> None:
            async for msg in client.messages:
                await relay.on_message(str(msg.topic), bytes(msg.payload))  # type: ignore[arg-type]

        task = asyncio.get_running_loop().create_task(pump())
        await relay.on_connected()
        try:
            await asyncio.wait_for(relay.ready.wait(), 10)
            yield relay
        finally:
            await relay.on_disconnected()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def _nodelay(client: Any) -> None:
    """paho (under aiomqtt) leaves Nagle on: small tunnel frames would wait for delayed ACKs (~40 ms)."""
    sock = client._client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
