"""The node component of device links: the service, the tunnel dialect on the MQTT hub (when
MQTT is on) and the REST routes. Off when ``devicelink_port_min`` is -1."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatehub.devicelink.service import DeviceLinks
from gatehub.devicelink.streams import StreamListener
from gatehub.devicelink.tunnel import TunnelDialect

if TYPE_CHECKING:
    from gatehub.node import Component, Node


async def build(node: Node) -> Component | None:
    s = node.settings
    if s.devicelink_port_min < 0:
        return None
    assert node.store is not None and node.writer is not None and node.ctx is not None
    hub = node.mqtt
    tunnels: TunnelDialect | None = None
    if hub is not None:
        streams = StreamListener(s.bind_host, s.devicelink_stream_port) if s.devicelink_stream_port >= 0 else None
        streams_tls = None
        if s.devicelink_stream_tls_port >= 0 and s.mqtts_port >= 0 and node.pki is not None:
            ctx = node.pki.server_context(require_client_cert=False)
            streams_tls = StreamListener(s.bind_host, s.devicelink_stream_tls_port, ctx)
        tunnels = TunnelDialect(s.devicelink_tunnel_window, streams, streams_tls)
        hub.router.add(tunnels, first=True)  # before the ThingsBoard dialect, which owns other v1/ topics
    svc = DeviceLinks(s, node.store, node.writer, node.bus, hub, tunnels)
    from gatehub.transports.http.api import devicelink as api

    node.ctx.extras["devicelink"] = svc
    node.ctx.extras.setdefault("routers", []).append(api.router)
    node.ctx.extras.setdefault("metrics", {}).update(
        {
            "gatehub_devicelinks_open": lambda: len(svc.links),
            "gatehub_devicelinks_closed": lambda: svc.closed_total,
            "gatehub_devicelink_streams_attached": lambda: (
                tunnels.streams.attached if tunnels is not None and tunnels.streams is not None else 0
            ),
        }
    )
    return svc
