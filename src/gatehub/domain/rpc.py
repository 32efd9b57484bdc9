"""Server-side RPC: a call's states and the transitions between them (no I/O).

::

    QUEUED --send--> SENT --PUBACK--> DELIVERED --reply--> SUCCESSFUL
       |               |                  |
       |               +--reply-----------+--> SUCCESSFUL   (a reply may overtake its PUBACK)
       |               +--PUBACK refused--> FAILED
       +--expiration--> EXPIRED <--expiration-- SENT / DELIVERED
       +--timeout-----> TIMEOUT <--timeout----- SENT / DELIVERED

A one-way call is SUCCESSFUL once DELIVERED (nothing else will come back). A call that was
SENT or DELIVERED but whose session ended is re-sent (SENT again) when the device's gateway
reconnects, until it expires. SUCCESSFUL, TIMEOUT, EXPIRED and FAILED are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gatehub.errors import DomainError, InvalidInput


class RpcStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    SUCCESSFUL = "SUCCESSFUL"
    TIMEOUT = "TIMEOUT"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({RpcStatus.SUCCESSFUL, RpcStatus.TIMEOUT, RpcStatus.EXPIRED, RpcStatus.FAILED})
PENDING = frozenset({RpcStatus.QUEUED, RpcStatus.SENT, RpcStatus.DELIVERED})

TRANSITIONS: dict[RpcStatus, frozenset[RpcStatus]] = {
    RpcStatus.QUEUED: frozenset(
        {RpcStatus.SENT, RpcStatus.EXPIRED, RpcStatus.TIMEOUT, RpcStatus.FAILED, RpcStatus.SUCCESSFUL}
    ),
    RpcStatus.SENT: frozenset(
        {
            RpcStatus.SENT,
            RpcStatus.DELIVERED,
            RpcStatus.SUCCESSFUL,
            RpcStatus.EXPIRED,
            RpcStatus.TIMEOUT,
            RpcStatus.FAILED,
        }
    ),
    RpcStatus.DELIVERED: frozenset(
        {RpcStatus.SENT, RpcStatus.SUCCESSFUL, RpcStatus.EXPIRED, RpcStatus.TIMEOUT, RpcStatus.FAILED}
    ),
}


def can_move(old: RpcStatus, new: RpcStatus) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def sources_of(new: RpcStatus) -> list[RpcStatus]:
    """The states from which ``new`` may be reached (for conditional updates)."""
    return [s for s, targets in TRANSITIONS.items() if new in targets]


METHOD_MAX = 255
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 100, 600_000


@dataclass(slots=True)
class RpcRequest:
    method: str
    params: Any
    timeout_ms: int
    oneway: bool
    persistent: bool
    expiration: int  # ms since the epoch; the call is EXPIRED after it if not finished

    @staticmethod
    def build(
        method: Any,
        params: Any,
        timeout_ms: int | None,
        oneway: bool,
        persistent: bool,
        expiration: int | None,
        *,
        now: int,
        default_timeout_ms: int,
        default_expiration_ms: int,
    ) -> RpcRequest:
        if not isinstance(method, str) or not method or len(method) > METHOD_MAX:
            raise InvalidInput(f"method must be a non-empty string of at most {METHOD_MAX} characters")
        timeout = default_timeout_ms if timeout_ms is None else timeout_ms
        if not TIMEOUT_MIN_MS <= timeout <= TIMEOUT_MAX_MS:
            raise InvalidInput(f"timeout must be {TIMEOUT_MIN_MS}-{TIMEOUT_MAX_MS} ms")
        if expiration is None:
            # a non-persistent call ends TIMEOUT at its timeout (its caller waits that long); the
            # later expiration only cleans up calls whose caller went away (a restart)
            expiration = now + (default_expiration_ms if persistent else 2 * timeout)
        elif expiration <= now:
            raise InvalidInput("expirationTime is in the past")
        return RpcRequest(method, params, timeout, oneway, persistent, expiration)


@dataclass(slots=True)
class RpcCall:
    id: str
    tenant_id: str
    device_id: str
    request_id: int
    method: str
    params: Any
    oneway: bool
    persistent: bool
    status: RpcStatus
    timeout_ms: int
    expiration: int
    response: Any
    created_at: int
    updated_at: int

    def public(self) -> dict[str, Any]:
        return {
            "rpcId": self.id,
            "deviceId": self.device_id,
            "requestId": self.request_id,
            "method": self.method,
            "params": self.params,
            "oneway": self.oneway,
            "persistent": self.persistent,
            "status": self.status.value,
            "timeout": self.timeout_ms,
            "expirationTime": self.expiration,
            "response": self.response,
            "createdTime": self.created_at,
            "updatedTime": self.updated_at,
        }


class RpcTimeout(DomainError):
    """No reply (or delivery, for a one-way call) within the call's timeout."""

    code = "rpc_timeout"
    http_status = 504
