"""RPC states and transitions (domain.rpc) and the token buckets of the ThingsBoard API."""

from __future__ import annotations

import pytest

from gatehub.domain.rpc import FINAL, RpcRequest, RpcStatus, can_move, sources_of
from gatehub.errors import InvalidInput
from gatehub.transports.mqtt.thingsboard_limits import RateLimits, TokenBucket


def test_final_states_never_move() -> None:
    for old in FINAL:
        assert not any(can_move(old, new) for new in RpcStatus)


def test_forward_paths() -> None:
    assert can_move(RpcStatus.QUEUED, RpcStatus.SENT)
    assert can_move(RpcStatus.SENT, RpcStatus.DELIVERED)
    assert can_move(RpcStatus.DELIVERED, RpcStatus.SUCCESSFUL)
    assert can_move(RpcStatus.SENT, RpcStatus.SUCCESSFUL)  # the reply overtook the PUBACK
    assert can_move(RpcStatus.DELIVERED, RpcStatus.SENT)  # re-sent after a reconnect or a retry
    assert not can_move(RpcStatus.DELIVERED, RpcStatus.QUEUED)
    assert not can_move(RpcStatus.QUEUED, RpcStatus.DELIVERED)
    assert set(sources_of(RpcStatus.DELIVERED)) == {RpcStatus.SENT}


def test_request_defaults_and_validation() -> None:
    kw = {"now": 1000, "default_timeout_ms": 10_000, "default_expiration_ms": 86_400_000}
    r = RpcRequest.build("m", None, None, False, True, None, **kw)
    assert r.timeout_ms == 10_000 and r.expiration == 1000 + 86_400_000
    r = RpcRequest.build("m", None, 500, False, False, None, **kw)
    assert r.expiration == 2000
    for bad in (("", 500, None), ("m", 50, None), ("m", 500, 999)):
        with pytest.raises(InvalidInput):
            RpcRequest.build(bad[0], None, bad[1], False, True, bad[2], **kw)


def test_token_bucket_and_limits() -> None:
    b = TokenBucket(10, 1.0)
    assert b.take(10, b.stamp) and not b.take(1, b.stamp)
    assert b.take(5, b.stamp + 0.5)
    lim = RateLimits(per_device=10, per_tenant=15, burst=1.0)
    t = 1e9
    assert lim.allow("t", "a", 10, t)
    assert not lim.allow("t", "a", 1, t)  # the device's bucket is empty
    assert lim.allow("t", "b", 5, t)
    assert not lim.allow("t", "c", 1, t)  # the tenant's bucket is empty
    assert lim.refused == 2
    assert lim.describe(10) == "10:1" and lim.describe(0) == ""
