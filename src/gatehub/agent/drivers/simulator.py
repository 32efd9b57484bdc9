"""A simulated access network: sub-devices with realistic, changing values.

Each device has keys, each key a signal: ``walk`` (a bounded random walk, e.g. a temperature),
``sine`` (a daily-looking cycle plus noise), ``counter`` (an energy meter: always rising),
``bool`` (a contact that flips now and then), ``const``, or ``setpoint`` (stays where a command
put it). ``write(uid, "set", {key: value})`` (or a shared attribute update) sets keys;
``write(uid, "get", [keys])`` reads them back. Tests and ``gatehub demo`` drive it further with
``add``, ``delete`` (a user deletes the device on the gateway), ``set_online``.

Config (``[[drivers]] type = "simulator"``)::

    [[drivers.devices]]
    uid = "th-01"
    model = "thermo-v2"
    keys = { temperature = { kind = "walk", min = 18, max = 26 }, humidity = { kind = "sine", min = 30, max = 60 } }
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from gatehub.agent.drivers.base import (
    Driver,
    Joined,
    Left,
    Offline,
    Online,
    SubDeviceInfo,
    Unreachable,
    UnsupportedMethod,
)

KINDS = {"walk", "sine", "counter", "bool", "const", "setpoint"}


@dataclass(slots=True)
class Signal:
    kind: str
    lo: float = 0.0
    hi: float = 100.0
    step: float = 0.0
    period: float = 60.0
    value: Any = None
    decimals: int = 2

    def next(self, t: float, rng: random.Random) -> Any:
        span = self.hi - self.lo
        if self.kind == "walk":
            cur = self.value if isinstance(self.value, int | float) else (self.lo + self.hi) / 2
            cur += rng.gauss(0, self.step or span / 50)
            self.value = min(self.hi, max(self.lo, cur))
        elif self.kind == "sine":
            mid = (self.lo + self.hi) / 2
            noise = rng.gauss(0, span / 100)
            self.value = mid + span / 2 * math.sin(2 * math.pi * t / self.period) + noise
        elif self.kind == "counter":
            cur = self.value if isinstance(self.value, int | float) else self.lo
            self.value = cur + (self.step or 1) * rng.uniform(0.5, 1.5)
        elif self.kind == "bool":
            if self.value is None or rng.random() < 0.05:
                self.value = not bool(self.value)
            return self.value
        elif self.value is None:
            self.value = self.lo
        return round(self.value, self.decimals) if isinstance(self.value, float) else self.value


@dataclass(slots=True)
class SimDevice:
    info: SubDeviceInfo
    signals: dict[str, Signal] = field(default_factory=dict)
    online: bool = True


def _signal(spec: Any) -> Signal:
    if not isinstance(spec, dict):
        return Signal("const", value=spec)
    kind = str(spec.get("kind", "walk"))
    if kind not in KINDS:
        raise ValueError(f"unknown signal kind {kind!r}; one of {', '.join(sorted(KINDS))}")
    return Signal(
        kind,
        float(spec.get("min", 0)),
        float(spec.get("max", 100)),
        float(spec.get("step", 0)),
        float(spec.get("period", 60)),
        spec.get("value"),
        int(spec.get("decimals", 2)),
    )


class SimulatorDriver(Driver):
    name = "simulator"

    def __init__(self, devices: list[dict[str, Any]] | None = None, poll_interval: float = 1.0, seed: int = 0) -> None:
        self.poll_interval = poll_interval
        self.rng = random.Random(seed or None)
        self.devices: dict[str, SimDevice] = {}
        self.removed: list[str] = []  # uids the hub had removed (deleted from the access network)
        self.writes: list[tuple[str, str, Any]] = []
        self._t0 = time.monotonic()
        for spec in devices or []:
            self._make(spec)

    @classmethod
    def from_options(cls, options: dict[str, Any], poll_interval: float) -> SimulatorDriver:
        return cls(list(options.get("devices", [])), poll_interval, int(options.get("seed", 0)))

    def _make(self, spec: dict[str, Any]) -> SimDevice:
        info = SubDeviceInfo(
            uid=str(spec["uid"]),
            model=str(spec.get("model", "simulated")),
            name=spec.get("name"),
            address=spec.get("address"),
            online=bool(spec.get("online", True)),
            attributes=dict(spec.get("attributes", {})),
        )
        keys = spec.get("keys") or {"value": {"kind": "walk"}}
        dev = SimDevice(info, {k: _signal(v) for k, v in keys.items()}, info.online)
        self.devices[info.uid] = dev
        return dev

    # the driver interface ---------------------------------------------------------------------
    async def discover(self) -> list[SubDeviceInfo]:
        out = []
        for d in self.devices.values():
            d.info.online = d.online
            out.append(d.info)
        return out

    async def read(self, uid: str) -> dict[str, Any]:
        dev = self.devices.get(uid)
        if dev is None or not dev.online:
            raise Unreachable(f"{uid} does not answer")
        t = time.monotonic() - self._t0
        return {k: s.next(t, self.rng) for k, s in dev.signals.items()}

    async def write(self, uid: str, method: str, params: Any) -> Any:
        dev = self.devices.get(uid)
        if dev is None or not dev.online:
            raise Unreachable(f"{uid} does not answer")
        self.writes.append((uid, method, params))
        if method in ("set", "attributes") and isinstance(params, dict):
            for k, v in params.items():
                sig = dev.signals.setdefault(k, Signal("setpoint"))
                sig.value = v
                if sig.kind not in ("setpoint", "const"):
                    sig.kind = "setpoint"
            return {k: dev.signals[k].value for k in params}
        if method == "get":
            keys = params if isinstance(params, list) else list(dev.signals)
            return {k: dev.signals[k].value for k in keys if k in dev.signals}
        raise UnsupportedMethod(f"the simulator has no method {method!r} (set, get)")

    async def remove(self, uid: str) -> None:
        if self.devices.pop(uid, None) is not None:
            self.removed.append(uid)

    # driving the simulation (tests, demo) ------------------------------------------------------
    def add(self, spec: dict[str, Any]) -> None:
        """A new sub-device joins the access network."""
        dev = self._make(spec)
        self.events.on_event(Joined(dev.info))

    def delete(self, uid: str) -> None:
        """A user deletes the sub-device on the gateway."""
        if self.devices.pop(uid, None) is not None:
            self.events.on_event(Left(uid))

    def set_online(self, uid: str, online: bool) -> None:
        dev = self.devices[uid]
        dev.online = online
        self.events.on_event(Online(uid) if online else Offline(uid))
