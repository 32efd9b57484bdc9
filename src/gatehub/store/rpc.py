"""Server-side RPC records (the ``rpc_calls`` table): persistent calls, their states, replies.

Every call is a row, persistent or not, so that its state can be read back. State changes are
conditional updates (``WHERE status IN (states that may move there)``): two nodes or a reply
racing a timeout never move a call backwards, and the caller learns whether it won.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update

from gatehub.domain.rpc import PENDING, RpcCall, RpcRequest, RpcStatus, sources_of
from gatehub.domain.telemetry import now_ms
from gatehub.errors import NotFound
from gatehub.store.db import Database
from gatehub.store.tables import rpc_calls


def _call(r: Any) -> RpcCall:
    return RpcCall(
        id=r.id,
        tenant_id=r.tenant_id,
        device_id=r.device_id,
        request_id=r.request_id,
        method=r.method,
        params=orjson.loads(r.params),
        oneway=r.oneway,
        persistent=r.persistent,
        status=RpcStatus(r.status),
        timeout_ms=r.timeout_ms,
        expiration=r.expiration,
        response=orjson.loads(r.response) if r.response is not None else None,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


class RpcCalls:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()  # request ids are allocated per device: one creator at a time

    async def create(self, tenant_id: str, device_id: str, req: RpcRequest) -> RpcCall:
        now = now_ms()
        rpc_id = str(uuid.uuid4())
        async with self._lock, self.db.begin() as c:
            top = (
                await c.execute(select(func.max(rpc_calls.c.request_id)).where(rpc_calls.c.device_id == device_id))
            ).scalar_one()
            request_id = int(top or 0) + 1
            await c.execute(
                insert(rpc_calls).values(
                    id=rpc_id,
                    tenant_id=tenant_id,
                    device_id=device_id,
                    request_id=request_id,
                    method=req.method,
                    params=orjson.dumps(req.params).decode(),
                    oneway=req.oneway,
                    persistent=req.persistent,
                    status=RpcStatus.QUEUED.value,
                    timeout_ms=req.timeout_ms,
                    expiration=req.expiration,
                    response=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        return RpcCall(
            rpc_id,
            tenant_id,
            device_id,
            request_id,
            req.method,
            req.params,
            req.oneway,
            req.persistent,
            RpcStatus.QUEUED,
            req.timeout_ms,
            req.expiration,
            None,
            now,
            now,
        )

    async def get(self, tenant_id: str | None, rpc_id: str) -> RpcCall:
        q = select(rpc_calls).where(rpc_calls.c.id == rpc_id)
        if tenant_id is not None:
            q = q.where(rpc_calls.c.tenant_id == tenant_id)
        async with self.db.connect() as c:
            r = (await c.execute(q)).first()
        if r is None:
            raise NotFound(f"RPC {rpc_id} not found")
        return _call(r)

    async def list_for_device(
        self, device_id: str, status: RpcStatus | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[RpcCall], int]:
        cond = [rpc_calls.c.device_id == device_id]
        if status is not None:
            cond.append(rpc_calls.c.status == status.value)
        async with self.db.connect() as c:
            total = (await c.execute(select(func.count()).select_from(rpc_calls).where(*cond))).scalar_one()
            rows = (
                await c.execute(
                    select(rpc_calls).where(*cond).order_by(rpc_calls.c.created_at.desc()).offset(offset).limit(limit)
                )
            ).all()
        return [_call(r) for r in rows], int(total)

    async def move(self, rpc_id: str, new: RpcStatus, response: Any = None, *, with_response: bool = False) -> bool:
        """Move a call to ``new`` if its current state allows; True when this call moved it."""
        values: dict[str, Any] = {"status": new.value, "updated_at": now_ms()}
        if with_response:
            values["response"] = orjson.dumps(response).decode()
        async with self.db.begin() as c:
            res = await c.execute(
                update(rpc_calls)
                .where(rpc_calls.c.id == rpc_id, rpc_calls.c.status.in_([s.value for s in sources_of(new)]))
                .values(**values)
            )
        return bool(res.rowcount)

    async def find_pending(self, device_id: str, request_id: int) -> RpcCall | None:
        """The unfinished call with this request id (what a device's reply answers)."""
        async with self.db.connect() as c:
            r = (
                await c.execute(
                    select(rpc_calls).where(
                        rpc_calls.c.device_id == device_id,
                        rpc_calls.c.request_id == request_id,
                        rpc_calls.c.status.in_([s.value for s in PENDING]),
                    )
                )
            ).first()
        return None if r is None else _call(r)

    async def pending_for(self, device_ids: list[str], now: int) -> list[RpcCall]:
        """Unfinished, unexpired calls to these devices, oldest first (to deliver on reconnect)."""
        if not device_ids:
            return []
        out: list[RpcCall] = []
        async with self.db.connect() as c:
            for i in range(0, len(device_ids), 500):
                rows = (
                    await c.execute(
                        select(rpc_calls).where(
                            rpc_calls.c.device_id.in_(device_ids[i : i + 500]),
                            rpc_calls.c.status.in_([s.value for s in PENDING]),
                            rpc_calls.c.expiration > now,
                        )
                    )
                ).all()
                out.extend(_call(r) for r in rows)
        out.sort(key=lambda x: (x.created_at, x.request_id))
        return out

    async def expire(self, now: int) -> list[RpcCall]:
        """Move every unfinished call whose expiration passed to EXPIRED; returns them."""
        async with self.db.begin() as c:
            rows = (
                await c.execute(
                    select(rpc_calls).where(
                        rpc_calls.c.status.in_([s.value for s in PENDING]), rpc_calls.c.expiration <= now
                    )
                )
            ).all()
            if not rows:
                return []
            await c.execute(
                update(rpc_calls)
                .where(
                    rpc_calls.c.id.in_([r.id for r in rows]),
                    rpc_calls.c.status.in_([s.value for s in PENDING]),
                )
                .values(status=RpcStatus.EXPIRED.value, updated_at=now)
            )
        out = [_call(r) for r in rows]
        for x in out:
            x.status = RpcStatus.EXPIRED
        return out
