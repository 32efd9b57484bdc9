"""Thing models: what a product's devices report and offer, and checking values against them.

A product's ``thing_model`` is a JSON object in the Alibaba TSL shape (import/export it as it
is). Each section that is present and non-empty is enforced; a missing one lets anything through::

    {"properties": [
        {"identifier": "Height", "accessMode": "rw",
         "dataType": {"type": "int", "specs": {"min": "0", "max": "500", "unit": "cm"}}},
        {"identifier": "serviceId.Speed", "dataType": {"type": "double"}, "key": "speed"},
        {"identifier": "Mode", "service": "motor", "dataType": {"type": "enum", "specs": {"0": "off", "1": "on"}}}
     ],
     "events": [
        {"identifier": "Overheat", "type": "alert",
         "outputData": [{"identifier": "temp", "dataType": {"type": "float"}}]}
     ],
     "services": [
        {"identifier": "Reboot", "callType": "sync",
         "inputData": [{"identifier": "delay", "dataType": {"type": "int", "specs": {"min": "0"}}}],
         "outputData": [{"identifier": "ok", "dataType": {"type": "bool"}}]}
     ]}

- Properties: ``identifier`` names the property. Dialects with services (IoTDA) look a property up
  as ``"{service}.{name}"`` first, then as ``name`` (an entry with ``service`` set matches only
  that service). ``key`` (optional) is the telemetry key the value is stored under; without it
  the dialect picks one (IoTDA: ``{service}.{name}``, Alink: the identifier). ``accessMode`` is
  ``r`` (read only: the platform may not set it) or ``rw`` (the default). ``specs.unit`` and
  ``specs.unitName`` are kept for display.
- ``dataType.type`` is one of int (32-bit signed), float (32-bit), double, bool, text (or
  string), enum, date, struct, array. ``specs``: ``min``/``max`` (numbers or numeric strings) for
  int/float/double; ``length`` (or ``max_length``) for text; the allowed values as keys of an
  object (``{"0": "off"}``) or as a list for enum; ``item`` (a dataType) and ``size`` for array;
  a list of members for struct. ``step`` is kept but not enforced (as Alibaba does).
- Events: ``outputData`` are the event's parameters; ``type`` is info, alert or error. The TSL's
  ``post`` event and ``set``/``get`` services mirror the properties and are skipped.
- Services: ``callType`` sync or async; ``inputData`` are checked when the platform invokes the
  service, ``outputData`` when the device answers.

Nothing here does I/O; a compiled :class:`ThingModel` is immutable and cheap to share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatehub.errors import InvalidInput

TYPES = frozenset({"int", "float", "double", "bool", "text", "string", "enum", "date", "struct", "array"})
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
ACCESS_MODES = frozenset({"r", "rw"})
EVENT_TYPES = frozenset({"info", "alert", "error"})
CALL_TYPES = frozenset({"sync", "async"})
_MIRRORS = {"events": "post", "services": ("set", "get")}  # TSL entries that mirror the properties


class ThingModelError(InvalidInput):
    """A value does not fit the thing model; ``field`` is the path of the offending value."""

    code = "thing_model"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DataType:
    type: str
    minimum: float | None = None
    maximum: float | None = None
    length: int | None = None
    values: frozenset[str] | None = None  # enum: allowed values as strings
    item: DataType | None = None  # array element type
    size: int | None = None  # array: most elements
    fields: Mapping[str, DataType] | None = None  # struct members
    unit: str | None = None

    def check(self, value: Any, path: str) -> None:
        """Raise ThingModelError naming ``path`` when ``value`` does not fit."""
        t = self.type
        vt = type(value)
        if t == "int":
            if vt is not int:
                raise ThingModelError(path, f"expected an integer, got {_json_type(value)}")
            if not INT32_MIN <= value <= INT32_MAX:
                raise ThingModelError(path, "outside the 32-bit integer range of an int")
            self._range(value, path)
        elif t in ("float", "double"):
            if vt is not int and vt is not float:
                raise ThingModelError(path, f"expected a number, got {_json_type(value)}")
            if vt is float and not math.isfinite(value):
                raise ThingModelError(path, "expected a finite number")
            if t == "float" and abs(value) > FLOAT32_MAX:
                raise ThingModelError(path, "outside the 32-bit range of a float (use double)")
            self._range(value, path)
        elif t == "bool":
            if vt is not bool and not (vt is int and value in (0, 1)):
                raise ThingModelError(path, f"expected a boolean (true/false or 0/1), got {_json_type(value)}")
        elif t in ("text", "string"):
            if vt is not str:
                raise ThingModelError(path, f"expected a string, got {_json_type(value)}")
            if self.length is not None and len(value) > self.length:
                raise ThingModelError(path, f"longer than {self.length} characters")
        elif t == "enum":
            if vt not in (int, str) or (self.values is not None and str(value) not in self.values):
                allowed = ", ".join(sorted(self.values or ()))
                raise ThingModelError(path, f"expected one of [{allowed}], got {value!r}")
        elif t == "date":
            if not (vt is int and value >= 0) and not (vt is str and value.isdigit()):
                raise ThingModelError(path, "expected a date as UTC milliseconds")
        elif t == "array":
            self._array(value, path)
        elif t == "struct":
            self._struct(value, path)

    def _range(self, value: float, path: str) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ThingModelError(path, f"below the minimum {_num(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ThingModelError(path, f"above the maximum {_num(self.maximum)}")

    def _array(self, value: Any, path: str) -> None:
        if type(value) is not list:
            raise ThingModelError(path, f"expected an array, got {_json_type(value)}")
        if self.size is not None and len(value) > self.size:
            raise ThingModelError(path, f"more than {self.size} elements")
        if self.item is not None:
            for n, v in enumerate(value):
                self.item.check(v, f"{path}[{n}]")

    def _struct(self, value: Any, path: str) -> None:
        if type(value) is not dict:
            raise ThingModelError(path, f"expected an object, got {_json_type(value)}")
        if self.fields is None:
            return
        for k, v in value.items():
            sub = self.fields.get(k)
            if sub is None:
                raise ThingModelError(f"{path}.{k}", "not a member of this struct in the thing model")
            if v is None:
                raise ThingModelError(f"{path}.{k}", "null is not a value")
            sub.check(v, f"{path}.{k}")


@dataclass(frozen=True, slots=True)
class PropertySpec:
    identifier: str
    data_type: DataType
    key: str | None = None  # storage key, if the model sets one
    service: str | None = None  # only this service's reports match (dialects with services)
    access: str = "rw"  # "r": the device reports it, the platform may not set it
    name: str | None = None

    @property
    def writable(self) -> bool:
        return self.access == "rw"


@dataclass(frozen=True, slots=True)
class EventSpec:
    identifier: str
    type: str  # info, alert, error
    output: Mapping[str, DataType] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    identifier: str
    call_type: str  # sync, async
    input: Mapping[str, DataType] = field(default_factory=dict)
    output: Mapping[str, DataType] = field(default_factory=dict)
    name: str | None = None


def check_params(params: Any, spec: Mapping[str, DataType], where: str, what: str) -> None:
    """Validate an object of named parameters (service input/output, event output)."""
    if type(params) is not dict:
        raise ThingModelError(where, f"expected an object of {what}, got {_json_type(params)}")
    for k, v in params.items():
        dt = spec.get(k)
        if dt is None:
            raise ThingModelError(f"{where}.{k}", f"not one of the {what} in the thing model")
        if v is None:
            raise ThingModelError(f"{where}.{k}", "null is not a value")
        dt.check(v, f"{where}.{k}")


class ThingModel:
    """A compiled thing model. ``strict`` when it lists properties (unknown ones are refused);
    likewise events and services when it lists them."""

    __slots__ = ("_index", "events", "services", "strict")

    def __init__(
        self,
        properties: list[PropertySpec],
        events: list[EventSpec] | None = None,
        services: list[ServiceSpec] | None = None,
    ) -> None:
        self._index: dict[str, PropertySpec] = {p.identifier: p for p in properties}
        self.strict = bool(properties)
        self.events: dict[str, EventSpec] = {e.identifier: e for e in events or ()}
        self.services: dict[str, ServiceSpec] = {x.identifier: x for x in services or ()}

    def __len__(self) -> int:
        return len(self._index)

    def get(self, identifier: str) -> PropertySpec | None:
        return self._index.get(identifier)

    def lookup(self, service: str | None, name: str) -> PropertySpec | None:
        """The entry for property ``name`` of ``service``: ``service.name`` first, then ``name``."""
        idx = self._index
        if service is not None:
            spec = idx.get(f"{service}.{name}")
            if spec is not None:
                return spec
        spec = idx.get(name)
        if spec is not None and (spec.service is None or spec.service == service):
            return spec
        return None

    def check(self, identifier: str, value: Any, path: str | None = None, service: str | None = None) -> PropertySpec:
        """Validate one reported property; returns its entry (raises ThingModelError)."""
        where = path or identifier
        spec = self.lookup(service, identifier)
        if spec is None:
            raise ThingModelError(where, "not a property of this product's thing model")
        if value is None:
            raise ThingModelError(where, "null is not a value")
        spec.data_type.check(value, where)
        return spec

    def check_set(self, params: Any, where: str = "params") -> None:
        """Validate a property set from the platform: known, writable, fitting values."""
        if type(params) is not dict or not params:
            raise ThingModelError(where, "expected a non-empty object of property values")
        for k, v in params.items():
            if not self.strict:
                if v is None:
                    raise ThingModelError(f"{where}.{k}", "null is not a value")
                continue
            spec = self.check(k, v, f"{where}.{k}")
            if not spec.writable:
                raise ThingModelError(f"{where}.{k}", "read-only (accessMode r): it cannot be set")

    def check_event(self, identifier: str, value: Any, where: str = "params.value") -> EventSpec | None:
        """Validate an event's output parameters; its entry (None when events are not modelled)."""
        if not self.events:
            if value is not None and type(value) is not dict:
                raise ThingModelError(where, f"expected an object, got {_json_type(value)}")
            return None
        spec = self.events.get(identifier)
        if spec is None:
            raise ThingModelError(identifier, "not an event of this product's thing model")
        check_params({} if value is None else value, spec.output, where, "output parameters")
        return spec

    def check_service(self, identifier: str, params: Any, *, output: bool = False, where: str = "params") -> None:
        """Validate a service's input (an invocation) or its output (the device's answer)."""
        if not self.services:
            if params is not None and type(params) is not dict:
                raise ThingModelError(where, f"expected an object, got {_json_type(params)}")
            return
        spec = self.services.get(identifier)
        if spec is None:
            raise ThingModelError(identifier, "not a service of this product's thing model")
        if output:
            check_params({} if params is None else params, spec.output, where, "output parameters")
        else:
            check_params({} if params is None else params, spec.input, where, "input parameters")

    def service(self, identifier: str) -> ServiceSpec | None:
        return self.services.get(identifier)


