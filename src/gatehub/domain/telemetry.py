"""Typed data points: how a JSON value becomes a stored row, and back.

A point is stored as one row ``(device_id, key, ts, kind, v_int, v_float, v_str)`` where
``kind`` is one of ``b`` (bool, in v_int), ``i`` (int64, in v_int), ``f`` (float, in v_float),
``s`` (string, in v_str), ``j`` (any other JSON, serialised in v_str). Rows are plain tuples:
the flattening of a 150-point gateway payload is the hot path, so no objects per point.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from gatehub.errors import InvalidInput

Row = tuple[str, str, int, str, int | None, float | None, str | None]
KEY_MAX = 255
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TS_MAX = 253402300799999  # 9999-12-31T23:59:59.999Z in ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def typed(value: Any) -> tuple[str, int | None, float | None, str | None]:
    """(kind, v_int, v_float, v_str) of a JSON value."""
    t = type(value)
    if t is bool:
        return ("b", int(value), None, None)
    if t is int:
        if INT64_MIN <= value <= INT64_MAX:
            return ("i", value, None, None)
        try:
            return ("f", None, float(value), None)
        except OverflowError:
            raise InvalidInput("an integer too large for a number: more than 1.8e308") from None
    if t is float:
        if not math.isfinite(value):
            raise InvalidInput(f"{value} is not a number JSON can carry")
        return ("f", None, value, None)
    if t is str:
        return ("s", None, None, value)
    try:
        return ("j", None, None, orjson.dumps(value).decode())
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(f"a value that cannot be stored: {exc}") from None


def row(device_id: str, key: str, ts: int, value: Any) -> Row:
    kind, vi, vf, vs = typed(value)
    return (device_id, key, ts, kind, vi, vf, vs)


def value_of(kind: str, v_int: int | None, v_float: float | None, v_str: str | None) -> Any:
    if kind == "b":
        return bool(v_int)
    if kind == "i":
        return v_int
    if kind == "f":
        return v_float
    if kind == "s":
        return v_str
    return orjson.loads(v_str) if v_str is not None else None


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > KEY_MAX:
        raise InvalidInput(f"a data key must be a non-empty string of at most {KEY_MAX} characters: {key!r}")
    return key


def check_ts(ts: Any) -> int:
    if type(ts) is not int or not 0 <= ts <= TS_MAX:
        raise InvalidInput(f"ts must be Unix time in milliseconds (an integer): {ts!r}")
    return int(ts)


def flatten_points(device_id: str, body: Any, default_ts: int, out: list[Row]) -> None:
    """ThingsBoard-style telemetry into rows.

    Accepts ``{k: v}``, ``{"ts": ms, "values": {k: v}}`` or a list of either; appends to ``out``.
    Raises InvalidInput (and appends nothing) when the shape or a key is wrong.
    """
    start = len(out)
    try:
        items = body if isinstance(body, list) else [body]
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInput("telemetry must be an object or a list of objects")
            if "ts" in item and "values" in item:
                ts = check_ts(item["ts"])
                values = item["values"]
                if not isinstance(values, dict):
                    raise InvalidInput("'values' must be an object")
            else:
                ts = default_ts
                values = item
            append = out.append
            for k, v in values.items():
                if not k or len(k) > KEY_MAX:
                    check_key(k)
                # the common kinds inline (this runs for every data point); the rest via typed()
                t = type(v)
                if t is float and v - v == 0.0:  # finite: inf - inf and nan - nan are nan
                    append((device_id, k, ts, "f", None, v, None))
                elif t is int and INT64_MIN <= v <= INT64_MAX:
                    append((device_id, k, ts, "i", v, None, None))
                elif t is bool:
                    append((device_id, k, ts, "b", 1 if v else 0, None, None))
                elif v is None:
                    raise InvalidInput(f"value of {k!r} is null")
                else:
                    kind, vi, vf, vs = typed(v)
                    append((device_id, k, ts, kind, vi, vf, vs))
    except InvalidInput:
        del out[start:]
        raise
