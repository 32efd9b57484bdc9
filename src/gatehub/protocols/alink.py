"""Alibaba Alink wire facts, sans I/O: signatures (Link SDK CONNECT, sub-device topology and
login, dynamic registration), topics, request and reply shapes, result codes.

CONNECT of a Link SDK device::

    clientId  "{cid}|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|"
    username  "{deviceName}&{productKey}"
    password  lowercase hex HMAC(DeviceSecret, "clientId{cid}deviceName{dn}productKey{pk}timestamp{ts}")

``cid`` is the part of the clientId before the first ``|``; the signed parameters are sorted by
name and ``timestamp`` may be absent. Sign methods: hmacsha1, hmacsha256, hmacmd5 (any case: the
SDK sends ``hmacSha256`` for sub-devices). A sub-device's ``sign`` in ``thing/topo/add`` and
``combine/login`` is the same HMAC, keyed by the sub-device's secret, over its ``clientId``
(exactly as sent, ``|...|`` included), ``deviceName``, ``productKey`` and ``timestamp``.

Dynamic registration with a product secret (``authType=register``; ``product_register`` of a
gateway): HMAC keyed by the ProductSecret over ``deviceName{dn}productKey{pk}random{random}``.

Every request is ``{"id": "<number>", "version": "1.0", "params": ..., "method": ...}``; every
reply is ``{"id": same, "code": int, "data": ..., "message": text}`` (the SDK drops a reply
without ``message``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from gatehub.errors import InvalidInput

SIGN_METHODS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


@dataclass(frozen=True, slots=True)
class AlinkClientId:
    client_id: str  # the part before the first "|"
    params: dict[str, str]

    @property
    def sign_method(self) -> str:
        return self.params.get("signmethod", "hmacsha1").lower()

    @property
    def timestamp(self) -> str | None:
        return self.params.get("timestamp") or None


def parse_client_id(raw: str) -> AlinkClientId | None:
    """``cid|k=v,k=v|`` -> AlinkClientId; None when the id is not in the Link SDK form."""
    if "|" not in raw:
        return None
    cid, _, rest = raw.partition("|")
    rest = rest.rstrip("|")
    params: dict[str, str] = {}
    for part in rest.split(","):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep:
            return None
        params[k.strip()] = v.strip()
    return AlinkClientId(cid, params)


def parse_username(username: str) -> tuple[str, str] | None:
    """``deviceName&productKey`` -> (device name, product key)."""
    dn, sep, pk = username.partition("&")
    if not sep or not dn or not pk:
        return None
    return dn, pk


def sign_content(client_id: str, device_name: str, product_key: str, timestamp: str | None) -> str:
    params = {"clientId": client_id, "deviceName": device_name, "productKey": product_key}
    if timestamp:
        params["timestamp"] = timestamp
    return "".join(f"{k}{params[k]}" for k in sorted(params))


def sign(secret: str, method: str, client_id: str, device_name: str, product_key: str, timestamp: str | None) -> str:
    digest = SIGN_METHODS.get(method.lower())
    if digest is None:
        raise InvalidInput(f"unknown signmethod {method!r}; use one of {', '.join(SIGN_METHODS)}")
    content = sign_content(client_id, device_name, product_key, timestamp)
    return hmac.new(secret.encode(), content.encode(), digest).hexdigest()


def verify(
    secret: str, method: str, client_id: str, device_name: str, product_key: str, timestamp: str | None, signature: str
) -> bool:
    try:
        expected = sign(secret, method, client_id, device_name, product_key, timestamp)
    except InvalidInput:
        return False
    return hmac.compare_digest(expected, signature.strip().lower())


def timestamp_ms(ts: str) -> int | None:
    """A Link SDK timestamp (seconds or milliseconds) in milliseconds; None if not a number."""
    if not ts.isdigit():
        return None
    n = int(ts)
    return n if n >= 10**12 else n * 1000


def register_sign_content(device_name: str, product_key: str, random: str) -> str:
    return f"deviceName{device_name}productKey{product_key}random{random}"


def verify_register(secret: str, method: str, device_name: str, product_key: str, random: str, signature: str) -> bool:
    """A product-secret signature (dynamic registration)."""
    digest = SIGN_METHODS.get(method.lower())
    if digest is None or not random:
        return False
    expected = hmac.new(secret.encode(), register_sign_content(device_name, product_key, random).encode(), digest)
    return hmac.compare_digest(expected.hexdigest(), signature.strip().lower())


# --- result codes --------------------------------------------------------------------------------
class Code(IntEnum):
    """Reply codes. Up to 6250 they are Alibaba's documented codes; 71xx are gatehub's own
    (Alibaba documents none for these cases). docs/alink.md lists them all."""

    OK = 200
    REQUEST_ERROR = 400  # the hub failed to process the request
    TOO_MANY_REQUESTS = 429
    PARAM_ERROR = 460  # malformed or out-of-range parameters, too many in a batch, thing model
    INTERNAL_ERROR = 500
    DEVICE_NOT_FOUND = 6100  # no such device (also: not pre-registered, the whitelist)
    TOPIC_ERROR = 6203  # a topic the hub cannot parse or does not serve
    NOT_JSON = 6207
    PRODUCT_NOT_FOUND = 6250
    SIGN_INVALID = 7101  # a signature does not match the device's (or product's) secret
    TIMESTAMP_INVALID = 7102  # a signed timestamp outside the allowed clock skew
    TOPO_NOT_FOUND = 7103  # the sub-device is not in this gateway's topology
    OTHER_GATEWAY = 7104  # the sub-device belongs to another gateway
    SECRET_DELIVERED = 7105  # dynamic registration: the secret was delivered already
    REGISTER_DISABLED = 7106  # dynamic registration is off for the product
    NOT_SUBDEVICE = 7107  # a device that is not a sub-device (or the gateway itself)
    NOT_LOGGED_IN = 7108  # a sub-device's message before its login on this connection


class AlinkError(Exception):
    """A request refused with ``code``; ``message`` goes into the reply."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