EMPTY = ThingModel([])


def compile_thing_model(model: Mapping[str, Any] | None) -> ThingModel:
    """Compile a product's thing model; raises InvalidInput when the model itself is malformed."""
    if not model:
        return EMPTY
    if not isinstance(model, Mapping):
        raise InvalidInput("thingModel must be an object")
    props = _section(model, "properties")
    events = [e for e in _section(model, "events") if not _mirror(e, "events")]
    services = [x for x in _section(model, "services") if not _mirror(x, "services")]
    if not props and not events and not services:
        return EMPTY
    return ThingModel(
        [_property(entry, f"thingModel.properties[{n}]") for n, entry in enumerate(props)],
        [_event(entry, f"thingModel.events[{n}]") for n, entry in enumerate(events)],
        [_service(entry, f"thingModel.services[{n}]") for n, entry in enumerate(services)],
    )


def _section(model: Mapping[str, Any], name: str) -> list[Any]:
    raw = model.get(name)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"thingModel.{name} must be a list")
    for n, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"thingModel.{name}[{n}] must be an object")
    return raw


def _mirror(entry: Mapping[str, Any], section: str) -> bool:
    ident = entry.get("identifier")
    mirrors = _MIRRORS[section]
    return ident == mirrors if isinstance(mirrors, str) else ident in mirrors


