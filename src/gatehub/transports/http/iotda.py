"""The Huawei IoTDA-compatible HTTPS device API (seed 003), a lean ASGI app on its own listener.

    POST /v5/device-auth                                               -> access token
    POST /v5/devices/{device_id}/sys/messages/up                       -> message log + bus
    POST /v5/devices/{device_id}/sys/properties/report                 -> telemetry
    POST /v5/devices/{device_id}/sys/gateway/sub-devices/properties/report  (<= 50 children)
    GET  /v5/openapi.json                                              -> this API's OpenAPI

Every request is answered after what it reports is committed (``services.ingest``). The hot
path touches no database on the common case: the token -> device record, each gateway's set of
children and each product's compiled thing model are cached in memory, with the database the
source of truth. A token issued on another node is found in the database on first use; a token
superseded on another node is announced on the bus (``t.{tenant}.iotda.token.{device}``), and a
topology change (``t.{tenant}.topology.{gateway}``) drops that gateway's cached children. Cached
tokens and children are re-read after ``iotda_cache_seconds`` in any case; thing models come from
the hub's one cache (``services.things.ThingModels``), dropped when the product changes.

Errors are IoTDA bodies ``{"error_code", "error_msg"}`` (see ``gatehub.protocols.iotda``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from gatehub.bus import Subscription
from gatehub.domain.telemetry import Row, now_ms
from gatehub.domain.thingmodel import ThingModel
from gatehub.errors import NotFound, StorageError
from gatehub.protocols import iotda as p
from gatehub.services.guard import mask
from gatehub.store import WriteBatch
from gatehub.store.tokens import DeviceTokens, TokenRecord, hash_token
from gatehub.transports.http.context import HubContext
from gatehub.transports.http.iotda_openapi import openapi
from gatehub.transports.http.iotda_rows import flatten_gateway_batch, flatten_services
from gatehub.transports.http.server import HttpLimits, HttpServer

log = logging.getLogger(__name__)

SERVER_ERROR = "IOTDA.000500"  # gatehub's own: the hub failed (storage down); not a seed code
_JSON = [(b"content-type", b"application/json")]
_MESSAGES, _PROPERTIES, _GATEWAY = 1, 2, 3
_ROUTES = {
    "/messages/up": _MESSAGES,
    "/properties/report": _PROPERTIES,
    "/gateway/sub-devices/properties/report": _GATEWAY,
}
_DEVICES_PREFIX = "/v5/devices/"
_CACHE_MAX = 200_000


class _Disconnected(Exception):
    pass


class TokenBucket:
    """``rate`` per second with a burst of ``2 * rate``; ``rate`` 0 allows everything."""

    __slots__ = ("burst", "last", "level", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(2.0 * rate, 1.0)
        self.level = self.burst
        self.last = time.monotonic()

    def take(self, now: float) -> bool:
        level = min(self.burst, self.level + (now - self.last) * self.rate)
        self.last = now
        if level < 1.0:
            self.level = level
            return False
        self.level = level - 1.0
        return True


class _Cached:
    __slots__ = ("at", "value")

    def __init__(self, value: Any, at: float) -> None:
        self.value = value
        self.at = at


class IotdaService:
    """What the endpoints do; ``clock`` (Unix ms) is replaceable for tests."""

    def __init__(self, ctx: HubContext, clock: Callable[[], int] = now_ms) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.clock = clock
        self.tokens = DeviceTokens(ctx.store.db)
        self.ttl_ms = s.iotda_token_ttl * 1000
        self.overlap_ms = int(s.iotda_token_overlap * 1000)
        self.skew_hours = s.iotda_clock_skew_hours
        self.rate_device = s.iotda_rate_per_device
        self.rate_tenant = s.iotda_rate_per_tenant
        self.max_body = s.iotda_max_body_bytes
        self.max_children = s.iotda_max_children
        self.cache_s = s.iotda_cache_seconds
        self._tokens: dict[str, _Cached] = {}  # token -> TokenRecord
        self._by_device: dict[str, set[str]] = {}  # device -> cached tokens
        self._children: dict[str, _Cached] = {}  # gateway -> {child id: product id}
        self._dev_buckets: dict[str, TokenBucket] = {}
        self._tenant_buckets: dict[str, TokenBucket] = {}
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for pattern, handler in (("t.*.topology.*", self._on_topology), ("t.*.iotda.token.*", self._on_token)):
            sub = self.ctx.bus.subscribe(pattern, maxsize=10_000)
            self._subs.append(sub)
            self._tasks.append(asyncio.create_task(self._follow(sub, handler), name=f"iotda-{pattern}"))

    async def stop(self) -> None:
        for sub in self._subs:
            sub.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subs.clear()
        self._tasks.clear()

    async def _follow(self, sub: Subscription, handler: Callable[[dict[str, Any]], None]) -> None:
        async for env in sub:
            try:
                handler(env.data)
            except Exception:
                log.exception("iotda: bad bus message on %s", env.subject)
        if sub.overflowed:  # missed events: forget everything they could have changed
            log.warning("iotda: bus subscription %s overflowed; dropping caches", sub.pattern)
            self._children.clear()
            self._tokens.clear()
            self._by_device.clear()

    def _on_topology(self, data: dict[str, Any]) -> None:
        gw = data.get("gatewayId")
        if isinstance(gw, str):
            self._children.pop(gw, None)

    def _on_token(self, data: dict[str, Any]) -> None:
        self._supersede(str(data.get("deviceId")), int(data.get("at", 0)), str(data.get("keep", "")))

    def _supersede(self, device_id: str, at: int, keep_hash: str) -> None:
        for token in self._by_device.get(device_id, ()):
            c = self._tokens.get(token)
            if c is None:
                continue
            rec: TokenRecord = c.value
            if rec.superseded_at is None and hash_token(token) != keep_hash:
                c.value = TokenRecord(rec.device_id, rec.tenant_id, rec.product_id, rec.kind, rec.expires_at, at)

    # -- authentication ---------------------------------------------------------------------

    async def authenticate(self, body: bytes, host: str | None = None) -> bytes:
        """``/v5/device-auth``; ``host`` is the client's address (the credential guard's source)."""
        req = p.parse_auth(body)
        guard = self.ctx.guard
        who = f"device {req.device_id}"
        if await guard.admit(host, "iotda", who) is not None:
            raise p.IotdaError(p.DEVICE_RATE, detail="Too many failed authentications from this address.")
        try:
            dev = await self.ctx.store.devices.get(None, req.device_id)
        except NotFound:
            await guard.refused(host, "iotda", f"{who}: unknown device", "bad_credentials")
            raise p.IotdaError(p.AUTH_FAILED) from None
        self.rate_check(dev.id, dev.tenant_id)
        now = self.clock()
        if req.sign_type == 1 and not p.timestamp_is_current(req.timestamp, now, self.skew_hours):
            await guard.refused(host, "iotda", f"{who}: timestamp not current", "stale_timestamp")
            raise p.IotdaError(p.AUTH_FAILED)
        if not dev.secret or not p.password_matches(dev.secret, req.timestamp, req.password):
            await guard.refused(host, "iotda", f"{who}: wrong password", "bad_credentials")
            raise p.IotdaError(p.AUTH_FAILED)
        guard.succeeded(host)
        token, expires_at = await self.tokens.issue(dev.id, now, self.ttl_ms, self.overlap_ms)
        keep = hash_token(token)
        self._supersede(dev.id, now, keep)
        self._remember(token, TokenRecord(dev.id, dev.tenant_id, dev.product_id, dev.kind.value, expires_at, None))
        self.ctx.bus.publish(
            f"t.{dev.tenant_id}.iotda.token.{dev.id}",
            {"type": "iotda-token", "deviceId": dev.id, "at": now, "keep": keep},
        )
        return orjson.dumps({"access_token": token, "expires_in": self.ttl_ms // 1000})

    def _remember(self, token: str, rec: TokenRecord) -> None:
        if len(self._tokens) >= _CACHE_MAX:
            self._tokens.clear()
            self._by_device.clear()
        self._tokens[token] = _Cached(rec, time.monotonic())
        self._by_device.setdefault(rec.device_id, set()).add(token)

    async def authorize(self, token: str | None, device_id: str, host: str | None = None) -> TokenRecord:
        """The record of a valid token bound to ``device_id``; raises IOTDA.000004. An unknown
        token is a guess (it backs ``host`` off); an expired or another device's real one is not."""
        guard = self.ctx.guard
        if await guard.admit(host, "iotda", f"device {device_id}") is not None:
            raise p.IotdaError(p.DEVICE_RATE, detail="Too many invalid access tokens from this address.")
        if not token:
            await guard.refused(host, "iotda", f"device {device_id}: no access_token", "no_credentials", score=False)
            raise p.IotdaError(p.INVALID_TOKEN)
        c = self._tokens.get(token)
        if c is None or time.monotonic() - c.at > self.cache_s:
            rec = await self.tokens.lookup(hash_token(token)) if len(token) <= 256 else None
            if rec is None:
                if c is not None:
                    self._forget(token, c.value)
                await guard.refused(host, "iotda", f"device {device_id}: token {mask(token)}", "bad_token")
                raise p.IotdaError(p.INVALID_TOKEN)
            self._remember(token, rec)
        else:
            rec = c.value
        if rec.device_id != device_id or not rec.valid_at(self.clock(), self.overlap_ms):
            await guard.refused(
                host, "iotda", f"device {device_id}: token expired or not its own", "expired_token", score=False
            )
            raise p.IotdaError(p.INVALID_TOKEN)
        return rec

    def _forget(self, token: str, rec: TokenRecord) -> None:
        self._tokens.pop(token, None)
        self._by_device.get(rec.device_id, set()).discard(token)

    def rate_check(self, device_id: str, tenant_id: str) -> None:
        now = time.monotonic()
        if self.rate_device > 0:
            b = self._dev_buckets.get(device_id)
            if b is None:
                b = self._dev_buckets[device_id] = TokenBucket(self.rate_device)
            if not b.take(now):
                raise p.IotdaError(p.DEVICE_RATE)
        if self.rate_tenant > 0:
            t = self._tenant_buckets.get(tenant_id)
            if t is None:
                t = self._tenant_buckets[tenant_id] = TokenBucket(self.rate_tenant)
            if not t.take(now):
                raise p.IotdaError(p.TENANT_RATE, _num(self.rate_tenant))

    # -- reports ----------------------------------------------------------------------------

    async def model(self, product_id: str) -> ThingModel:
        """The product's thing model (shared with the other dialects: ``services.things``); an
        unknown product or a malformed model checks nothing."""
        return await self.ctx.models.lenient(product_id)

    async def children(self, gateway_id: str) -> dict[str, str]:
        c = self._children.get(gateway_id)
        if c is not None and time.monotonic() - c.at <= self.cache_s:
            kids: dict[str, str] = c.value
            return kids
        kids = {d.id: d.product_id for d in await self.ctx.store.devices.children(gateway_id)}
        self._children[gateway_id] = _Cached(kids, time.monotonic())
        return kids

    async def report(self, op: int, rec: TokenRecord, body: bytes) -> None:
        now = self.clock()
        tenant = rec.tenant_id
        if op == _MESSAGES:
            text = p.message_body(body)
            await self.ctx.ingest.write(WriteBatch(tenant, events=[(tenant, rec.device_id, now, "message", text)]))
            return
        doc = p.load_json(body)
        rows: list[Row] = []
        if op == _PROPERTIES:
            if type(doc) is not dict:
                raise p.invalid("the body must be a JSON object.")
            flatten_services(rec.device_id, doc.get("services"), now, await self.model(rec.product_id), rows)
        else:
            kids = p.parse_children(doc, self.max_children)
            owned = await self.children(rec.device_id)
            models: dict[str, ThingModel] = {}
            for child, _services in kids:
                product = owned.get(child)
                if product is None:
                    raise p.IotdaError(p.NOT_A_CHILD)
                if child not in models:
                    models[child] = await self.model(product)
            flatten_gateway_batch(kids, now, models.__getitem__, rows)
        await self.ctx.ingest.write(WriteBatch(tenant, telemetry=rows))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


