"""Building the MQTT hub: listeners, the plain broker, and the ThingsBoard and Alink dialects,
whose downlinks are registered with the RPC, attribute and thing services."""

from __future__ import annotations

from gatehub.app.base import Component, Parts, Started


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
    hub = MqttHub(s, svc.store, svc.ingest, svc.bus, svc.pki, broker, svc.presence, svc.guard)
    broker.hub = hub
    # ThingsBoard gateway/device API (RPC, shared attributes, claiming)
    tb = ThingsBoardDialect(hub, svc)
    tb.ext = TbExtension(tb)
    hub.router.add(tb)
    svc.rpc.add_downlink(tb.downlink)
    svc.attributes.add_downlink(tb.downlink)
    # Alibaba Link SDK gateways (Alink): thing-model services and property set
    alink = AlinkDialect(hub, svc)
    hub.router.add(alink)
    svc.things.add_downlink(alink)
    parts.mqtt = hub
    svc.transports.add("mqtt")
    svc.metrics.add(
        gatehub_mqtt_connections=lambda: len(hub.connections),
        gatehub_mqtt_sessions=lambda: len(hub.live),
        gatehub_tb_rate_limited=lambda: tb.limits.refused,
        gatehub_alink_subdevices_logged_in=lambda: len(alink.via),
    )
    return Started(hub, parts, lambda: {f"mqtt_{name}": port for name, port in hub.ports.items()})
