"""Modbus TCP sub-devices with pymodbus: registers polled into readings, RPC writes to registers.

Config (``[[drivers]] type = "modbus"``)::

    [[drivers.devices]]
    uid = "meter-7"            # default: "{host}:{port}/{unit}"
    model = "pm5560"
    host = "192.0.2.10"
    port = 502
    unit = 1
    registers = [
      { key = "voltage", table = "holding", address = 0, type = "uint16", scale = 0.1 },
      { key = "setpoint", table = "holding", address = 4, type = "int16", writable = true },
      { key = "power", table = "input", address = 10, type = "float32" },
      { key = "relay", table = "coil", address = 0, writable = true },
    ]

Tables: ``holding``, ``input``, ``coil``, ``discrete``; types: ``uint16``, ``int16``, ``uint32``,
``int32``, ``float32``, ``uint64``, ``int64``, ``float64`` (big-endian words), ``bool`` for bits. A
reading is the register value times ``scale``. RPC ``set`` (or a shared attribute update) with
``{key: value}`` writes writable registers (value divided by ``scale``); ``get`` reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gatehub.agent.drivers.base import Driver, DriverError, SubDeviceInfo, Unreachable, UnsupportedMethod

log = logging.getLogger(__name__)

TABLES = ("holding", "input", "coil", "discrete")
WORDS = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2, "uint64": 4, "int64": 4, "float64": 4}


@dataclass(slots=True, frozen=True)
class Register:
    key: str
    table: str
    address: int
    type: str = "uint16"
    scale: float = 1.0
    writable: bool = False

    @property
    def words(self) -> int:
        return 1 if self.table in ("coil", "discrete") else WORDS[self.type]


@dataclass(slots=True)
class ModbusDevice:
    info: SubDeviceInfo
    host: str
    port: int
    unit: int
    registers: dict[str, Register]


def _register(spec: dict[str, Any]) -> Register:
    table = str(spec.get("table", "holding"))
    if table not in TABLES:
        raise ValueError(f"register {spec.get('key')!r}: table must be one of {', '.join(TABLES)}")
    kind = str(spec.get("type", "bool" if table in ("coil", "discrete") else "uint16"))
    if table in ("holding", "input") and kind not in WORDS:
        raise ValueError(f"register {spec.get('key')!r}: type must be one of {', '.join(WORDS)}")
    return Register(
        str(spec["key"]),
        table,
        int(spec["address"]),
        kind,
        float(spec.get("scale", 1.0)),
        bool(spec.get("writable", False)) and table in ("holding", "coil"),
    )


class ModbusDriver(Driver):
    name = "modbus"

    def __init__(self, devices: list[dict[str, Any]], poll_interval: float = 1.0, timeout: float = 2.0) -> None:
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.devices: dict[str, ModbusDevice] = {}
        self.clients: dict[tuple[str, int], AsyncModbusTcpClient] = {}
        self.locks: dict[tuple[str, int], asyncio.Lock] = {}
        for spec in devices:
            host, port, unit = str(spec["host"]), int(spec.get("port", 502)), int(spec.get("unit", 1))
            uid = str(spec.get("uid") or f"{host}:{port}/{unit}")
            info = SubDeviceInfo(uid, str(spec.get("model", "modbus")), spec.get("name"), f"{host}:{port}")
            regs = {r.key: r for r in (_register(x) for x in spec.get("registers", []))}
            self.devices[uid] = ModbusDevice(info, host, port, unit, regs)

    @classmethod
    def from_options(cls, options: dict[str, Any], poll_interval: float) -> ModbusDriver:
        return cls(list(options.get("devices", [])), poll_interval, float(options.get("timeout", 2.0)))

    async def stop(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    async def _client(self, dev: ModbusDevice) -> AsyncModbusTcpClient:
        key = (dev.host, dev.port)
        c = self.clients.get(key)
        if c is None:
            c = self.clients[key] = AsyncModbusTcpClient(dev.host, port=dev.port, timeout=self.timeout, retries=0)
        if not c.connected:
            with contextlib.suppress(Exception):
                await c.connect()
            if not c.connected:
                raise Unreachable(f"no Modbus connection to {dev.host}:{dev.port}")
        return c

    async def discover(self) -> list[SubDeviceInfo]:
        """Every configured device; those that answer now are online."""
        for uid, dev in self.devices.items():
            try:
                await self.read(uid)
                dev.info.online = True
            except DriverError:
                dev.info.online = False
        return [d.info for d in self.devices.values()]

    def _device(self, uid: str) -> ModbusDevice:
        dev = self.devices.get(uid)
        if dev is None:
            raise DriverError(f"no Modbus device {uid}")
        return dev

    async def read(self, uid: str) -> dict[str, Any]:
        dev = self._device(uid)
        return await self._read(dev, list(dev.registers.values()))

    async def _read(self, dev: ModbusDevice, regs: list[Register]) -> dict[str, Any]:
        key = (dev.host, dev.port)
        async with self.locks.setdefault(key, asyncio.Lock()):
            c = await self._client(dev)
            out: dict[str, Any] = {}
            try:
                for table in TABLES:
                    group = [r for r in regs if r.table == table]
                    if not group:
                        continue
                    lo = min(r.address for r in group)
                    hi = max(r.address + r.words for r in group)
                    if hi - lo <= (2000 if table in ("coil", "discrete") else 125):
                        words = await self._fetch(c, table, lo, hi - lo, dev.unit)
                        for r in group:
                            out[r.key] = self._value(c, r, words[r.address - lo : r.address - lo + r.words])
                    else:
                        for r in group:
                            out[r.key] = self._value(c, r, await self._fetch(c, table, r.address, r.words, dev.unit))
            except (TimeoutError, ModbusException, OSError) as exc:
                c.close()
                raise Unreachable(f"{dev.info.uid}: {exc}") from None
            return out

    @staticmethod
    async def _fetch(c: AsyncModbusTcpClient, table: str, address: int, count: int, unit: int) -> list[Any]:
        if table == "holding":
            res = await c.read_holding_registers(address, count=count, device_id=unit)
        elif table == "input":
            res = await c.read_input_registers(address, count=count, device_id=unit)
        elif table == "coil":
            res = await c.read_coils(address, count=count, device_id=unit)
        else:
            res = await c.read_discrete_inputs(address, count=count, device_id=unit)
        if res.isError():
            raise ModbusException(f"{table} {address}+{count}: {res}")
        return list(res.bits[:count]) if table in ("coil", "discrete") else list(res.registers)

    @staticmethod
    def _value(c: AsyncModbusTcpClient, r: Register, words: list[Any]) -> Any:
        if r.table in ("coil", "discrete"):
            return bool(words[0])
        raw = c.convert_from_registers(words, getattr(c.DATATYPE, r.type.upper()))
        if r.scale == 1.0:
            return raw
        return round(float(raw) * r.scale, 6)  # type: ignore[arg-type]

    async def write(self, uid: str, method: str, params: Any) -> Any:
        dev = self._device(uid)
        if method == "get":
            keys = params if isinstance(params, list) else list(dev.registers)
            return await self._read(dev, [dev.registers[k] for k in keys if k in dev.registers])
        if method not in ("set", "attributes") or not isinstance(params, dict):
            raise UnsupportedMethod(f"Modbus devices take 'set' {{key: value}} or 'get' [keys], not {method!r}")
        regs = []
        for k in params:
            r = dev.registers.get(k)
            if r is None or not r.writable:
                raise DriverError(f"{k!r} is not a writable register of {uid}")
            regs.append(r)
        key = (dev.host, dev.port)
        async with self.locks.setdefault(key, asyncio.Lock()):
            c = await self._client(dev)
            try:
                for r in regs:
                    await self._store(c, dev.unit, r, params[r.key])
            except (TimeoutError, ModbusException, OSError) as exc:
                c.close()
                raise Unreachable(f"{uid}: {exc}") from None
        return await self._read(dev, regs)

    @staticmethod
    async def _store(c: AsyncModbusTcpClient, unit: int, r: Register, value: Any) -> None:
        if r.table == "coil":
            res = await c.write_coil(r.address, bool(value), device_id=unit)
        else:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise DriverError(f"{r.key!r} takes a number, not {value!r}")
            scaled = value / r.scale
            raw: int | float = scaled if r.type.startswith("float") else round(scaled)
            words = c.convert_to_registers(raw, getattr(c.DATATYPE, r.type.upper()))
            if len(words) == 1:
                res = await c.write_register(r.address, words[0], device_id=unit)
            else:
                res = await c.write_registers(r.address, words, device_id=unit)
        if res.isError():
            raise DriverError(f"writing {r.key!r} failed: {res}")