class IotdaApp:
    """The ASGI app: routing, headers, body limit, error bodies. No framework on the hot path."""

    def __init__(self, service: IotdaService) -> None:
        self.service = service
        self._spec = orjson.dumps(openapi())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, body = await self._handle(scope, receive)
        except p.IotdaError as exc:
            status, body = exc.http_status, exc.body()
        except _Disconnected:
            return
        except StorageError as exc:
            log.error("iotda: storage error: %s", exc)
            status, body = 503, _error_body(SERVER_ERROR, "The hub could not store the request; retry later.")
        except Exception:
            log.exception("iotda: request failed")
            status, body = 500, _error_body(SERVER_ERROR, "Internal error of the hub.")
        headers = [(b"content-length", str(len(body)).encode())]
        if body:
            headers += _JSON
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path: str = scope["path"]
        method: str = scope["method"]
        svc = self.service
        if path.startswith(_DEVICES_PREFIX):
            rest = path[len(_DEVICES_PREFIX) :]
            i = rest.find("/sys/")
            op = _ROUTES.get(rest[i + 4 :]) if i >= 0 else None
            if op is None:
                return _not_found(path)
            if method != "POST":
                return _wrong_method(method)
            device_id = p.check_device_id(rest[:i])
            token, length, ctype = _headers(scope)
            p.check_content_type(ctype)
            self._check_length(length)
            rec = await svc.authorize(token, device_id, _client(scope))
            svc.rate_check(device_id, rec.tenant_id)
            body = await _read_body(receive, svc.max_body)
            await svc.report(op, rec, body)
            return 200, b""
        if path == "/v5/device-auth":
            if method != "POST":
                return _wrong_method(method)
            _token, length, ctype = _headers(scope)
            p.check_content_type(ctype)
            self._check_length(length)
            return 200, await svc.authenticate(await _read_body(receive, svc.max_body), _client(scope))
        if path == "/v5/openapi.json" and method in ("GET", "HEAD"):
            return 200, self._spec
        return _not_found(path)

    def _check_length(self, length: bytes | None) -> None:
        if length is None:
            return
        try:
            n = int(length)
        except ValueError:
            raise p.invalid("bad Content-Length.") from None
        if n > self.service.max_body:
            raise p.IotdaError(p.TOO_LARGE)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _headers(scope: Scope) -> tuple[str | None, bytes | None, bytes | None]:
    token: str | None = None
    length: bytes | None = None
    ctype: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"access_token":
            token = value.decode("latin-1")
        elif name == b"content-length":
            length = value
        elif name == b"content-type":
            ctype = value
    return token, length, ctype


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (IOTDA.021105) as soon as it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise p.IotdaError(p.TOO_LARGE)
            chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error_body(code: str, msg: str) -> bytes:
    return orjson.dumps({"error_code": code, "error_msg": msg})


