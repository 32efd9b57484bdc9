"""The node component that runs the MQTT hub (listeners, broker, dialects)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatehub.transports.mqtt.broker import Broker
from gatehub.transports.mqtt.hub import MqttHub

if TYPE_CHECKING:
    from gatehub.node import Component, Node


async def build(node: Node) -> Component | None:
    s = node.settings
    if s.mqtt_port < 0 and s.mqtts_port < 0 and s.mqtt_ws_port < 0:
        return None
    assert node.store is not None and node.writer is not None and node.ctx is not None
    broker = Broker(s.mqtt_retained_max)
    hub = MqttHub(s, node.store, node.writer, node.bus, node.pki, broker)
    broker.hub = hub
    from gatehub.transports.mqtt.thingsboard import install as install_thingsboard

    install_thingsboard(node, hub)  # ThingsBoard gateway/device API + REST RPC and claiming
    from gatehub.transports.mqtt.alink import install as install_alink

    install_alink(node, hub)  # Alibaba Link SDK gateways (Alink) + REST services and property set
    node.mqtt = hub  # dialects and other components find the MQTT hub here
    node.ctx.extras["mqtt"] = hub
    node.ctx.extras.setdefault("metrics", {}).update(
        {
            "gatehub_mqtt_connections": lambda: len(hub.connections),
            "gatehub_mqtt_sessions": lambda: len(hub.live),
        }
    )
    return _Started(hub, node)


class _Started:
    name = "mqtt"

    def __init__(self, hub: MqttHub, node: Node) -> None:
        self.hub = hub
        self.node = node

    async def start(self) -> None:
        await self.hub.start()
        for name, port in self.hub.ports.items():
            self.node.endpoints.extra[f"mqtt_{name}"] = port

    async def stop(self) -> None:
        await self.hub.stop()
