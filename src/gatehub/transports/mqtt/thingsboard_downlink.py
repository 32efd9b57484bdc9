"""What the hub sends to ThingsBoard clients: server-side RPC and shared attribute pushes.

The use cases live in ``services.rpc`` and ``services.attributes``; this module is the ThingsBoard
side of their ports. A call or a push goes to the session that serves the device now: the
device's own session (``v1/devices/me/rpc/request/{id}``, ``v1/devices/me/attributes``) if it
subscribed there, or its gateway's (``v1/gateway/rpc``, ``v1/gateway/attributes``) once the
gateway has connected that sub-device in this session and subscribed to the topic. Both go at
QoS 1. After a reconnect, the shared attributes changed while the device was away (since it went
offline) are pushed when the gateway subscribes again or the sub-device is connected again.
Client-side RPC (the device asks the hub) is answered here: ``getSessionLimits`` and
``getCurrentTime``; anything else is published for the applications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.model import Device
from gatehub.domain.rpc import RpcCall
from gatehub.domain.telemetry import now_ms
from gatehub.errors import NotFound
from gatehub.protocols.mqtt import SendResult
from gatehub.services.rpc import AckCallback, Route, Send
from gatehub.transports.mqtt.thingsboard_limits import RateLimits
from gatehub.transports.mqtt.thingsboard_state import (
    GW_ATTRIBUTES,
    GW_RPC,
    ME_ATTRIBUTES,
    ME_RPC_REQUEST,
    ME_RPC_RESPONSE,
    tb_state,
)

if TYPE_CHECKING:
    from gatehub.services.context import Services
    from gatehub.transports.mqtt.hub import MqttHub
    from gatehub.transports.mqtt.session import MqttSession

__all__ = ["TbDownlink"]


def _sender(session: MqttSession, topic: str, payload: bytes) -> Send:
    def send(on_ack: AckCallback) -> bool:
        res = session.send(topic, payload, 1, on_ack=on_ack)
        return res.accepted or res is SendResult.QUEUED

    return send


class TbDownlink:
    """The ThingsBoard dialect's :class:`~gatehub.services.rpc.Downlink` and
    :class:`~gatehub.services.attributes.AttributeDownlink`."""

    def __init__(self, hub: MqttHub, services: Services, limits: RateLimits) -> None:
        self.hub = hub
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.limits = limits

    # RPC --------------------------------------------------------------------------------------
    def rpc_route(self, device: Device, call: RpcCall) -> Route | None:
        hub = self.hub
        own = hub.session_for_device(device.id)
        if own is not None and tb_state(own).me_rpc:
            body = {"method": call.method, "params": call.params}
            return Route(_sender(own, f"{ME_RPC_REQUEST}{call.request_id}", orjson.dumps(body)), device.id)
        if device.parent_id:
            gw = hub.session_for_device(device.parent_id)
            if gw is not None:
                st = tb_state(gw)
                name = st.names.get(device.id)
                if st.gw_rpc and name is not None:
                    body = {
                        "device": name,
                        "data": {"id": call.request_id, "method": call.method, "params": call.params},
                    }
                    return Route(_sender(gw, GW_RPC, orjson.dumps(body)), device.parent_id)
        return None

    async def client_call(self, session: MqttSession, tenant_id: str, device_id: str, rid: str, body: Any) -> int:
        """The device asked the hub (``v1/devices/me/rpc/request/{rid}``)."""
        method = body.get("method") if isinstance(body, dict) else None
        params = body.get("params") if isinstance(body, dict) else None
        if method == "getSessionLimits":
            answer: Any = self.session_limits()
        elif method == "getCurrentTime":
            answer = {"currentTime": now_ms()}
        else:
            answer = {"error": f"no server-side handler for method {method!r}"}
            self.services.rpc.client_call(tenant_id, device_id, rid, method, params)
        session.send(f"{ME_RPC_RESPONSE}{rid}", orjson.dumps(answer), 1)
        return 0

    def session_limits(self) -> dict[str, Any]:
        """The hub's real limits, in the shape ThingsBoard's clients read."""
        s = self.settings
        lim = self.limits
        device = {"messages": "", "telemetryMessages": "", "telemetryDataPoints": lim.describe(lim.per_device)}
        return {
            "maxPayloadSize": s.mqtt_max_packet_size,
            "maxInflightMessages": s.mqtt_receive_maximum,
            "rateLimits": dict(device),
            "gatewayRateLimits": dict(device),
        }

    # shared attributes ------------------------------------------------------------------------
    async def push_attributes(self, tenant_id: str, device_id: str, body: dict[str, Any]) -> bool:
        hub = self.hub
        own = hub.session_for_device(device_id)
        if own is not None and tb_state(own).me_attrs:
            own.send(ME_ATTRIBUTES, orjson.dumps(body), 1)
            return True
        try:
            dev = await self.store.devices.get(tenant_id, device_id)
        except NotFound:
            return False
        if dev.parent_id:
            gw = hub.session_for_device(dev.parent_id)
            if gw is not None:
                st = tb_state(gw)
                name = st.names.get(device_id)
                if name is not None and st.gw_attrs:
                    gw.send(GW_ATTRIBUTES, orjson.dumps({"device": name, "data": body}), 1)
                    return True
        return False

    async def push_missed(self, session: MqttSession, device_id: str, since: int) -> None:
        """Shared attributes of ``device_id`` changed at or after ``since`` (ms) go to ``session``."""
        data = await self.services.attributes.changed_since(device_id, since)
        if not data or session.closed:
            return
        p = session.principal
        if p is not None and p.device_id == device_id:
            session.send(ME_ATTRIBUTES, orjson.dumps(data), 1)
            return
        name = tb_state(session).names.get(device_id)
        if name is not None:
            session.send(GW_ATTRIBUTES, orjson.dumps({"device": name, "data": data}), 1)
