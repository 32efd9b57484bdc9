"""What the HTTP layer needs from the node: the components it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.pki import TlsContextProvider
from gatehub.store import IngestWriter, Store


@dataclass(slots=True)
class HubContext:
    settings: Settings
    store: Store
    writer: IngestWriter
    bus: Bus
    started_at: float = 0.0
    pki: TlsContextProvider | None = None
    node: Any = None  # the gatehub.node.Node that owns this context
    extras: dict[str, Any] = field(default_factory=dict)  # components added by later modules
