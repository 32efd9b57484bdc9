"""Checks of free-form JSON inputs that the database stores as JSON text (RPC and service params)."""

from __future__ import annotations

from typing import Any

import orjson


def storable_json(value: Any) -> Any:
    """``value`` if it can be stored and sent as JSON; otherwise a ValueError naming why (an
    integer beyond 64 bits, say), which the API answers 400 for the field."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be stored or sent as JSON: {exc}") from None
    return value
