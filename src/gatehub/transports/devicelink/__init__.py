"""The device-link relays: the listener of each link (TCP, UDP) and the port agents open stream
channels to. What the link service and the MQTT tunnel need of them is in
``services.links.contracts``."""

from __future__ import annotations

from collections.abc import Callable

from gatehub.services.links.model import Link, LinkRequest, Target

__all__ = ["make_link"]


def make_link(
    protocol: str,
    *,
    tenant_id: str,
    identifier: str,
    request: LinkRequest,
    target: Target,
    on_closed: Callable[[Link], None],
    connect_timeout: float,
) -> Link:
    """The relay of a new link (the ``LinkFactory`` of ``services.links``)."""
    from gatehub.transports.devicelink.tcp import TcpLink
    from gatehub.transports.devicelink.udp import UdpLink

    kind = TcpLink if protocol == "tcp" else UdpLink
    return kind(
        tenant_id=tenant_id,
        identifier=identifier,
        request=request,
        target=target,
        on_closed=on_closed,
        connect_timeout=connect_timeout,
    )