def _not_found(path: str) -> tuple[int, bytes]:
    return 404, _error_body(p.INVALID_INPUT, f"Invalid input data. No API at {path[:200]}.")


def _wrong_method(method: str) -> tuple[int, bytes]:
    return 405, _error_body(p.INVALID_INPUT, f"Invalid input data. Method {method[:20]} is not allowed here.")


class IotdaListener:
    """The HTTPS listener (TLS 1.2/1.3, HTTP/1.0 and 1.1) serving :class:`IotdaApp`."""

    name = "iotda"

    def __init__(self, ctx: HubContext, host: str, port: int) -> None:
        assert ctx.pki is not None, "the IoTDA listener needs the hub PKI"
        self.service = IotdaService(ctx)
        self.app = IotdaApp(self.service)
        tls = ctx.pki.server_context(require_client_cert=False, ask_client_cert=False)
        guard = ctx.guard
        limits = HttpLimits.from_settings(ctx.settings, ctx.settings.iotda_max_body_bytes)
        self.server = HttpServer(
            self.app,
            host,
            port,
            ssl_context=tls,
            name="iotda",
            limits=limits,
            on_refused=lambda h, e: guard.tls_refused(h, "iotda", e),
        )
        self.port = self.server.port

    async def start(self) -> None:
        await self.service.start()
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        await self.service.stop()
