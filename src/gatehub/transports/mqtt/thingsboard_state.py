"""What the ThingsBoard dialect keeps per session, and the rows its payloads become.

Shared by the dialect (``thingsboard``), its downlink (``thingsboard_downlink``) and the gatehub
extension topics (``thingsboard_ext``); it imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatehub.domain.telemetry import check_key
from gatehub.errors import InvalidInput
from gatehub.store.ingest import AttrRow

if TYPE_CHECKING:
    from gatehub.transports.mqtt.session import MqttSession

__all__ = [
    "GW_ATTRIBUTES",
    "GW_RPC",
    "ME_ATTRIBUTES",
    "ME_RPC_REQUEST",
    "ME_RPC_RESPONSE",
    "TbState",
    "attribute_rows",
    "tb_state",
]

GW_RPC = "v1/gateway/rpc"
GW_ATTRIBUTES = "v1/gateway/attributes"
ME_ATTRIBUTES = "v1/devices/me/attributes"
ME_RPC_REQUEST = "v1/devices/me/rpc/request/"
ME_RPC_RESPONSE = "v1/devices/me/rpc/response/"


class TbState:
    """What one session of the ThingsBoard API knows (kept in ``session.state()["tb"]``)."""

    __slots__ = (
        "bad",
        "busy",
        "devices",
        "filters",
        "gw_attrs",
        "gw_rpc",
        "held",
        "me_attrs",
        "me_rpc",
        "names",
        "since",
    )

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}  # sub-device name -> id, connected in this session
        self.names: dict[str, str] = {}  # id -> the name this gateway uses
        self.bad: set[str] = set()  # names that are not this gateway's to use (logged once)
        self.held: dict[str, str] = {}  # name -> the online gateway that keeps it (takeover refused, logged once)
        self.since: dict[str, int] = {}  # sub-devices whose missed shared attributes wait for a subscription
        self.busy = 0  # serial jobs pending: later messages queue behind them
        self.filters: set[str] = set()
        self.gw_rpc = self.gw_attrs = self.me_rpc = self.me_attrs = False

    def forget(self, device_id: str) -> str | None:
        name = self.names.pop(device_id, None)
        if name is not None:
            self.devices.pop(name, None)
        self.since.pop(device_id, None)
        return name


def tb_state(session: MqttSession) -> TbState:
    st = session.state().get("tb")
    if st is None:
        st = session.state()["tb"] = TbState()
    return st


def attribute_rows(device_id: str, scope: str, body: Any, ts: int, out: list[AttrRow]) -> None:
    if type(body) is not dict:
        raise InvalidInput("attributes must be an object")
    start = len(out)
    try:
        for k, v in body.items():
            check_key(k)
            if v is None:
                raise InvalidInput(f"attribute {k!r} is null")
            out.append((device_id, scope, k, orjson.dumps(v).decode(), ts))
    except (InvalidInput, orjson.JSONEncodeError) as exc:
        del out[start:]
        raise InvalidInput(str(exc)) from None
