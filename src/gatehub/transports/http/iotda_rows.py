"""IoTDA reports as telemetry rows: the properties of ``properties/report`` (and of each child of a
gateway batch) checked against the product's thing model and flattened to domain rows.

Between the wire shapes of ``protocols.iotda`` and the domain (``domain.telemetry``,
``domain.thingmodel``): protocols import nothing of the domain, so the translation lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gatehub.domain.telemetry import INT64_MAX, INT64_MIN, KEY_MAX, Row
from gatehub.domain.thingmodel import EMPTY, ThingModel, ThingModelError
from gatehub.protocols.iotda import IotdaError, invalid, parse_event_time

__all__ = ["ModelOf", "flatten_gateway_batch", "flatten_services"]

ModelOf = Callable[[str], ThingModel]


def flatten_services(
    device_id: str, services: Any, received_ms: int, model: ThingModel, out: list[Row], where: str = "services"
) -> None:
    """Append one telemetry row per reported property to ``out``; raises IotdaError (000006).

    Keys are ``{service_id}.{property}`` unless the thing model gives the property a ``key``.
    When the model lists properties, unknown ones and values of the wrong type are refused.
    On error nothing is appended.
    """
    if type(services) is not list or not services:
        raise invalid(f"{where} must be a non-empty list.")
    start = len(out)
    strict = model.strict
    try:
        for n, svc in enumerate(services):
            if type(svc) is not dict:
                raise invalid(f"{where}[{n}] must be an object.")
            sid = svc.get("service_id")
            if type(sid) is not str or not sid or len(sid) > 64:
                raise invalid(f"{where}[{n}].service_id must be a string of 1-64 characters.")
            props = svc.get("properties")
            if type(props) is not dict:
                raise invalid(f"{where}[{n}].properties must be an object.")
            ts = parse_event_time(svc.get("event_time"))
            if ts is None:
                ts = received_ms
            for name, value in props.items():
                key = f"{sid}.{name}"
                if value is None:
                    raise invalid(f"{where}[{n}].properties.{name}: null is not a value.")
                if model is not EMPTY:
                    spec = model.lookup(sid, name)
                    if spec is None:
                        if strict:
                            raise invalid(f"{where}[{n}].properties.{name}: not a property of the product model.")
                    else:
                        try:
                            spec.data_type.check(value, f"{where}[{n}].properties.{name}")
                        except ThingModelError as exc:
                            raise invalid(f"{exc.field}: {exc.reason}.") from None
                        if spec.key is not None:
                            key = spec.key
                if not name or len(key) > KEY_MAX:
                    raise invalid(f"{where}[{n}].properties: a property name must be 1-{KEY_MAX - len(sid) - 1} chars.")
                out.append(_row(device_id, key, ts, value))
    except IotdaError:
        del out[start:]
        raise


def _row(device_id: str, key: str, ts: int, value: Any) -> Row:
    t = type(value)
    if t is bool:
        return (device_id, key, ts, "b", int(value), None, None)
    if t is int:
        if INT64_MIN <= value <= INT64_MAX:
            return (device_id, key, ts, "i", value, None, None)
        return (device_id, key, ts, "f", None, float(value), None)
    if t is float:
        return (device_id, key, ts, "f", None, value, None)
    if t is str:
        return (device_id, key, ts, "s", None, None, value)
    return (device_id, key, ts, "j", None, None, orjson.dumps(value).decode())


def flatten_gateway_batch(children: list[tuple[str, Any]], received_ms: int, model_of: ModelOf, out: list[Row]) -> None:
    """Rows of every child's services (ownership is the caller's business); all or nothing."""
    start = len(out)
    try:
        for n, (child, services) in enumerate(children):
            flatten_services(child, services, received_ms, model_of(child), out, f"devices[{n}].services")
    except IotdaError:
        del out[start:]
        raise