def _ident(entry: Mapping[str, Any], where: str) -> str:
    ident = entry.get("identifier")
    if not isinstance(ident, str) or not ident:
        raise InvalidInput(f"{where}.identifier must be a non-empty string")
    return ident


def _opt_str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    v = entry.get(key)
    if v is not None and not isinstance(v, str):
        raise InvalidInput(f"{where}.{key} must be a string")
    return v


def _property(entry: Mapping[str, Any], where: str) -> PropertySpec:
    ident = _ident(entry, where)
    key = entry.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidInput(f"{where}.key must be a non-empty string")
    access = entry.get("accessMode", "rw")
    if access not in ACCESS_MODES:
        raise InvalidInput(f"{where}.accessMode must be 'r' or 'rw'")
    return PropertySpec(
        ident,
        _data_type(entry.get("dataType"), f"{where}.dataType"),
        key,
        _opt_str(entry, "service", where),
        access,
        _opt_str(entry, "name", where),
    )


def _params(raw: Any, where: str) -> dict[str, DataType]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InvalidInput(f"{where} must be a list")
    out: dict[str, DataType] = {}
    for n, p in enumerate(raw):
        if not isinstance(p, Mapping):
            raise InvalidInput(f"{where}[{n}] must be an object")
        ident = _ident(p, f"{where}[{n}]")
        if ident in out:
            raise InvalidInput(f"{where}[{n}].identifier {ident!r} appears twice")
        out[ident] = _data_type(p.get("dataType"), f"{where}[{n}].dataType")
    return out


