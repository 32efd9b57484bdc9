"""What the component builders of :mod:`gatehub.app.components` receive and return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gatehub.services.context import Services
from gatehub.store import Database

if TYPE_CHECKING:
    from gatehub.transports.http.iotda import IotdaListener
    from gatehub.transports.mqtt.hub import MqttHub


class Component(Protocol):
    """Anything the node starts after the services and stops before them (listeners, workers)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Parts:
    """The node under construction: its services, its database, the ports its listeners got,
    and the transports that later builders use (the device-link tunnels ride on the MQTT hub)."""

    services: Services
    db: Database
    endpoints: dict[str, int] = field(default_factory=dict)
    mqtt: MqttHub | None = None
    iotda: IotdaListener | None = None


ComponentFactory = Callable[[Parts], Awaitable[Component | None]]


class Started:
    """A component that reports its ports once started."""

    def __init__(self, inner: Component, parts: Parts, ports: Callable[[], dict[str, int]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.parts = parts
        self.ports = ports

    async def start(self) -> None:
        await self.inner.start()
        self.parts.endpoints.update(self.ports())

    async def stop(self) -> None:
        await self.inner.stop()
