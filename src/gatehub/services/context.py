"""The application services of one node, as every transport receives them.

Built by the composition root (:mod:`gatehub.app`) from Settings before any listener starts;
transports take what they need from here and never build services themselves, so a service
exists whether or not the transport that usually drives it is on (a REST route then answers a
clear error rather than being absent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.pki import TlsContextProvider
from gatehub.services.pki import Blacklist
from gatehub.services.presence import SessionDirectory
from gatehub.services.registry import GatewayRegistry
from gatehub.store import IngestWriter, Store

__all__ = ["Metrics", "Services"]


class Metrics:
    """Gauges that components add (name -> a function reading the value now), served at /metrics."""

    def __init__(self) -> None:
        self.gauges: dict[str, Callable[[], float]] = {}

    def add(self, **gauges: Callable[[], float]) -> None:
        self.gauges.update(gauges)


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    writer: IngestWriter
    bus: Bus
    pki: TlsContextProvider  # the hub CA and the TLS contexts of every TLS listener
    registry: GatewayRegistry  # tenants' gateways, certificates, the blacklist (G-SDK rules)
    blacklist: Blacklist  # keeps the listeners' blacklist equal to the store's
    presence: SessionDirectory  # which session serves a client or a device (the MQTT hub binds them)
    started_at: float = 0.0
    metrics: Metrics = field(default_factory=Metrics)
    # filled while the node is built (their modules move under services/):
    rpc: Any = None  # RPC to devices
    things: Any = None  # thing-model service calls (Alink)
    claims: Any = None  # device claiming
    links: Any = None  # device links
    transports: set[str] = field(default_factory=set)  # the transports that are on: mqtt, grpc, iotda, ...
