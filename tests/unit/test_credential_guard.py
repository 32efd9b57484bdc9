"""The credential guard on its own: back-off growth and bound, decay, the LRU cap, lock-out,
source keys (IPv6 /64, exempt networks), admission spacing and rate-limited logging.

A fake clock and a sleep that advances it stand in for time, so the numbers are exact."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gatehub.config import Settings
from gatehub.errors import RateLimited, Unauthenticated
from gatehub.services.guard import CredentialGuard, GuardPolicy, Refusal, policy_from


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def guard(t: FakeTime, **kw: object) -> CredentialGuard:
    policy = GuardPolicy(**{"backoff_after": 3, "backoff_base": 0.1, "backoff_max": 2.0, "half_life": 60.0, **kw})  # type: ignore[arg-type]
    return CredentialGuard(policy, clock=t.clock, sleep=t.sleep)


async def test_the_delay_starts_after_a_few_failures_doubles_and_is_bounded() -> None:
    t = FakeTime()
    g = guard(t, half_life=1e9)  # no decay here
    delays = [await g.refused("10.0.0.1", "mqtt", "c1", "bad_credentials") for _ in range(10)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert delays[8:] == [2.0, 2.0]  # backoff_max
    assert g.failures[("mqtt", "bad_credentials")] == 10
    # another source is not affected
    assert await g.refused("10.0.0.2", "mqtt", "c1", "bad_credentials") == 0.0


async def test_failures_decay_and_the_sweep_forgets_the_source() -> None:
    t = FakeTime()
    g = guard(t)
    for _ in range(8):
        await g.refused("10.0.0.1", "rest", "k", "bad_credentials")
    assert g.failures_of("10.0.0.1") > 7.5
    assert g.backed_off() == 1
    t.now += 60.0  # one half-life
    assert 3.8 < g.failures_of("10.0.0.1") < 4.1
    t.now += 600.0
    assert g.failures_of("10.0.0.1") < 0.01
    assert g.backed_off() == 0
    assert await g.refused("10.0.0.1", "rest", "k", "bad_credentials") == 0.0  # forgiven
    t.now += 600.0
    g.sweep()
    assert g.tracked() == 0


async def test_success_does_not_wipe_the_back_off() -> None:
    """Otherwise one valid credential would reset the back-off between guesses."""
    t = FakeTime()
    g = guard(t, half_life=1e9)
    for _ in range(5):
        await g.refused("10.0.0.1", "mqtt", "x", "bad_credentials")
    g.succeeded("10.0.0.1")
    assert await g.refused("10.0.0.1", "mqtt", "x", "bad_credentials") == pytest.approx(0.4)


async def test_unscored_failures_are_counted_but_never_delay() -> None:
    t = FakeTime()
    g = guard(t)
    for _ in range(20):
        assert await g.refused("10.0.0.1", "iotda", "d", "expired_token", score=False) == 0.0
    assert g.failures[("iotda", "expired_token")] == 20
    assert await g.admit("10.0.0.1", "iotda") is None
    assert t.slept == []


async def test_memory_is_bounded_least_recently_failed_first() -> None:
    t = FakeTime()
    g = guard(t, max_sources=16, half_life=1e9)
    await g.refused("10.1.0.0", "mqtt", "x", "bad_credentials")
    for i in range(1, 40):
        await g.refused(f"10.1.0.{i}", "mqtt", "x", "bad_credentials")
        await g.refused("10.1.0.0", "mqtt", "x", "bad_credentials")  # keeps failing: stays tracked
    assert g.tracked() == 16
    assert g.failures_of("10.1.0.0") > 30
    assert g.failures_of("10.1.0.1") == 0.0  # dropped long ago
    assert g.failures_of("10.1.0.39") == pytest.approx(1.0, abs=0.01)


async def test_lock_out_refuses_unchecked_then_ends() -> None:
    t = FakeTime()
    g = guard(t, lockout_after=6, lockout_seconds=300.0, half_life=1e9)
    for _ in range(6):
        assert await g.admit("10.0.0.9", "mqtt") is None
        await g.refused("10.0.0.9", "mqtt", "x", "bad_credentials")
    assert g.locked_out() == 1
    slept = len(t.slept)
    assert await g.admit("10.0.0.9", "mqtt") is Refusal.LOCKED_OUT
    assert len(t.slept) == slept  # refused at once, not delayed
    assert g.failures[("mqtt", "locked_out")] == 1
    # the check helper turns it into RateLimited without running the check
    ran: list[bool] = []

    async def attempt() -> str:
        ran.append(True)
        return "ok"

    with pytest.raises(RateLimited):
        await g.check("10.0.0.9", "rest", "k", attempt)
    assert ran == []
    t.now += 301.0
    assert g.locked_out() == 0
    assert await g.check("10.0.0.9", "rest", "k", attempt) == "ok"


async def test_no_lock_out_by_default() -> None:
    t = FakeTime()
    g = CredentialGuard(GuardPolicy(backoff_base=0.0), clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        await g.refused("10.0.0.9", "mqtt", "x", "bad_credentials")
    assert g.locked_out() == 0
    assert await g.admit("10.0.0.9", "mqtt") is None


async def test_parallel_attempts_of_a_backed_off_source_are_spaced_and_capped() -> None:
    """Many connections at once from one backed-off source are checked one per delay; those
    that would wait longer than backoff_max are refused without a check."""
    t = FakeTime()
    g = CredentialGuard(
        GuardPolicy(backoff_after=2, backoff_base=0.5, backoff_max=2.0, half_life=1e9), clock=t.clock, sleep=_no_sleep
    )
    for _ in range(3):
        await g.refused("10.0.0.5", "mqtt", "x", "bad_credentials")  # delay now 0.5 s
    # the clock does not move: all arrive at once
    results = [await g.admit("10.0.0.5", "mqtt") for _ in range(8)]
    admitted = [r for r in results if r is None]
    refused = [r for r in results if r is Refusal.BACKED_OFF]
    # waits 0.5, 1.0, 1.5 and 2.0 s (= backoff_max); the fifth would wait 2.5 s: refused unchecked
    assert len(admitted) == 4 and len(refused) == 4, results
    assert g.failures[("mqtt", "backed_off")] == 4


async def _no_sleep(_seconds: float) -> None:
    return None


def test_sources_ipv6_by_prefix_and_ipv4_mapped() -> None:
    g = CredentialGuard(GuardPolicy())
    assert g.source_of("2001:db8:1:2:aaaa::1") == g.source_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert g.source_of("2001:db8:1:3::1") != g.source_of("2001:db8:1:2::1")
    assert g.source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert g.source_of("192.0.2.7") == "192.0.2.7"
    assert g.source_of(None) == "?"
    g24 = CredentialGuard(GuardPolicy(ipv4_prefix=24, ipv6_prefix=48))
    assert g24.source_of("192.0.2.7") == "192.0.2.0/24"
    assert g24.source_of("2001:db8:1:2::1") == "2001:db8:1::/48"


async def test_an_exempt_network_is_logged_and_counted_never_delayed() -> None:
    t = FakeTime()
    g = guard(t, exempt=("10.9.0.0/16",))
    for _ in range(20):
        assert await g.refused("10.9.3.4", "mqtt", "x", "bad_credentials") == 0.0
        assert await g.admit("10.9.3.4", "mqtt") is None
    assert g.failures[("mqtt", "bad_credentials")] == 20
    assert g.backed_off() == 0


async def test_refusals_are_logged_rate_limited_with_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    g = CredentialGuard(
        GuardPolicy(backoff_base=0.0, log_per_source=3, log_interval=60.0), clock=t.clock, sleep=t.sleep
    )
    with caplog.at_level(logging.INFO, logger="gatehub.guard"):
        for _ in range(200):
            await g.refused("10.0.0.1", "rest", "key ghk_abc_…", "bad_credentials")
        g.sweep()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0] == "refused rest from 10.0.0.1: bad_credentials (key ghk_abc_…)"
    assert lines[3] == "197 more refusals from 10.0.0.1 suppressed"
    assert g.failures[("rest", "bad_credentials")] == 200


def test_tls_refusals_are_labelled_counted_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    import ssl

    g = CredentialGuard(GuardPolicy(log_per_source=2))
    exc = ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
    with caplog.at_level(logging.INFO, logger="gatehub.guard"):
        for _ in range(10):
            assert g.tls_refused("10.0.0.1", "mqtts", exc) == "unknown_ca"
        g.tls_refused("10.0.0.1", "grpc", ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_REVOKED] revoked"))
        g.sweep()
    # the client refusing the hub's certificate is not a refused client certificate
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:1006)")
    assert g.tls_refused("10.0.0.2", "iotda", alert) == "client_refused_server_certificate"
    assert g.tls_refusals[("mqtts", "unknown_ca")] == 10
    assert g.tls_refusals[("grpc", "revoked")] == 1
    lines = [r.getMessage() for r in caplog.records]
    # 10.0.0.1: two lines, then one summary of the 9 suppressed; then 10.0.0.2's one line
    assert len(lines) == 4, lines
    assert "unknown_ca" in lines[0] and lines[2] == "9 more refused TLS handshakes from 10.0.0.1 suppressed", lines
    assert "client_refused_server_certificate" in lines[3], lines


async def test_check_runs_the_attempt_and_delays_its_refusal() -> None:
    t = FakeTime()
    g = guard(t, half_life=1e9)

    async def wrong() -> None:
        raise Unauthenticated("no such key")

    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await g.check("10.0.0.1", "rest", "k", wrong)
    assert t.slept == pytest.approx([0.1, 0.2])


def test_policy_from_settings() -> None:
    s = Settings(
        guard_backoff_after=7, guard_lockout_after=20, guard_lockout_minutes=2, guard_exempt_networks=["10.0.0.0/8"]
    )
    p = policy_from(s)
    assert (p.backoff_after, p.lockout_after, p.lockout_seconds, p.exempt) == (7, 20, 120.0, ("10.0.0.0/8",))
    assert policy_from(Settings()).lockout_after == 0  # lock-out is off by default
    with pytest.raises(ValueError):
        Settings(guard_exempt_networks=["not-a-net"])


async def test_a_delayed_refusal_does_not_block_the_loop() -> None:
    """The delay is an asyncio.sleep in the caller's task: other work goes on meanwhile."""
    g = CredentialGuard(GuardPolicy(backoff_after=0, backoff_base=0.3, backoff_max=0.3))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await g.refused("10.0.0.1", "mqtt", "x", "bad_credentials") == pytest.approx(0.3)
    assert loop.time() - started >= 0.29
    task.cancel()
    assert ticks >= 10
