"""Plain broker semantics seen by paho v5 clients: $-topics, shared subscriptions and the MQTT 5
subscription options (noLocal, retainAsPublished, retainHandling, subscription identifiers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.mqtt_helpers import V5, V311, Paho, mqtt_node, sub_id_props

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_dollar_topics_not_matched_by_leading_wildcards(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("all") as all_, Paho("sys") as sys_, Paho("pub") as pub:
            await all_.connect(h.port)
            await sys_.connect(h.port)
            await pub.connect(h.port)
            await all_.subscribe("#", 1)
            await all_.subscribe("+/status", 1)
            await sys_.subscribe("$SYS/#", 1)
            await pub.publish("$SYS/status", b"internal", 1)
            assert [(m.topic, m.payload) for m in await sys_.expect(1)] == [("$SYS/status", b"internal")]
            await all_.nothing(0.2)
            await pub.publish("dev/status", b"ok", 1)
            got = await all_.expect(1)  # both filters match: one delivery
            assert [m.topic for m in got] == ["dev/status"]
            await all_.nothing(0.2)
            for c in (all_, sys_, pub):
                await c.disconnect()


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])
async def test_shared_subscription_splits_the_load(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with (
            Paho("w1", version) as w1,
            Paho("w2", version) as w2,
            Paho("watch", version) as watch,
            Paho("pub", version) as pub,
        ):
            for c in (w1, w2, watch, pub):
                await c.connect(h.port)
            assert await w1.subscribe("$share/workers/jobs/+", 1) == [1]
            assert await w2.subscribe("$share/workers/jobs/+", 1) == [1]
            await watch.subscribe("jobs/+", 1)
            for i in range(20):
                await pub.publish(f"jobs/{i}", str(i).encode(), 1)
            assert len(await watch.expect(20)) == 20
            n1 = w1.messages.qsize()
            got = []
            while not w1.messages.empty():
                got.append(w1.messages.get_nowait().payload)
            got += [m.payload for m in await w2.expect(20 - n1)]
            assert sorted(got, key=int) == [str(i).encode() for i in range(20)]  # each once, in one member
            assert 0 < n1 < 20  # both members got some
            await w1.nothing(0.2)
            await w2.nothing(0.1)
            # one member gone: the other gets everything
            await w1.disconnect()
            for i in range(5):
                await pub.publish(f"jobs/x{i}", b"solo", 1)
            assert len(await w2.expect(5)) == 5
            for c in (w2, watch, pub):
                await c.disconnect()


async def test_no_local(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("me") as me, Paho("other") as other:
            await me.connect(h.port)
            await other.connect(h.port)
            await me.subscribe("chat", 1, noLocal=True)
            await me.publish("chat", b"mine", 1)
            await me.nothing(0.3)
            await other.publish("chat", b"theirs", 1)
            assert [m.payload for m in await me.expect(1)] == [b"theirs"]
            await me.disconnect()
            await other.disconnect()


async def test_retain_as_published(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("rap") as rap, Paho("plain") as plain, Paho("pub") as pub:
            for c in (rap, plain, pub):
                await c.connect(h.port)
            await rap.subscribe("r/#", 1, retainAsPublished=True)
            await plain.subscribe("r/#", 1)
            await pub.publish("r/1", b"kept", 1, retain=True)
            assert [(m.payload, m.retain) for m in await rap.expect(1)] == [(b"kept", True)]
            assert [(m.payload, m.retain) for m in await plain.expect(1)] == [(b"kept", False)]
            for c in (rap, plain, pub):
                await c.disconnect()


async def test_retain_handling(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("pub") as pub, Paho("s") as s:
            await pub.connect(h.port)
            await pub.publish("rh/a", b"A", 1, retain=True)
            await s.connect(h.port)
            # 0: send retained on every subscribe
            await s.subscribe("rh/#", 1, retainHandling=0)
            assert [m.payload for m in await s.expect(1)] == [b"A"]
            await s.subscribe("rh/#", 1, retainHandling=0)
            assert [m.payload for m in await s.expect(1)] == [b"A"]
            # 1: only if the subscription is new
            await s.subscribe("rh/#", 1, retainHandling=1)
            await s.nothing(0.3)
            await s.subscribe("rh/+", 1, retainHandling=1)
            assert [(m.payload, m.retain) for m in await s.expect(1)] == [(b"A", True)]
            # 2: never
            await s.subscribe("+/a", 1, retainHandling=2)
            await s.nothing(0.3)
            await pub.disconnect()
            await s.disconnect()


async def test_subscription_identifiers(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("s") as s, Paho("pub") as pub:
            await s.connect(h.port)
            await pub.connect(h.port)
            await s.subscribe("ids/+", 1, props=sub_id_props(7))
            await s.subscribe("ids/#", 1, props=sub_id_props(42))
            await s.subscribe("ids/none", 1)
            await pub.publish("ids/x", b"x", 1)
            (m,) = await s.expect(1)
            assert sorted(m.properties.SubscriptionIdentifier) == [7, 42]
            await pub.publish("ids/none", b"n", 1)
            (m,) = await s.expect(1)  # one delivery; the identifiers of the matching subscriptions
            assert sorted(m.properties.SubscriptionIdentifier) == [7, 42]
            await pub.publish("ids/a/b", b"deep", 1)
            (m,) = await s.expect(1)
            assert m.properties.SubscriptionIdentifier == [42]
            await s.nothing(0.2)
            await s.disconnect()
            await pub.disconnect()
