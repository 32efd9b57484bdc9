"""What the Alink dialect keeps per session, and what its handler modules use of the dialect.

``alink_gateway`` (topology, registration, sub-device login) and ``alink_things`` (thing-model
traffic, topology notices) work on an :class:`AlinkCore`; ``alink.AlinkDialect`` is the one that
implements it and imports them, so they never import the dialect back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gatehub.config import Settings
    from gatehub.domain.thingmodel import ThingModel
    from gatehub.services.takeover import SubdeviceTakeover
    from gatehub.services.things import ThingService
    from gatehub.store import Store, WriteBatch
    from gatehub.transports.mqtt.hub import MqttHub
    from gatehub.transports.mqtt.session import MqttSession

__all__ = ["AlinkCore", "AlinkState", "alink_session", "alink_state"]


class AlinkState:
    """What one Link SDK session is (kept in ``session.state()["alink"]``)."""

    __slots__ = ("active", "device_id", "device_name", "is_gateway", "product_id", "tenant_id")

    def __init__(
        self, tenant_id: str, device_id: str, product_id: str, device_name: str, is_gateway: bool, active: bool
    ) -> None:
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.product_id = product_id
        self.device_name = device_name
        self.is_gateway = is_gateway
        # the session speaks Alink: it signed its CONNECT the Link SDK's way, or it used an Alink
        # topic. Only such sessions get what the hub pushes on Alink topics (topology notices,
        # service calls): a gateway on another API (ThingsBoard) must never see /sys/... messages.
        self.active = active


def alink_state(session: MqttSession) -> AlinkState | None:
    st: AlinkState | None = session.state().get("alink")
    return st


def alink_session(session: MqttSession | None) -> AlinkState | None:
    """The Alink state of a session that speaks Alink (see ``AlinkState.active``), else None."""
    st = alink_state(session) if session is not None else None
    return st if st is not None and st.active else None


class AlinkCore(Protocol):
    """The dialect as its handler modules see it."""

    hub: MqttHub
    store: Store
    settings: Settings
    skew_ms: int
    thing_service: ThingService
    takeover: SubdeviceTakeover
    logged: dict[str, dict[tuple[str, str], str]]  # gateway id -> {(pk, dn): sub-device id}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def next_id(self) -> str: ...

    async def model(self, tenant_id: str, product_id: str) -> ThingModel: ...

    def session_of(self, device_id: str) -> MqttSession | None: ...

    def login(self, gateway_id: str, pk: str, dn: str, device_id: str) -> None: ...

    def logout(self, gateway_id: str, device_id: str) -> bool: ...

    def reply(self, session: MqttSession, topic: str, rid: str, code: int, data: Any = None, msg: str = "") -> None: ...

    def commit(self, batch: WriteBatch) -> asyncio.Future[Any]: ...

    def reply_after(
        self, fut: asyncio.Future[Any], session: MqttSession, raw: str, rid: str, data: Any = None
    ) -> asyncio.Future[Any]: ...
