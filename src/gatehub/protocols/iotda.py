"""Huawei IoTDA HTTPS device API, sans I/O: passwords, timestamps, ids, errors, payloads.

The wire facts come from seed 003 ("HTTPS Access"):

- password = lowercase hex HMAC-SHA256 keyed by the ``YYYYMMDDHH`` UTC timestamp over the device
  secret (64 characters); ``sign_type`` 1 also requires the timestamp to be the server's hour;
- device ids are 1-128 of letters, digits, ``_`` and ``-`` (platform-allocated ones read
  ``{product_id}_{node_id}``);
- property reports are ``{"services": [{"service_id", "properties": {..}, "event_time"?}]}``;
  ``event_time`` is ``yyyyMMdd'T'HHmmss'Z'`` or ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'``, and a missing or
  malformed one means "the time the platform received it";
- a gateway reports at most 50 children per request, a body is at most 1 MB;
- errors are ``{"error_code": "IOTDA.xxxxxx", "error_msg": ...}`` with the statuses of the table
  in :data:`ERRORS`.

Everything here is pure: bytes and values in, values or :class:`IotdaError` out.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import hashlib
import hmac
import re
from typing import Any

import orjson

from gatehub.errors import DomainError

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
TIMESTAMP_RE = re.compile(r"\d{10}")
PASSWORD_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_CHILDREN = 50
MAX_BODY_BYTES = 1_048_576

# error code -> (HTTP status, message as the seed words it; %s is filled in where it has one)
AUTH_FAILED = "IOTDA.000002"
INVALID_TOKEN = "IOTDA.000004"
INVALID_INPUT = "IOTDA.000006"
DEVICE_RATE = "IOTDA.021101"
TENANT_RATE = "IOTDA.021102"
TOO_MANY_CHILDREN = "IOTDA.021103"
NOT_A_CHILD = "IOTDA.021104"
TOO_LARGE = "IOTDA.021105"
# The seed documents no error for a wrong Content-Type: the hub answers HTTP 415 (RFC 9110
# Unsupported Media Type) with the closest seed code, IOTDA.000006 (see unsupported_media_type).
UNSUPPORTED_MEDIA_TYPE_STATUS = 415

ERRORS: dict[str, tuple[int, str]] = {
    AUTH_FAILED: (401, "Authentication failed."),
    INVALID_TOKEN: (403, "Invalid access token."),
    INVALID_INPUT: (400, "Invalid input data."),
    DEVICE_RATE: (403, "Request reached the maximum rate limit."),
    TENANT_RATE: (403, "The request rate has reached the upper limit of the tenant, limit %s."),
    TOO_MANY_CHILDREN: (403, "The number of child devices in the request has reached the upper limit (%s)."),
    NOT_A_CHILD: (400, "Subdevices in the request does not exist or does not belong to the gateway."),
    TOO_LARGE: (403, "The content reported in a single request cannot exceed 1 MB."),
}


class IotdaError(DomainError):
    """An IoTDA error answer. ``detail`` (for IOTDA.000006) names the offending field."""

    def __init__(
        self, error_code: str, arg: object = None, *, detail: str | None = None, status: int | None = None
    ) -> None:
        seed_status, msg = ERRORS[error_code]
        text = msg % (arg,) if "%s" in msg else msg
        if detail:
            text = f"{text} {detail}"
        super().__init__(text, code=error_code)
        self.error_code = error_code
        self.http_status = seed_status if status is None else status

    def body(self) -> bytes:
        return orjson.dumps({"error_code": self.error_code, "error_msg": self.message})


def invalid(detail: str) -> IotdaError:
    return IotdaError(INVALID_INPUT, detail=detail)


def check_content_type(value: bytes | None) -> None:
    """Every request body is JSON: ``application/json`` in any case, parameters allowed
    (``; charset=utf-8``). Anything else, or no Content-Type, is 415 with IOTDA.000006."""
    if value is not None and value.split(b";", 1)[0].strip().lower() == b"application/json":
        return
    got = "none" if value is None else repr(value.decode("latin-1")[:100])
    raise IotdaError(
        INVALID_INPUT,
        detail=f"Content-Type must be application/json, got {got}.",
        status=UNSUPPORTED_MEDIA_TYPE_STATUS,
    )


# -- authentication ---------------------------------------------------------------------------


def password(secret: str, timestamp: str) -> str:
    """The device password: HMAC-SHA256 keyed by ``timestamp`` (YYYYMMDDHH) over ``secret``."""
    return hmac.new(timestamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


def password_matches(secret: str, timestamp: str, given: str) -> bool:
    return hmac.compare_digest(password(secret, timestamp), given.lower())


def timestamp_for(when_ms: int) -> str:
    """The ``YYYYMMDDHH`` timestamp of a UTC instant in milliseconds."""
    return dt.datetime.fromtimestamp(when_ms / 1000, dt.UTC).strftime("%Y%m%d%H")


def parse_timestamp(ts: str) -> int:
    """The start of the hour named by ``YYYYMMDDHH`` in UTC milliseconds; raises IotdaError."""
    if not TIMESTAMP_RE.fullmatch(ts):
        raise invalid("timestamp must be 10 digits: YYYYMMDDHH (UTC)")
    try:
        t = dt.datetime(int(ts[0:4]), int(ts[4:6]), int(ts[6:8]), int(ts[8:10]), tzinfo=dt.UTC)
    except ValueError:
        raise invalid("timestamp is not a valid UTC hour (YYYYMMDDHH)") from None
    return calendar.timegm(t.timetuple()) * 1000


def timestamp_is_current(ts: str, now_ms: int, skew_hours: int) -> bool:
    """Whether ``ts`` names the hour of ``now_ms`` or one at most ``skew_hours`` away."""
    hour = parse_timestamp(ts) // 3_600_000
    return abs(hour - now_ms // 3_600_000) <= skew_hours


def check_device_id(value: Any, field: str = "device_id") -> str:
    if type(value) is not str or not DEVICE_ID_RE.fullmatch(value):
        raise invalid(f"{field} must be 1-128 characters of letters, digits, '_' and '-'.")
    return value


def platform_device_id(product_id: str, node_id: str) -> str:
    """The id IoTDA allocates: ``{product_id}_{node_id}``."""
    return check_device_id(f"{product_id}_{node_id}")


class AuthRequest:
    __slots__ = ("device_id", "password", "sign_type", "timestamp")

    def __init__(self, device_id: str, sign_type: int, timestamp: str, password: str) -> None:
        self.device_id = device_id
        self.sign_type = sign_type
        self.timestamp = timestamp
        self.password = password


def parse_auth(body: bytes) -> AuthRequest:
    """Parse and check a ``/v5/device-auth`` body; raises IotdaError (IOTDA.000006)."""
    doc = load_json(body)
    if type(doc) is not dict:
        raise invalid("the body must be a JSON object.")
    device_id = check_device_id(doc.get("device_id"))
    sign_type = doc.get("sign_type")
    if type(sign_type) is not int or sign_type not in (0, 1):
        raise invalid("sign_type must be 0 or 1.")
    ts = doc.get("timestamp")
    if type(ts) is not str:
        raise invalid("timestamp must be a string YYYYMMDDHH.")
    parse_timestamp(ts)
    pw = doc.get("password")
    if type(pw) is not str or not PASSWORD_RE.fullmatch(pw):
        raise invalid("password must be 64 hexadecimal characters.")
    return AuthRequest(device_id, sign_type, ts, pw)


# -- payloads ---------------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("the body is not valid JSON.") from None


_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z")


_EVENT_TIMES: dict[str, int | None] = {}  # memo: a batch repeats one event_time for every child


def parse_event_time(value: Any) -> int | None:
    """``event_time`` in UTC milliseconds, or None when absent or malformed (use receive time)."""
    if type(value) is not str:
        return None
    try:
        return _EVENT_TIMES[value]
    except KeyError:
        pass
    out = _parse_event_time(value)
    if len(_EVENT_TIMES) >= 1024:
        _EVENT_TIMES.clear()
    _EVENT_TIMES[value] = out
    return out


def _parse_event_time(value: str) -> int | None:
    m = _COMPACT.fullmatch(value) or _ISO.fullmatch(value)
    if m is None:
        return None
    g = m.groups()
    try:
        t = dt.datetime(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]), tzinfo=dt.UTC)
    except ValueError:
        return None
    ms = int(g[6].ljust(3, "0")) if len(g) > 6 and g[6] else 0
    out = calendar.timegm(t.timetuple()) * 1000 + ms
    return out if out >= 0 else None  # four-digit years: never past 9999-12-31


def format_event_time(ms: int, compact: bool = False) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    if compact:
        return t.strftime("%Y%m%dT%H%M%SZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_children(doc: Any, max_children: int = MAX_CHILDREN) -> list[tuple[str, Any]]:
    """``(child device id, services)`` of a gateway batch body; raises IotdaError.

    Shape errors give IOTDA.000006, more than ``max_children`` entries IOTDA.021103.
    """
    if type(doc) is not dict:
        raise invalid("the body must be a JSON object.")
    devices = doc.get("devices")
    if type(devices) is not list or not devices:
        raise invalid("devices must be a non-empty list.")
    if len(devices) > max_children:
        raise IotdaError(TOO_MANY_CHILDREN, max_children)
    out: list[tuple[str, Any]] = []
    for n, d in enumerate(devices):
        if type(d) is not dict:
            raise invalid(f"devices[{n}] must be an object.")
        out.append((check_device_id(d.get("device_id"), f"devices[{n}].device_id"), d.get("services")))
    return out


def message_body(body: bytes) -> str:
    """The stored form (JSON text) of a ``messages/up`` body: the JSON itself when it is JSON,
    else ``{"raw": text}`` for UTF-8 text or ``{"base64": ...}`` for other bytes."""
    if not body:
        raise invalid("the message body is empty.")
    try:
        orjson.loads(body)
        return body.decode()
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.dumps({"raw": body.decode("utf-8")}).decode()
    except UnicodeDecodeError:
        return orjson.dumps({"base64": base64.b64encode(body).decode()}).decode()
