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
        # towards clients: dropped by QoS (QoS 0 to a slow reader, QoS 1/2 at a session queue's
        # bound), what waits in session queues, and the unauthenticated connections' budget
        gatehub_mqtt_dropped_qos0=lambda: hub.queue_stats.dropped[0],
        gatehub_mqtt_dropped_qos1=lambda: hub.queue_stats.dropped[1],
        gatehub_mqtt_dropped_qos2=lambda: hub.queue_stats.dropped[2],
        gatehub_mqtt_queued_messages=lambda: hub.queue_totals()[0],
        gatehub_mqtt_queued_bytes=lambda: hub.queue_totals()[1],
        gatehub_mqtt_inflight_messages=lambda: hub.queue_totals()[2],
        gatehub_mqtt_preauth_bytes=lambda: sum(b.total for b in hub.preauth.values()),
        gatehub_mqtt_preauth_closed=lambda: sum(b.evicted for b in hub.preauth.values()),
    )
    return Started(hub, parts, lambda: {f"mqtt_{name}": port for name, port in hub.ports.items()})
