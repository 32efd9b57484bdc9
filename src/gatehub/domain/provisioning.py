"""Provisioning rules without I/O: the whitelist of pre-registered device names (CSV import).

A whitelist is a CSV text. With a header row it has a ``deviceName`` column (required) and
optionally ``deviceId`` and ``deviceSecret``; without one, each line is a device name (Alibaba's
batch-add file is one name per line). Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from gatehub.domain.model import check_id, check_name
from gatehub.errors import InvalidInput

WHITELIST_MAX_ROWS = 10_000
_HEADER = {
    "devicename": "name",
    "name": "name",
    "deviceid": "id",
    "id": "id",
    "devicesecret": "secret",
    "secret": "secret",
}


@dataclass(frozen=True, slots=True)
class WhitelistRow:
    line: int
    name: str
    device_id: str | None = None
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


def parse_whitelist(text: str) -> tuple[list[WhitelistRow], list[RowError]]:
    """Rows to create and the lines that cannot be (each with its line number)."""
    rows: list[WhitelistRow] = []
    errors: list[RowError] = []
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise InvalidInput("the whitelist is empty")
    reader = csv.reader(io.StringIO("\n".join(line for _n, line in lines)))
    records = list(reader)
    first = [c.strip().lower() for c in records[0]]
    columns: list[str | None]
    if any(c in _HEADER for c in first) and "name" in {_HEADER.get(c) for c in first}:
        columns = [_HEADER.get(c) for c in first]
        body = list(zip((n for n, _l in lines[1:]), records[1:], strict=True))
    elif any(c in _HEADER for c in first):
        raise InvalidInput("the whitelist header needs a deviceName column")
    else:
        columns = ["name"]
        body = list(zip((n for n, _l in lines), records, strict=True))
    if len(body) > WHITELIST_MAX_ROWS:
        raise InvalidInput(f"the whitelist has {len(body)} rows; at most {WHITELIST_MAX_ROWS} per import")
    seen: set[str] = set()
    for n, rec in body:
        values = {col: v.strip() for col, v in zip(columns, rec, strict=False) if col is not None}
        if len(rec) > len(columns) and columns == ["name"]:
            errors.append(RowError(n, "one device name per line (or add a header row)"))
            continue
        name = values.get("name", "")
        try:
            check_name(name, "deviceName")
            dev_id = values.get("id") or None
            if dev_id is not None:
                check_id(dev_id, "deviceId")
            secret = values.get("secret") or None
            if secret is not None and not 8 <= len(secret) <= 128:
                raise InvalidInput("deviceSecret must be 8-128 characters")
        except InvalidInput as exc:
            errors.append(RowError(n, exc.message))
            continue
        if name in seen:
            errors.append(RowError(n, f"{name!r} appears twice in the file"))
            continue
        seen.add(name)
        rows.append(WhitelistRow(n, name, dev_id, secret))
    return rows, errors
