"""Access-network drivers of the agent: the interface (``base``), a simulator and Modbus TCP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatehub.agent.drivers.base import (
    Driver,
    DriverError,
    DriverEvent,
    DriverEvents,
    Joined,
    Left,
    Offline,
    Online,
    Readings,
    SubDeviceInfo,
    Unreachable,
    UnsupportedMethod,
)
from gatehub.errors import ConfigError

if TYPE_CHECKING:
    from gatehub.agent.config import DriverConfig

__all__ = [
    "Driver",
    "DriverError",
    "DriverEvent",
    "DriverEvents",
    "Joined",
    "Left",
    "Offline",
    "Online",
    "Readings",
    "SubDeviceInfo",
    "Unreachable",
    "UnsupportedMethod",
    "build_driver",
]


def build_driver(cfg: DriverConfig) -> Driver:
    """The driver a ``[[drivers]]`` table names (``type = "simulator"`` or ``"modbus"``)."""
    try:
        if cfg.type == "simulator":
            from gatehub.agent.drivers.simulator import SimulatorDriver

            return SimulatorDriver.from_options(cfg.options(), cfg.poll_interval)
        if cfg.type == "modbus":
            try:
                from gatehub.agent.drivers.modbus import ModbusDriver
            except ImportError as exc:
                raise ConfigError(f"the Modbus driver needs pymodbus (pip install 'gatehub[agent]'): {exc}") from None
            return ModbusDriver.from_options(cfg.options(), cfg.poll_interval)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"driver {cfg.type}: {exc}") from None
    raise ConfigError(f"unknown driver type {cfg.type!r} (simulator, modbus)")
