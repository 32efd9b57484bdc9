"""The Alink signature as an authenticator of the MQTT chain (Link SDK gateways and devices).

Two kinds of Link SDK CONNECT:

- a device with its DeviceSecret: clientId ``{cid}|securemode=..,signmethod=..,timestamp=..|``,
  password = HMAC(DeviceSecret, sorted clientId/deviceName/productKey/timestamp);
- dynamic registration with the ProductSecret (``authType=register``): clientId
  ``{dn}.{pk}|random=..,authType=register,securemode=2,signmethod=hmacsha256|``, password =
  HMAC(ProductSecret, ``deviceName{dn}productKey{pk}random{random}``). The product must allow
  dynamic registration and the name be pre-registered with its secret not yet delivered. Such a
  session is confined to the pseudo-tenant ``REGISTER_TENANT`` (no device, no tenant's topics);
  the Alink dialect sends it the secret on ``/ext/register`` and closes it.
"""

from __future__ import annotations

import time

from gatehub.protocols import alink
from gatehub.store import Store
from gatehub.transports.mqtt.auth import AuthRequest, AuthResult, MqttPrincipal, Verdict, principal_of

REGISTER_TENANT = "~alink-register"  # not a valid tenant id: nothing of a real tenant is reachable
REGISTER_METHOD = "alink-register"


class AlinkSignatureAuth:
    """Allows a client whose clientId is in the Link SDK form and whose password is the HMAC of its
    DeviceSecret; denies a wrong signature, a stale timestamp or an unknown device; does not know
    any other client."""

    name = "alink"

    def __init__(self, store: Store, max_skew_s: int = 900) -> None:
        self.store = store
        self.max_skew_ms = max_skew_s * 1000

    async def authenticate(self, req: AuthRequest) -> AuthResult:
        if req.username is None or req.password is None:
            return AuthResult.unknown()
        cid = alink.parse_client_id(req.client_id)
        names = alink.parse_username(req.username)
        if cid is None or names is None or ("securemode" not in cid.params and "signmethod" not in cid.params):
            return AuthResult.unknown()
        dn, pk = names
        auth_type = cid.params.get("authType")
        if auth_type is not None:
            return await self._register(cid, dn, pk, auth_type, req.password.decode(errors="replace"))
        if cid.sign_method not in alink.SIGN_METHODS:
            return AuthResult.deny(f"unsupported signmethod {cid.sign_method}", 0x86)
        ts = cid.timestamp
        if ts is not None and self.max_skew_ms:
            ms = alink.timestamp_ms(ts)
            if ms is None or abs(ms - time.time() * 1000) > self.max_skew_ms:
                return AuthResult.deny("timestamp is not within the allowed clock skew", 0x86)
        try:
            product = await self.store.catalog.get_product(None, pk)
        except Exception:
            return AuthResult.deny(f"unknown product {pk}", 0x86)
        dev = await self.store.devices.find_by_name(product.tenant_id, dn)
        if dev is None or dev.product_id != pk or not dev.secret:
            return AuthResult.deny(f"unknown device {dn} of product {pk}", 0x86)
        password = req.password.decode(errors="replace")
        if not alink.verify(dev.secret, cid.sign_method, cid.client_id, dn, pk, ts, password):
            return AuthResult.deny("signature does not match", 0x86)
        return AuthResult(Verdict.ALLOW, principal_of(dev, "alink"))

    async def _register(self, cid: alink.AlinkClientId, dn: str, pk: str, auth_type: str, password: str) -> AuthResult:
        if auth_type != "register":
            return AuthResult.deny(f"authType {auth_type} is not supported (only pre-registered 'register')", 0x87)
        try:
            product = await self.store.catalog.get_product(None, pk)
        except Exception:
            return AuthResult.deny(f"unknown product {pk}", 0x86)
        if not alink.verify_register(product.secret, cid.sign_method, dn, pk, cid.params.get("random", ""), password):
            return AuthResult.deny("product signature does not match", 0x86)
        if not product.dynamic_register:
            return AuthResult.deny(f"product {pk} does not allow dynamic registration", 0x87)
        dev = await self.store.devices.find_by_name(product.tenant_id, dn)
        if dev is None or dev.product_id != pk:
            return AuthResult.deny(f"{dn} is not pre-registered for product {pk}", 0x87)
        if dev.secret_delivered:
            return AuthResult.deny(f"the secret of {pk}/{dn} was delivered already", 0x87)
        return AuthResult(Verdict.ALLOW, MqttPrincipal(REGISTER_TENANT, None, None, REGISTER_METHOD, None, pk))
