"""Thing models and thing-model service calls, for every dialect that has them.

- :class:`ThingModels`: one cache of compiled thing models per product, used by the Alink dialect
  (property and event posts, service calls) and the IoTDA API (reported properties). An entry is
  dropped when the product changes (``catalog.product`` on the bus); the cache is bounded.
- :class:`ThingService`: services (``thing.service.{identifier}``) and property sets invoked by
  the REST API. The input is checked against the model, the call is an RPC row with its states
  (shared with :class:`~gatehub.services.rpc.RpcService`: same table, same events), and it goes out
  through the first :class:`ServiceDownlink` that reaches the device (today: the Alink dialect,
  to the device's own session or its gateway's after the sub-device logged in). The device's
  reply is checked against the service's output parameters.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from gatehub.bus import Bus
from gatehub.config import Settings
from gatehub.domain.model import Device
from gatehub.domain.rpc import RpcCall, RpcRequest, RpcStatus, RpcTimeout
from gatehub.domain.telemetry import now_ms
from gatehub.domain.thingmodel import EMPTY, ThingModel, ThingModelError, compile_thing_model
from gatehub.errors import Conflict, DomainError, GatehubError, InvalidInput, NotFound, StorageError, Unavailable
from gatehub.loop import stop_task
from gatehub.services.rpc import RpcService, Send
from gatehub.store import Store

__all__ = [
    "PROPERTY_SET",
    "REPLY_OK",
    "ServiceDownlink",
    "ServiceFailed",
    "ServiceResult",
    "ThingModels",
    "ThingService",
]

log = logging.getLogger(__name__)

PROPERTY_SET = "property/set"
REPLY_OK = 200  # the device's reply code for success (Alink)
REPLY_PARAM_ERROR = 460  # what a reply that does not fit the model is recorded as (Alink)
_CACHE_MAX = 10_000


class ThingModels:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self._models: dict[str, tuple[str | None, ThingModel]] = {}  # product -> (its tenant, model)
        self._malformed: set[str] = set()  # products whose model was refused (warned once)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="thing-models")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def get(self, tenant_id: str | None, product_id: str) -> ThingModel:
        """The compiled model of a product; NotFound for an unknown product (of ``tenant_id``,
        when given), ThingModelError for a malformed model."""
        hit = self._models.get(product_id)
        if hit is not None:
            owner, m = hit
            if tenant_id is None or owner == tenant_id:
                return m
            raise NotFound(f"product {product_id} not found")
        prod = await self.store.catalog.get_product(tenant_id, product_id)
        m = compile_thing_model(prod.thing_model)
        self._keep(product_id, prod.tenant_id, m)
        return m

    def _keep(self, product_id: str, tenant_id: str | None, model: ThingModel) -> None:
        if len(self._models) >= _CACHE_MAX:
            self._models.clear()
        self._models[product_id] = (tenant_id, model)

    async def lenient(self, product_id: str) -> ThingModel:
        """The model, or the empty one (nothing is checked) for an unknown product or a malformed
        model (logged); a storage failure still raises."""
        try:
            return await self.get(None, product_id)
        except NotFound:
            return EMPTY
        except GatehubError as exc:
            if isinstance(exc, StorageError):
                raise
            if product_id not in self._malformed:
                log.warning("product %s has a malformed thing model (%s); not validating against it", product_id, exc)
                if len(self._malformed) >= _CACHE_MAX:
                    self._malformed.clear()
                self._malformed.add(product_id)
            return EMPTY

    def forget(self, product_id: str | None = None) -> None:
        if product_id is None:
            self._models.clear()
            self._malformed.clear()
        else:
            self._models.pop(product_id, None)
            self._malformed.discard(product_id)

    async def _watch(self) -> None:
        while True:
            sub = self.bus.subscribe("catalog.product", maxsize=10_000)
            async for env in sub:
                self.forget(str(env.data.get("productId")))
            self.forget()  # fell behind: forget everything


@dataclass(slots=True)
class ServiceResult:
    call: RpcCall
    code: int | None = None  # the device's reply code (None: no reply yet)
    data: Any = None
    message: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rpcId": self.call.id, "status": self.call.status.value}
        if self.code is not None:
            out.update(code=self.code, data=self.data, message=self.message)
        return out


class ServiceFailed(DomainError):
    """The device answered with data that does not fit the service's output parameters."""

    code = "thing_model"
    http_status = 502


class ServiceDownlink(Protocol):
    def service_route(self, device: Device, identifier: str, request_id: int, method: str, params: Any) -> Send | None:
        """How to send a service call to ``device`` now, or None when no session of this dialect
        serves it."""
        ...


