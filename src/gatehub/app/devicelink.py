"""Building device links: the service, and its tunnel dialect on the MQTT hub when MQTT is on.
Off when ``devicelink_port_min`` is -1."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gatehub.app.base import Component, Parts

if TYPE_CHECKING:
    from gatehub.transports.mqtt.hub import MqttHub


async def build_devicelink(parts: Parts) -> Component | None:
    svc = parts.services
    s = svc.settings
    if s.devicelink_port_min < 0:
        return None
    from gatehub.services.links import DeviceLinks
    from gatehub.transports.devicelink import make_link
    from gatehub.transports.devicelink.streams import StreamListener
    from gatehub.transports.mqtt.devicelink_tunnel import TunnelDialect

    hub = parts.mqtt
    tunnels: TunnelDialect | None = None
    connected: Callable[[str], bool] | None = None
    if hub is not None:
        streams = (
            StreamListener(s.bind_host, s.devicelink_stream_port, guard=svc.guard)
            if s.devicelink_stream_port >= 0
            else None
        )
        streams_tls = None
        if s.devicelink_stream_tls_port >= 0 and s.mqtts_port >= 0:
            ctx = svc.pki.server_context(require_client_cert=False)
            streams_tls = StreamListener(s.bind_host, s.devicelink_stream_tls_port, ctx, svc.guard)
        tunnels = TunnelDialect(s.devicelink_tunnel_window, streams, streams_tls)
        hub.router.add(tunnels, first=True)  # before the ThingsBoard dialect, which owns other v1/ topics
        connected = _connected_on(hub)
    links = DeviceLinks(s, svc.store, svc.ingest, svc.bus, make_link, tunnels, connected)
    svc.links = links
    svc.transports.add("devicelink")
    svc.metrics.add(
        gatehub_devicelinks_open=lambda: len(links.links),
        gatehub_devicelinks_closed=lambda: links.closed_total,
        gatehub_devicelink_streams_attached=lambda: (
            tunnels.streams.attached if tunnels is not None and tunnels.streams is not None else 0
        ),
    )
    return links


def _connected_on(hub: MqttHub) -> Callable[[str], bool]:
    """Is a gateway connected (whatever it speaks)? For the error of a link it cannot carry."""

    def connected(gateway_id: str) -> bool:
        return hub.session_for_device(gateway_id) is not None

    return connected
