"""Thing models: what properties a product's devices report, and checking values against them.

A product's ``thing_model`` is a JSON object. When it has a ``properties`` list, reports are
validated against it; without one, anything goes. Entries follow the Alibaba TSL shape::

    {"properties": [
        {"identifier": "Height", "dataType": {"type": "int", "specs": {"min": "0", "max": "500"}}},
        {"identifier": "serviceId.Speed", "dataType": {"type": "double"}, "key": "speed"},
        {"identifier": "Mode", "service": "motor", "dataType": {"type": "enum", "specs": {"0": "off", "1": "on"}}}
    ]}

- ``identifier`` names the property. Dialects with services (IoTDA) look a property up as
  ``"{service}.{name}"`` first, then as ``name`` (an entry with ``service`` set matches only that
  service).
- ``key`` (optional) is the telemetry key the value is stored under; without it the dialect
  picks one (IoTDA: ``{service}.{name}``, Alink: the identifier).
- ``dataType.type`` is one of int, float, double, bool, text (or string), enum, date, struct,
  array. ``specs``: ``min``/``max`` (numbers or numeric strings) for int/float/double;
  ``length`` (or ``max_length``) for text; the allowed values as keys of an object
  (``{"0": "off"}``) or as a list for enum; ``item`` (a dataType) and ``size`` for array;
  a list of entries for struct.

Nothing here does I/O; a compiled :class:`ThingModel` is immutable and cheap to share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatehub.errors import InvalidInput

TYPES = frozenset({"int", "float", "double", "bool", "text", "string", "enum", "date", "struct", "array"})


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

    def check(self, value: Any, path: str) -> None:
        """Raise ThingModelError naming ``path`` when ``value`` does not fit."""
        t = self.type
        vt = type(value)
        if t == "int":
            if vt is not int:
                raise ThingModelError(path, f"expected an integer, got {_json_type(value)}")
            self._range(value, path)
        elif t in ("float", "double"):
            if vt is not int and vt is not float:
                raise ThingModelError(path, f"expected a number, got {_json_type(value)}")
            if vt is float and not math.isfinite(value):
                raise ThingModelError(path, "expected a finite number")
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
            sub.check(v, f"{path}.{k}")


@dataclass(frozen=True, slots=True)
class PropertySpec:
    identifier: str
    data_type: DataType
    key: str | None = None  # storage key, if the model sets one
    service: str | None = None  # only this service's reports match (dialects with services)


class ThingModel:
    """A compiled thing model; ``strict`` when it lists properties (unknown ones are refused)."""

    __slots__ = ("_index", "strict")

    def __init__(self, properties: list[PropertySpec]) -> None:
        self._index: dict[str, PropertySpec] = {p.identifier: p for p in properties}
        self.strict = bool(properties)

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


EMPTY = ThingModel([])


def compile_thing_model(model: Mapping[str, Any] | None) -> ThingModel:
    """Compile a product's thing model; raises InvalidInput when the model itself is malformed."""
    if not model:
        return EMPTY
    props = model.get("properties")
    if props is None:
        return EMPTY
    if not isinstance(props, list):
        raise InvalidInput("thingModel.properties must be a list")
    specs: list[PropertySpec] = []
    for n, entry in enumerate(props):
        where = f"thingModel.properties[{n}]"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where} must be an object")
        ident = entry.get("identifier")
        if not isinstance(ident, str) or not ident:
            raise InvalidInput(f"{where}.identifier must be a non-empty string")
        key = entry.get("key")
        service = entry.get("service")
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidInput(f"{where}.key must be a non-empty string")
        if service is not None and not isinstance(service, str):
            raise InvalidInput(f"{where}.service must be a string")
        specs.append(PropertySpec(ident, _data_type(entry.get("dataType"), f"{where}.dataType"), key, service))
    return ThingModel(specs)


def _data_type(raw: Any, where: str) -> DataType:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be an object with a 'type'")
    t = raw.get("type")
    if t not in TYPES:
        raise InvalidInput(f"{where}.type must be one of {', '.join(sorted(TYPES))}")
    specs = raw.get("specs")
    if t == "struct":
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
        return DataType(t, item=item, size=_int(sp.get("size"), f"{where}.specs.size"))
    length = sp.get("length", sp.get("max_length"))
    return DataType(
        t,
        minimum=_float(sp.get("min"), f"{where}.specs.min"),
        maximum=_float(sp.get("max"), f"{where}.specs.max"),
        length=_int(length, f"{where}.specs.length"),
    )


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