TOPO_MAX = 30  # sub-devices per thing/topo/add, topo/delete, sub/register, product_register
LOGIN_MAX = 50  # sub-devices per combine/batch_login and batch_logout


# --- topics --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Topic:
    family: str  # "sys" (/sys/{pk}/{dn}/...) or "session" (/ext/session/{pk}/{dn}/...)
    product_key: str
    device_name: str
    path: str  # what follows the device name, e.g. "thing/event/property/post"


def parse_topic(topic: str) -> Topic | None:
    if topic.startswith("/sys/"):
        parts = topic[5:].split("/", 2)
        family = "sys"
    elif topic.startswith("/ext/session/"):
        parts = topic[13:].split("/", 2)
        family = "session"
    else:
        return None
    if len(parts) != 3 or not all(parts):
        return None
    return Topic(family, parts[0], parts[1], parts[2])


def sys_topic(product_key: str, device_name: str, path: str) -> str:
    return f"/sys/{product_key}/{device_name}/{path}"


# --- requests and replies ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    id: str
    params: Any
    method: str | None
    raw: dict[str, Any]  # the whole message (a reply's code, data and message)


def parse_request(payload: bytes) -> Request:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise AlinkError(Code.NOT_JSON, "the payload is not JSON") from None
    if type(body) is not dict:
        raise AlinkError(Code.NOT_JSON, "the payload must be a JSON object")
    rid = body.get("id")
    if type(rid) is int and rid >= 0:
        rid = str(rid)
    if not isinstance(rid, str) or not rid or len(rid) > 64:
        raise AlinkError(Code.PARAM_ERROR, "id must be a string of digits")
    method = body.get("method")
    return Request(rid, body.get("params"), method if isinstance(method, str) else None, body)


