"""The application services of one node, as every transport receives them.

Built by the composition root (:mod:`gatehub.app`) from Settings before any listener starts;
transports take what they need from here and never build services themselves, so a service
exists whether or not the transport that usually drives it is on (a REST route then answers a
clear error rather than being absent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.pki import TlsContextProvider
from gatehub.services.attributes import AttributeService
from gatehub.services.claims import ClaimService
from gatehub.services.guard import CredentialGuard
from gatehub.services.ingest import Ingest
from gatehub.services.pki import Blacklist
from gatehub.services.presence import SessionDirectory
from gatehub.services.registry import GatewayRegistry
from gatehub.services.rpc import RpcService
from gatehub.services.takeover import SubdeviceTakeover
from gatehub.services.things import ThingModels, ThingService
from gatehub.store import Store

if TYPE_CHECKING:
    from gatehub.services.links import DeviceLinks

__all__ = ["Metrics", "Services"]


class Metrics:
    """Gauges that components add (name -> a function reading the value now), served at /metrics."""

    def __init__(self) -> None:
        self.gauges: dict[str, Callable[[], float]] = {}
        # counters with labels: name -> (help, label names, a function reading (labels, value) pairs)
        self.counters: dict[
            str, tuple[str, tuple[str, ...], Callable[[], Iterable[tuple[tuple[str, ...], float]]]]
        ] = {}

    def add(self, **gauges: Callable[[], float]) -> None:
        self.gauges.update(gauges)

    def add_counter(
        self, name: str, help: str, labels: tuple[str, ...], read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]
    ) -> None:
        self.counters[name] = (help, labels, read)


@dataclass(slots=True)
class Services:
    """Every service is here whether or not a transport that drives it is on: the RPC service
    without an MQTT listener answers Unavailable (REST: 503), it does not disappear."""

    settings: Settings
    store: Store
    ingest: Ingest  # the one commit path of device data
    bus: Bus
    pki: TlsContextProvider  # the hub CA and the TLS contexts of every TLS listener
    registry: GatewayRegistry  # tenants' gateways, certificates, the blacklist (G-SDK rules)
    blacklist: Blacklist  # keeps the listeners' blacklist equal to the store's
    rpc: RpcService  # server-side RPC to devices, through whichever dialect reaches them
    models: ThingModels  # compiled thing models per product
    things: ThingService  # thing-model service calls and property sets
    attributes: AttributeService  # attribute reads, shared-attribute pushes
    claims: ClaimService  # device claiming
    presence: SessionDirectory  # which session serves a client or a device (the MQTT hub binds them)
    takeover: SubdeviceTakeover  # may a gateway take another gateway's sub-device (subdevice_takeover)
    guard: CredentialGuard  # back-off, lock-out and rate-limited logging of every credential failure
    started_at: float = 0.0
    metrics: Metrics = field(default_factory=Metrics)
    links: DeviceLinks | None = None  # device links (when devicelink_port_min is not -1)
    transports: set[str] = field(default_factory=set)  # the transports that are on: mqtt, grpc, iotda, ...

    async def start(self) -> None:
        """Start the services' own work (RPC expiry, shared-attribute pushes, the model cache
        following the catalog); the blacklist poll starts separately, after the control socket."""
        await self.guard.start()
        await self.models.start()
        await self.rpc.start()
        await self.attributes.start()

    async def stop(self) -> None:
        await self.things.stop()
        await self.attributes.stop()
        await self.rpc.stop()
        await self.models.stop()
        await self.blacklist.stop()
        await self.guard.stop()
