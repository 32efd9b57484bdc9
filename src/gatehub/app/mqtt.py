"""Building the MQTT hub: listeners, the plain broker, and the ThingsBoard and Alink dialects."""

from __future__ import annotations

from gatehub.app.base import Component, Parts, Started
from gatehub.store.claims import Claims
from gatehub.store.rpc import RpcCalls


async def build_mqtt(parts: Parts) -> Component | None:
    svc = parts.services
    s = svc.settings
    if s.mqtt_port < 0 and s.mqtts_port < 0 and s.mqtt_ws_port < 0:
        return None
    from gatehub.transports.mqtt.alink import AlinkDialect
    from gatehub.transports.mqtt.broker import Broker
    from gatehub.transports.mqtt.hub import MqttHub
    from gatehub.transports.mqtt.thingsboard import ThingsBoardDialect
    from gatehub.transports.mqtt.thingsboard_ext import TbExtension

    broker = Broker(s.mqtt_retained_max)
    hub = MqttHub(s, svc.store, svc.writer, svc.bus, svc.pki, broker, svc.presence)
    broker.hub = hub
    # ThingsBoard gateway/device API (RPC, shared attributes, claiming)
    tb = ThingsBoardDialect(hub, RpcCalls(svc.store.db), Claims(svc.store.db))
    tb.ext = TbExtension(tb)
    hub.router.add(tb)
    svc.rpc = tb.rpc
    svc.claims = tb.claim_store
    # Alibaba Link SDK gateways (Alink): thing-model services and property set
    alink = AlinkDialect(hub, RpcCalls(svc.store.db))
    hub.router.add(alink)
    svc.things = alink.services
    parts.mqtt = hub
    svc.transports.add("mqtt")
    svc.metrics.add(
        gatehub_mqtt_connections=lambda: len(hub.connections),
        gatehub_mqtt_sessions=lambda: len(hub.live),
        gatehub_tb_rate_limited=lambda: tb.limits.refused,
        gatehub_alink_subdevices_logged_in=lambda: len(alink.via),
    )
    return Started(hub, parts, lambda: {f"mqtt_{name}": port for name, port in hub.ports.items()})
