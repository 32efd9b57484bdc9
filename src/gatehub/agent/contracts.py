"""What the agent's parts see of the agent, and the records they share.

``topology.Reconciler`` and ``extensions.ExtensionContext`` work on the agent through the
Protocols here; ``agent.Agent`` implements both and imports them, so neither imports the agent
back (no cycle, not even a type-only one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gatehub.agent.config import AgentConfig
    from gatehub.agent.drivers import Driver
    from gatehub.agent.link import HubLink
    from gatehub.agent.outbox import Outbox
    from gatehub.agent.state import Credentials, LocalState

__all__ = ["ExtensionHost", "LocalDev", "ReconcilerHost", "SubDeviceView"]


@dataclass(slots=True)
class LocalDev:
    """An entry of LocalDevList: a sub-device connected to the access network now."""

    uid: str
    name: str
    model: str
    driver: int  # index into Agent.drivers
    address: str | None = None
    online: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # why the hub would not proxy it (retried after a reconnect)

    def public(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "model": self.model,
            "address": self.address,
            "online": self.online,
            "refused": self.refused,
        }


@dataclass(slots=True, frozen=True)
class SubDeviceView:
    """What an extension may know of a sub-device."""

    name: str  # its device name on the hub
    uid: str  # its id on the access network
    model: str
    address: str | None  # its local network address from the driver's discovery ("host:port")
    online: bool
    proxied: bool  # in LocalTopoList: the hub knows it under this gateway
    credentials: Credentials | None


class ReconcilerHost(Protocol):
    """The agent as the topology reconciler uses it."""

    cfg: AgentConfig
    state: LocalState
    outbox: Outbox
    devs: dict[str, LocalDev]  # LocalDevList, by uid
    drivers: list[Driver]

    def dev_by_name(self, name: str) -> LocalDev | None: ...
    def rename_dev(self, old: str, new: str) -> None: ...
    def pop_dev(self, name: str) -> LocalDev | None: ...
    async def forget_readings(self, name: str) -> int: ...
    def topology_changed(self) -> None: ...


class ExtensionHost(Protocol):
    """The agent as an extension's context uses it."""

    cfg: AgentConfig
    link: HubLink | None
    by_name: dict[str, str]

    def view(self, name: str) -> SubDeviceView | None: ...
    def driver_of_name(self, name: str) -> Driver | None: ...
