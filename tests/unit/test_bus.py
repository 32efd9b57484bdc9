from __future__ import annotations

import asyncio

import pytest

from gatehub.bus import LocalBus, subject_matches


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("t.a.status.d1", "t.a.status.d1", True),
        ("t.*.status.*", "t.a.status.d1", True),
        ("t.*.status.*", "t.a.status", False),
        ("t.>", "t.a.status.d1", True),
        ("t.>", "t", False),
        ("t.a.>", "t.b.status.d1", False),
        ("t.*", "t.a.b", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


async def test_publish_reaches_exact_and_wildcard_subscribers_only() -> None:
    bus = LocalBus()
    exact = bus.subscribe("t.a.status.d1")
    wild = bus.subscribe("t.a.>")
    other = bus.subscribe("t.b.>")
    bus.publish("t.a.status.d1", {"n": 1})
    assert (await exact.get(1)).data == {"n": 1}  # type: ignore[union-attr]
    assert (await wild.get(1)).subject == "t.a.status.d1"  # type: ignore[union-attr]
    assert await other.get(0.05) is None
    assert bus.has_subscribers("t.a.x") and not bus.has_subscribers("t.c.x")


async def test_has_subscribers_follows_subscriptions_coming_and_going() -> None:
    bus = LocalBus()
    subject = "t.a.telemetry.d1"
    assert not bus.has_subscribers(subject) and not bus.has_subscribers(subject)  # asked twice: cached
    wild = bus.subscribe("t.*.telemetry.*")
    assert bus.has_subscribers(subject)
    wild.close()
    assert not bus.has_subscribers(subject)
    exact = bus.subscribe(subject)
    assert bus.has_subscribers(subject) and not bus.has_subscribers("t.a.telemetry.d2")
    exact.close()
    assert not bus.has_subscribers(subject)


async def test_slow_subscriber_is_cut_off_not_the_others() -> None:
    bus = LocalBus()
    slow = bus.subscribe("x.>", maxsize=3)
    fast = bus.subscribe("x.>", maxsize=100)
    for i in range(10):
        bus.publish("x.y", {"i": i})
    assert slow.closed and slow.overflowed
    got = []
    while (env := await fast.get(0.01)) is not None:
        got.append(env.data["i"])
    assert got == list(range(10))
    assert not bus.has_subscribers("x.z") or fast in bus._wild  # slow one removed


async def test_request_reply_and_errors() -> None:
    bus = LocalBus()

    async def echo(subject: str, msg: dict[str, object]) -> dict[str, object]:
        return {"echo": msg["v"], "subject": subject}

    stop = bus.serve("svc.echo", echo)
    assert await bus.request("svc.echo", {"v": 7}, timeout=1) == {"echo": 7, "subject": "svc.echo"}
    with pytest.raises(ValueError):
        bus.serve("svc.echo", echo)
    stop()
    with pytest.raises(LookupError):
        await bus.request("svc.echo", {"v": 1}, timeout=1)

    async def slow(subject: str, msg: dict[str, object]) -> dict[str, object]:
        await asyncio.sleep(5)
        return {}

    bus.serve("svc.slow", slow)
    with pytest.raises(TimeoutError):
        await bus.request("svc.slow", {}, timeout=0.05)
