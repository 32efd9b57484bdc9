"""Alibaba Alink device signatures (Link SDK CONNECT and sub-device login), sans I/O.

CONNECT of a Link SDK device::

    clientId  "{cid}|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|"
    username  "{deviceName}&{productKey}"
    password  lowercase hex HMAC(DeviceSecret, "clientId{cid}deviceName{dn}productKey{pk}timestamp{ts}")

``cid`` is the part of the clientId before the first ``|``; the signed parameters are sorted by
name and ``timestamp`` may be absent. Sign methods: hmacsha1, hmacsha256, hmacmd5.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

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
