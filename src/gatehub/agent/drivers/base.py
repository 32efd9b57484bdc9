"""The driver interface: what the agent needs from an access network (Modbus, Zigbee, ...).

A gateway maker writes one ``Driver``: ``discover`` lists the sub-devices connected now, ``read``
returns a sub-device's current values, ``write`` carries a command (an RPC or a shared attribute
update) to it, ``remove`` takes it off the access network, and the driver reports what happens
by itself through ``events.on_event(...)``: a sub-device joined, left (deleted locally by a
user), came online, went offline, or produced readings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class SubDeviceInfo:
    """A sub-device as its access network knows it."""

    uid: str  # unique id on the access network (MAC, serial number, Modbus host/unit ...)
    model: str  # the sub-device's own model: mapped to a hub product by the credentials config
    name: str | None = None  # its device name on the hub (default: the uid)
    address: str | None = None  # local network address ("host:port"), e.g. for device links
    online: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)  # client attributes reported on add


@dataclass(slots=True, frozen=True)
class Joined:
    info: SubDeviceInfo


@dataclass(slots=True, frozen=True)
class Left:
    """A user deleted the sub-device on the gateway (local web page, button, CLI)."""

    uid: str


@dataclass(slots=True, frozen=True)
class Online:
    uid: str


@dataclass(slots=True, frozen=True)
class Offline:
    uid: str


@dataclass(slots=True, frozen=True)
class Readings:
    uid: str
    values: dict[str, Any]
    ts: int | None = None  # ms since the epoch; None = now


DriverEvent = Joined | Left | Online | Offline | Readings


class DriverEvents(Protocol):
    """What the agent gives a driver to report events with (safe to call from the loop only)."""

    def on_event(self, event: DriverEvent) -> None: ...


class DriverError(Exception):
    """A driver could not do what was asked; the message goes back to the caller (RPC error)."""


class Unreachable(DriverError):
    """The sub-device does not answer: the agent marks it offline until a read succeeds."""


class UnsupportedMethod(DriverError):
    pass


class Driver(ABC):
    """Base class of drivers. ``poll_interval`` (s): how often the agent calls ``read`` for each
    online sub-device; None for drivers that push their readings as events."""

    name = "driver"
    poll_interval: float | None = 1.0

    async def start(self, events: DriverEvents) -> None:
        self.events = events

    async def stop(self) -> None:  # noqa: B027 - optional
        """Release the access network."""

    @abstractmethod
    async def discover(self) -> list[SubDeviceInfo]:
        """The sub-devices connected to the access network now."""

    @abstractmethod
    async def read(self, uid: str) -> dict[str, Any]:
        """Current values of a sub-device; raise Unreachable when it does not answer."""

    @abstractmethod
    async def write(self, uid: str, method: str, params: Any) -> Any:
        """Carry out a command (RPC ``method`` with ``params``; shared attribute updates come as
        method ``"attributes"`` with ``{key: value}``); the result goes back to the caller."""

    async def remove(self, uid: str) -> None:  # noqa: B027 - optional
        """Take the sub-device off the access network (it was deleted on the hub)."""