def request_id_of(payload: bytes) -> str:
    """The id of a request that could not be parsed whole (for its error reply)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    rid = body.get("id") if type(body) is dict else None
    return str(rid) if isinstance(rid, str | int) else ""


def reply(request_id: str, code: int, data: Any = None, message: str | None = None) -> bytes:
    """The one reply shape: ``{id, code, data, message}``."""
    return orjson.dumps(
        {
            "id": request_id,
            "code": int(code),
            "data": {} if data is None else data,
            "message": message or ("success" if code == Code.OK else "error"),
        }
    )


def downlink(request_id: str, method: str, params: Any) -> bytes:
    return orjson.dumps({"id": request_id, "version": "1.0", "params": params, "method": method})


# --- shapes --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SubCredentials:
    """A sub-device named in thing/topo/add or combine/login, with its signature."""

    product_key: str
    device_name: str
    client_id: str | None
    timestamp: str | None
    sign_method: str | None
    sign: str | None
    clean_session: bool = True

    def verify(self, secret: str) -> bool:
        if not self.sign or not self.sign_method:
            return False
        method = self.sign_method.lower()
        params = {"deviceName": self.device_name, "productKey": self.product_key}
        if self.client_id is not None:
            params["clientId"] = self.client_id
        if self.timestamp:
            params["timestamp"] = self.timestamp
        digest = SIGN_METHODS.get(method)
        if digest is None:
            return False
        content = "".join(f"{k}{params[k]}" for k in sorted(params))
        expected = hmac.new(secret.encode(), content.encode(), digest).hexdigest()
        return hmac.compare_digest(expected, self.sign.strip().lower())


def _str(item: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    v = item.get(key)
    if v is None:
        if required:
            raise AlinkError(Code.PARAM_ERROR, f"{where}.{key} is required")
        return None
    if type(v) is int:
        v = str(v)
    if not isinstance(v, str) or len(v) > 256:
        raise AlinkError(Code.PARAM_ERROR, f"{where}.{key} must be a string")
    return v


def device_refs(params: Any, limit: int, where: str = "params") -> list[tuple[str, str]]:
    """``[{productKey, deviceName}]`` -> [(pk, dn)]; refuses an empty or too long list."""
    items = _list(params, limit, where)
    out = []
    for n, item in enumerate(items):
        pk = _str(item, "productKey", f"{where}[{n}]", True)
        dn = _str(item, "deviceName", f"{where}[{n}]", True)
        assert pk is not None and dn is not None
        out.append((pk, dn))
    return out


def _list(params: Any, limit: int, where: str) -> list[Mapping[str, Any]]:
    if type(params) is not list or not params:
        raise AlinkError(Code.PARAM_ERROR, f"{where} must be a non-empty list")
    if len(params) > limit:
        raise AlinkError(Code.PARAM_ERROR, f"{where} has {len(params)} entries; at most {limit} per request")
    for n, item in enumerate(params):
        if type(item) is not dict:
            raise AlinkError(Code.PARAM_ERROR, f"{where}[{n}] must be an object")
    return params


def sub_credentials(
    params: Any, limit: int, where: str = "params", sign_method: str | None = None
) -> list[SubCredentials]:
    """The entries of thing/topo/add (a list) or combine/batch_login (``deviceList``)."""
    out = []
    for n, item in enumerate(_list(params, limit, where)):
        w = f"{where}[{n}]"
        pk = _str(item, "productKey", w, True)
        dn = _str(item, "deviceName", w, True)
        assert pk is not None and dn is not None
        method = _str(item, "signmethod", w) or _str(item, "signMethod", w) or sign_method
        clean = item.get("cleanSession", True)
        out.append(
            SubCredentials(
                pk,
                dn,
                _str(item, "clientId", w),
                _str(item, "timestamp", w),
                method,
                _str(item, "sign", w),
                str(clean).lower() != "false",
            )
        )
    return out


def login_credentials(params: Any, batch: bool) -> list[SubCredentials]:
    """combine/login (params is one object) or combine/batch_login (``{signMethod, deviceList}``)."""
    if type(params) is not dict:
        raise AlinkError(Code.PARAM_ERROR, "params must be an object")
    if batch:
        method = _str(params, "signMethod", "params") or _str(params, "signmethod", "params")
        return sub_credentials(params.get("deviceList"), LOGIN_MAX, "params.deviceList", method)
    return sub_credentials([params], 1, "params")


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """An entry of thing/proxy/provisioning/product_register (signed with the product secret)."""

    product_key: str
    device_name: str
    random: str
    sign_method: str
    sign: str


def product_register_requests(params: Any) -> list[RegisterRequest]:
    if type(params) is not dict:
        raise AlinkError(Code.PARAM_ERROR, "params must be an object with 'proxieds'")
    out = []
    for n, item in enumerate(_list(params.get("proxieds"), TOPO_MAX, "params.proxieds")):
        w = f"params.proxieds[{n}]"
        vals = [_str(item, k, w, True) for k in ("productKey", "deviceName", "random", "sign")]
        method = _str(item, "signMethod", w) or _str(item, "signmethod", w) or "hmacsha256"
        pk, dn, rnd, sig = (v or "" for v in vals)
        out.append(RegisterRequest(pk, dn, rnd, method, sig))
    return out


def property_values(params: Any, default_ts: int) -> list[tuple[str, Any, int]]:
    """thing.event.property.post params -> [(identifier, value, ts)]. A value may be given as
    ``{"value": v, "time": ms}``."""
    if type(params) is not dict or not params:
        raise AlinkError(Code.PARAM_ERROR, "params must be a non-empty object of property values")
    out = []
    for ident, raw in params.items():
        ts = default_ts
        value = raw
        if type(raw) is dict and "value" in raw and raw.keys() <= {"value", "time"}:
            value = raw["value"]
            t = raw.get("time")
            if t is not None:
                if type(t) is not int or not 0 <= t <= 253402300799999:
                    raise AlinkError(Code.PARAM_ERROR, f"params.{ident}.time must be UTC milliseconds")
                ts = t
        out.append((ident, value, ts))
    return out