def _event(entry: Mapping[str, Any], where: str) -> EventSpec:
    ident = _ident(entry, where)
    etype = entry.get("type", "info")
    if etype not in EVENT_TYPES:
        raise InvalidInput(f"{where}.type must be one of {', '.join(sorted(EVENT_TYPES))}")
    return EventSpec(
        ident, etype, _params(entry.get("outputData"), f"{where}.outputData"), _opt_str(entry, "name", where)
    )


def _service(entry: Mapping[str, Any], where: str) -> ServiceSpec:
    ident = _ident(entry, where)
    call = entry.get("callType", "async")
    if call not in CALL_TYPES:
        raise InvalidInput(f"{where}.callType must be 'sync' or 'async'")
    return ServiceSpec(
        ident,
        call,
        _params(entry.get("inputData"), f"{where}.inputData"),
        _params(entry.get("outputData"), f"{where}.outputData"),
        _opt_str(entry, "name", where),
    )


def _data_type(raw: Any, where: str) -> DataType:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be an object with a 'type'")
    t = raw.get("type")
    if t not in TYPES:
        raise InvalidInput(f"{where}.type must be one of {', '.join(sorted(TYPES))}")
    specs = raw.get("specs")
    if t == "struct":
        if specs is not None and not isinstance(specs, list):
            raise InvalidInput(f"{where}.specs of a struct must be a list of members")
        members: dict[str, DataType] = {}
        for n, f in enumerate(specs or []):
            if not isinstance(f, Mapping) or not isinstance(f.get("identifier"), str):
                raise InvalidInput(f"{where}.specs[{n}] must be an object with an identifier")
            members[f["identifier"]] = _data_type(f.get("dataType"), f"{where}.specs[{n}].dataType")
        return DataType(t, fields=members)
    if specs is not None and not isinstance(specs, Mapping | list):
        raise InvalidInput(f"{where}.specs must be an object")
    if t == "enum":
        values: frozenset[str] | None = None
        if isinstance(specs, list):
            values = frozenset(str(v) for v in specs)
        elif isinstance(specs, Mapping) and specs:
            raw_list = specs.get("enum_list")
            values = frozenset(str(v) for v in raw_list) if isinstance(raw_list, list) else frozenset(specs)
        return DataType(t, values=values)
    sp: Mapping[str, Any] = specs if isinstance(specs, Mapping) else {}
    if t == "array":
        item = _data_type(sp["item"], f"{where}.specs.item") if sp.get("item") is not None else None
        size = _int(sp.get("size"), f"{where}.specs.size")
        if size is not None and size < 0:
            raise InvalidInput(f"{where}.specs.size must not be negative")
        return DataType(t, item=item, size=size)
    length = _int(sp.get("length", sp.get("max_length")), f"{where}.specs.length")
    if length is not None and length < 0:
        raise InvalidInput(f"{where}.specs.length must not be negative")
    lo = _float(sp.get("min"), f"{where}.specs.min")
    hi = _float(sp.get("max"), f"{where}.specs.max")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput(f"{where}.specs: min {_num(lo)} is above max {_num(hi)}")
    unit = sp.get("unit")
    return DataType(t, minimum=lo, maximum=hi, length=length, unit=unit if isinstance(unit, str) else None)


def _float(v: Any, where: str) -> float | None:
    if v is None or v == "":
        return None
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where} must be a number") from None
    if not math.isfinite(out):
        raise InvalidInput(f"{where} must be finite")
    return out


def _int(v: Any, where: str) -> int | None:
    f = _float(v, where)
    return None if f is None else int(f)


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() else str(v)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(v), "an object"
    )