class ThingService:
    def __init__(self, settings: Settings, models: ThingModels, rpc: RpcService) -> None:
        self.settings = settings
        self.models = models
        self.rpc = rpc
        self.calls = rpc.calls
        self.downlinks: list[ServiceDownlink] = []
        self.waiters: dict[tuple[str, int], asyncio.Future[ServiceResult]] = {}

    def add_downlink(self, downlink: ServiceDownlink) -> None:
        self.downlinks.append(downlink)

    async def stop(self) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.cancel()
        self.waiters.clear()

    async def call(
        self, device: Device, identifier: str, params: Any, timeout_ms: int | None = None, wait: bool = True
    ) -> ServiceResult:
        if not self.downlinks:
            raise Unavailable(
                "thing-model services need the MQTT listener: mqtt_port, mqtts_port and mqtt_ws_port are all -1"
            )
        if not identifier or len(identifier) > 128 or "/" in identifier.replace(PROPERTY_SET, ""):
            raise InvalidInput(f"not a service identifier: {identifier!r}")
        params = {} if params is None else params
        model = await self.models.get(device.tenant_id, device.product_id)
        if identifier == PROPERTY_SET:
            model.check_set(params)
        else:
            model.check_service(identifier, params)
        method = "thing.service.property.set" if identifier == PROPERTY_SET else f"thing.service.{identifier}"
        s = self.settings
        req = RpcRequest.build(
            method,
            params,
            timeout_ms,
            False,
            False,
            None,
            now=now_ms(),
            default_timeout_ms=s.rpc_default_timeout_ms,
            default_expiration_ms=s.rpc_default_expiration_ms,
        )
        call = await self.calls.create(device.tenant_id, device.id, req)
        self.rpc.publish(call)
        send = self._route(device, identifier, call.request_id, method, params)
        if send is None:
            await self._end(call, RpcStatus.FAILED, {"error": "device offline"})
            raise Conflict(
                f"device {device.id} is offline: not connected, or not logged in through its gateway",
                code="device_offline",
            )
        key = (device.id, call.request_id)
        fut: asyncio.Future[ServiceResult] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        await self.calls.move(call.id, RpcStatus.SENT)
        call.status = RpcStatus.SENT
        self.rpc.publish(call)
        send(lambda code: self.rpc.spawn(self._acked(call, code)))
        if not wait:
            self._forget_later(key, fut, req.timeout_ms)
            return ServiceResult(call)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), req.timeout_ms / 1000)
        except TimeoutError:
            await self._end(call, RpcStatus.TIMEOUT)
            raise RpcTimeout(f"no reply from device {device.id} within {req.timeout_ms} ms") from None
        finally:
            if self.waiters.get(key) is fut:
                del self.waiters[key]

    def _route(self, device: Device, identifier: str, request_id: int, method: str, params: Any) -> Send | None:
        for d in self.downlinks:
            send = d.service_route(device, identifier, request_id, method, params)
            if send is not None:
                return send
        return None

    def _forget_later(self, key: tuple[str, int], fut: asyncio.Future[ServiceResult], timeout_ms: int) -> None:
        def forget() -> None:
            if self.waiters.get(key) is fut:
                del self.waiters[key]

        asyncio.get_running_loop().call_later(timeout_ms / 1000 * 2, forget)

    async def _acked(self, call: RpcCall, code: int) -> None:
        if code < 0x80 and await self.calls.move(call.id, RpcStatus.DELIVERED):
            call.status = RpcStatus.DELIVERED
            self.rpc.publish(call)

    async def _end(self, call: RpcCall, status: RpcStatus, response: Any = None) -> None:
        if await self.calls.move(call.id, status, response, with_response=response is not None):
            call.status = status
            call.response = response
            self.rpc.publish(call)

    async def reply(
        self,
        tenant_id: str,
        device_id: str,
        product_id: str,
        identifier: str,
        request_id: int,
        code: int,
        data: Any,
        message: str | None,
    ) -> None:
        """A device answered service call ``request_id`` of ``identifier`` with ``code``."""
        call = await self.calls.find_pending(device_id, request_id)
        if call is None:
            log.info("reply from %s to unknown or finished service call %s", device_id, request_id)
            return
        result = ServiceResult(call, code, data, message)
        fut = self.waiters.get((device_id, request_id))
        if code == REPLY_OK and identifier != PROPERTY_SET:
            model = await self.models.get(tenant_id, product_id)
            try:
                model.check_service(identifier, data, output=True, where="data")
            except ThingModelError as exc:
                await self._end(call, RpcStatus.FAILED, {"code": REPLY_PARAM_ERROR, "message": exc.message})
                if fut is not None and not fut.done():
                    fut.set_exception(ServiceFailed(f"the device's reply does not fit the thing model: {exc.message}"))
                return
        await self._end(call, RpcStatus.SUCCESSFUL, {"code": code, "data": data, "message": message})
        if fut is not None and not fut.done():
            fut.set_result(result)
