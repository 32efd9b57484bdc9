"""The agent's extension hook: add behaviour (a device-link relay, a custom topic set) without
editing the agent.

An extension declares the MQTT topic filters it wants (the agent subscribes them on every
connection), receives ``on_message(topic, payload)`` for messages that match them, is told when
the connection to the hub comes up and goes down, and reaches the hub and the sub-devices
through its ``ExtensionContext``::

    class Echo(AgentExtension):
        name = "echo"
        topic_filters = ("v1/gateway/echo/request",)

        async def on_message(self, topic: str, payload: bytes) -> None:
            await self.ctx.publish("v1/gateway/echo/response", payload)

    agent.add_extension(Echo())

Extensions are added before ``Agent.start`` (the device-link relay, ``gatehub.agent.devicelink``,
is added by the agent itself unless ``[devicelink] enabled = false``). Each extension gets its
messages one at a time, in the order they arrived, from a task of its own: a slow one delays
nothing else, and its exceptions are logged, never fatal to the agent. Topics an extension
claims are not handled by the agent itself. Extension names must be unique.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehub.agent.contracts import ExtensionHost, SubDeviceView
    from gatehub.agent.drivers import Driver


class ExtensionContext:
    """The agent as an extension sees it."""

    def __init__(self, agent: ExtensionHost) -> None:
        self._agent = agent

    @property
    def connected(self) -> bool:
        return self._agent.link is not None

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish to the hub; QoS 1 waits for the PUBACK and returns its reason code.
        Raises ``gatehub.agent.link.HubUnavailable`` when not connected."""
        from gatehub.agent.link import HubUnavailable

        link = self._agent.link
        if link is None:
            raise HubUnavailable("not connected to the hub")
        return await link.publish(topic, payload, qos)

    @property
    def hub_host(self) -> str:
        """The host the agent reaches the hub at."""
        return self._agent.cfg.hub.host

    def hub_tls_context(self) -> ssl.SSLContext | None:
        """A TLS context like the one of the MQTT connection (None when that is plain)."""
        from gatehub.agent.link import tls_context

        return tls_context(self._agent.cfg.hub)

    def subdevice(self, name: str) -> SubDeviceView | None:
        return self._agent.view(name)

    def subdevices(self) -> list[SubDeviceView]:
        return [v for v in (self._agent.view(n) for n in list(self._agent.by_name)) if v is not None]

    def driver_for(self, name: str) -> Driver | None:
        """The driver of the access network the sub-device is on (to reach it directly)."""
        return self._agent.driver_of_name(name)


class AgentExtension:
    """Base class: override what you need."""

    name = "extension"
    topic_filters: tuple[str, ...] = ()

    async def start(self, ctx: ExtensionContext) -> None:
        self.ctx = ctx

    async def stop(self) -> None:
        """The agent stops."""

    async def on_connected(self) -> None:
        """A connection to the hub is up and the topology reconciled."""

    async def on_disconnected(self) -> None:
        """The connection to the hub is gone (the agent reconnects by itself)."""

    async def on_message(self, topic: str, payload: bytes) -> None:
        """A message on one of ``topic_filters``."""

    def wants(self, topic: str) -> bool:
        from gatehub.protocols.mqtt.topics import topic_matches

        return any(topic_matches(f, topic) for f in self.topic_filters)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "topicFilters": list(self.topic_filters)}
