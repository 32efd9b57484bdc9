"""The shapes the device-link service and its two transports share.

Links are relayed by ``transports.devicelink`` (the TCP/UDP listeners of the links, the agents'
stream port); a link to a sub-device goes through its gateway's tunnel, which rides on the
gateway's MQTT session (``transports.mqtt.devicelink_tunnel``). Transports never import each
other, so what one side calls on the other is a Protocol here, below both; the service sees only
these shapes too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import ssl

__all__ = [
    "DeviceEnd",
    "Mode",
    "StreamChannel",
    "StreamConnection",
    "StreamPort",
    "Target",
    "Tunnel",
    "Tunnels",
    "UdpDeviceEnd",
]


class Mode(StrEnum):
    DIRECT = "direct"  # the hub connects to the device's address itself
    GATEWAY = "gateway"  # through the device's gateway (tunnel over its MQTT session)


@dataclass(slots=True)
class Target:
    """Where a link leads: a direct address, or a sub-device behind a gateway's tunnel."""

    mode: Mode
    device_id: str
    device_name: str
    port: int
    host: str | None  # direct: the address; gateway: the operator-set address (a hint), or None
    address_source: str  # "attribute", "connection" or "gateway"
    gateway_id: str | None = None
    tunnels: Tunnels | None = None

    def tunnel(self) -> Tunnel | None:
        """The gateway's current tunnel (a reconnected gateway has a new one)."""
        if self.tunnels is None or self.gateway_id is None:
            return None
        return self.tunnels.tunnel_for(self.gateway_id)


class DeviceEnd(Protocol):
    """The device side of a TCP client connection: a socket of ours or a tunnel channel."""

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class UdpDeviceEnd(Protocol):
    """The device side of a UDP link: a connected socket of ours or a tunnel channel."""

    def send(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Tunnel(Protocol):
    """One gateway session's tunnel: opens channels to the devices behind the gateway. ``user``
    is the link side (a TCP client connection, a UDP link) the channel reports to."""

    def open_tcp(self, user: Any, target: Target, timeout: float) -> None: ...
    def open_udp(self, user: Any, target: Target, timeout: float = 10.0) -> UdpDeviceEnd: ...


class StreamConnection(Protocol):
    """An agent's stream connection carrying one channel's bytes (``transports.devicelink``)."""

    def close(self) -> None: ...
    def device_eof(self, offset: int) -> None: ...


class StreamPort(Protocol):
    """The port agents open stream channels to (``transports.devicelink.streams``)."""

    port: int
    attached: int
    ssl: ssl.SSLContext | None

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def expect(self, channel: StreamChannel) -> str: ...
    def forget(self, token: str) -> None: ...


class _TunnelSend(Protocol):
    def send(self, frame: bytes) -> None: ...


class StreamChannel(Protocol):
    """A tunnel channel whose bytes the agent moves over a stream connection."""

    @property
    def id(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def tunnel(self) -> _TunnelSend: ...

    def stream_attached(self, conn: Any) -> Any: ...
    def stream_closed(self) -> None: ...


class Tunnels(Protocol):
    """Where the tunnels of connected gateways are found (the MQTT tunnel dialect)."""

    on_gateway_gone: Callable[[str, str], None] | None

    def tunnel_for(self, gateway_id: str) -> Tunnel | None: ...
    def listeners(self) -> list[StreamPort]: ...
