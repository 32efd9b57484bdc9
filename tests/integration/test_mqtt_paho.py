"""Interop with paho-mqtt 2.x on MQTT 3.1.1 and 5.0 against the plain broker of a real node."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from tests.integration.mqtt_helpers import V5, V311, Paho, mqtt_node

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])


@VERSIONS
async def test_qos_0_1_2_end_to_end(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("sub", version) as sub, Paho("pub", version) as pub:
            assert await sub.connect(h.port) == (0, False)
            assert await pub.connect(h.port) == (0, False)
            assert await sub.subscribe("sensors/+/temp", 2) == [2]
            for qos in (0, 1, 2):
                await pub.publish(f"sensors/d{qos}/temp", f"q{qos}".encode(), qos)
            got = await sub.expect(3)
            assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
                ("sensors/d0/temp", b"q0", 0, False),
                ("sensors/d1/temp", b"q1", 1, False),
                ("sensors/d2/temp", b"q2", 2, False),
            ]
            # the granted QoS caps delivery
            assert await sub.subscribe("low/#", 1) == [1]
            await pub.publish("low/x", b"two", 2)
            (m,) = await sub.expect(1)
            assert (m.topic, m.qos) == ("low/x", 1)
            await pub.publish("other/topic", b"no", 1)
            await sub.nothing(0.2)
            await sub.disconnect()
            await pub.disconnect()


@VERSIONS
async def test_retained_set_and_cleared(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("pub", version) as pub:
            await pub.connect(h.port)
            await pub.publish("state/door", b"open", 1, retain=True)
            await pub.publish("state/window", b"shut", 0, retain=True)
            with Paho("late", version) as late:
                await late.connect(h.port)
                await late.subscribe("state/#", 1)
                got = sorted(await late.expect(2), key=lambda m: m.topic)
                assert [(m.topic, m.payload, m.retain) for m in got] == [
                    ("state/door", b"open", True),
                    ("state/window", b"shut", True),
                ]
                # a live subscriber sees a retained publish without the flag (MQTT default)
                await pub.publish("state/door", b"closed", 1, retain=True)
                (m,) = await late.expect(1)
                assert (m.payload, m.retain) == (b"closed", False)
                await late.disconnect()
            await pub.publish("state/door", b"", 1, retain=True)  # empty payload clears it
            with Paho("later", version) as later:
                await later.connect(h.port)
                await later.subscribe("state/#", 1)
                got = await later.expect(1)
                assert [(m.topic, m.payload) for m in got] == [("state/window", b"shut")]
                await later.nothing(0.2)
                await later.disconnect()
            await pub.disconnect()


@VERSIONS
async def test_will_on_abrupt_close_not_on_disconnect(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("watcher", version) as watcher:
            await watcher.connect(h.port)
            await watcher.subscribe("wills/#", 1)
            with Paho("dies", version) as dies:
                await dies.connect(h.port, will=("wills/dies", b"gone", 1, False))
                dies.abort()
                (m,) = await watcher.expect(1)
                assert (m.topic, m.payload, m.qos) == ("wills/dies", b"gone", 1)
            with Paho("polite", version) as polite:
                await polite.connect(h.port, will=("wills/polite", b"gone", 1, False))
                await polite.disconnect()
                await watcher.nothing(0.3)
            await watcher.disconnect()


async def test_will_delay_and_cancel_by_reconnect(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("watcher") as watcher:
            await watcher.connect(h.port)
            await watcher.subscribe("wills/#", 1)
            with Paho("slow") as slow:
                await slow.connect(h.port, session_expiry=60, will=("wills/slow", b"late", 1, False), will_delay=1)
                t0 = time.monotonic()
                slow.abort()
                await watcher.nothing(0.5)
                (m,) = await watcher.expect(1, timeout=3)
                assert m.payload == b"late"
                assert time.monotonic() - t0 >= 0.9
            # coming back within the delay cancels the will (a delay of 3 s: the reconnect must
            # happen within it even when the machine stalls for a moment)
            with Paho("back") as back:
                await back.connect(h.port, session_expiry=60, will=("wills/back", b"never", 1, False), will_delay=3)
                back.abort()
            with Paho("back") as back2:
                assert (await back2.connect(h.port, clean_start=False, session_expiry=60))[0] == 0
                await watcher.nothing(3.5)
                await back2.disconnect()
            await watcher.disconnect()


@VERSIONS
async def test_persistent_session_resume_delivers_queued_qos1(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        persistent = {"clean_session": False} if version == V311 else {}
        sub = Paho("keeper", version, **persistent)
        assert await sub.connect(h.port, clean_start=False, session_expiry=300) == (0, False)
        await sub.subscribe("jobs/#", 1)
        await sub.disconnect()
        await asyncio.sleep(0.1)
        with Paho("boss", version) as pub:
            await pub.connect(h.port)
            for i in range(5):
                await pub.publish(f"jobs/{i}", f"job {i}".encode(), 1)
            await pub.publish("jobs/q0", b"lost", 0)  # QoS 0 is not queued for an offline client
            await pub.disconnect()
        with Paho("keeper", version, **persistent) as again:
            assert await again.connect(h.port, clean_start=False, session_expiry=300) == (0, True)
            got = await again.expect(5)
            assert [m.payload for m in got] == [f"job {i}".encode() for i in range(5)]
            assert all(m.qos == 1 for m in got)
            await again.nothing(0.2)
            await again.disconnect()
        # a clean start forgets the session (and its subscriptions)
        with Paho("keeper", version, clean_session=True) as fresh:
            assert await fresh.connect(h.port, clean_start=True) == (0, False)
            with Paho("boss2", version) as pub:
                await pub.connect(h.port)
                await pub.publish("jobs/x", b"x", 1)
                await pub.disconnect()
            await fresh.nothing(0.2)
            await fresh.disconnect()


async def test_topic_alias_inbound(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("sub") as sub, Paho("aliaser") as pub:
            await sub.connect(h.port)
            await sub.subscribe("long/topic/name/#", 1)
            await pub.connect(h.port)
            first = PahoProperties(PacketTypes.PUBLISH)
            first.TopicAlias = 3
            await pub.publish("long/topic/name/a", b"1", 1, props=first)
            again = PahoProperties(PacketTypes.PUBLISH)
            again.TopicAlias = 3
            await pub.publish("", b"2", 1, props=again)
            got = await sub.expect(2)
            assert [(m.topic, m.payload) for m in got] == [("long/topic/name/a", b"1"), ("long/topic/name/a", b"2")]
            await sub.disconnect()
            await pub.disconnect()


@VERSIONS
async def test_takeover_closes_first_connection(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("twin", version) as first, Paho("twin", version) as second, Paho("pub", version) as pub:
            await first.connect(h.port)
            await first.subscribe("t", 1)
            await second.connect(h.port)
            rc = await first.disconnected()
            if version == V5:
                assert rc == 0x8E  # session taken over
            else:
                assert rc != 0  # 3.1.1 has no DISCONNECT from the server: the socket just closes
            await eventually_one_live(h, "twin")
            await second.subscribe("t", 1)
            await pub.connect(h.port)
            await pub.publish("t", b"x", 1)
            assert [m.payload for m in await second.expect(1)] == [b"x"]
            await second.disconnect()
            await pub.disconnect()


async def eventually_one_live(h: object, client_id: str) -> None:
    from tests.integration.mqtt_helpers import MqttNode, eventually

    assert isinstance(h, MqttNode)
    await eventually(lambda: sum(1 for s in h.hub.connections if s.client_id == client_id) == 1)


async def test_listener_stop_and_start_at_runtime(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url) as h:
        port = h.port
        with Paho("stays") as stays:
            await stays.connect(port)
            await stays.subscribe("x", 1)
            await h.hub.stop_listener("tcp")
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            # the existing session keeps working while the listener is down
            await stays.publish("x", b"still here", 1)
            assert [m.payload for m in await stays.expect(1)] == [b"still here"]
            assert await h.hub.start_listener("tcp") == port
            with Paho("new") as new:
                assert await new.connect(port) == (0, False)
                await new.publish("x", b"hello again", 1)
                assert [m.payload for m in await stays.expect(1)] == [b"hello again"]
                await new.disconnect()
            await h.hub.stop_listener("tcp", close_sessions=True)
            assert await stays.disconnected() == 0x8B  # server shutting down
            await h.hub.start_listener("tcp")


def _expiring(seconds: int) -> PahoProperties:
    props = PahoProperties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = seconds
    return props


def _interval(m: object) -> int | None:
    return getattr(getattr(m, "properties", None), "MessageExpiryInterval", None)


async def test_publication_expiry_for_an_offline_session(tmp_path: Path, db_url: str) -> None:
    """Issue 19 (9), after paho.mqtt.testing's test_publication_expiry: what expired while the
    subscriber was away is not delivered; the rest comes with the interval reduced."""
    async with mqtt_node(tmp_path, db_url) as h:
        sub = Paho("expirer")
        assert await sub.connect(h.port, clean_start=True, session_expiry=300) == (0, False)
        assert await sub.subscribe("exp/#", 2) == [2]
        await sub.disconnect()
        await asyncio.sleep(0.1)
        with Paho("exp-pub") as pub:
            await pub.connect(h.port)
            await pub.publish("exp/retained/short", b"retained - expire", 1, retain=True, props=_expiring(1))
            await pub.publish("exp/q1", b"qos 1 - expire", 1, props=_expiring(1))
            await pub.publish("exp/q2", b"qos 2 - expire", 2, props=_expiring(1))
            await pub.publish("exp/q1", b"qos 1 - don't expire", 1, props=_expiring(60))
            await pub.publish("exp/q2", b"qos 2 - don't expire", 2, props=_expiring(60))
            await pub.publish("exp/retained/long", b"retained - don't expire", 1, retain=True, props=_expiring(60))
            await pub.publish("exp/q1", b"no expiry", 1)
            await pub.disconnect()
        await asyncio.sleep(2.2)  # past the 1 s ones
        with Paho("expirer") as again:
            assert await again.connect(h.port, clean_start=False, session_expiry=300) == (0, True)
            got = {m.payload: m for m in await again.expect(4)}  # QoS 2 reaches paho's callback after PUBREL
            assert sorted(got) == [
                b"no expiry",
                b"qos 1 - don't expire",
                b"qos 2 - don't expire",
                b"retained - don't expire",
            ]
            for payload, m in got.items():
                if payload == b"no expiry":
                    assert _interval(m) is None
                else:
                    assert _interval(m) is not None and 1 <= _interval(m) < 60 - 1, _interval(m)  # type: ignore[operator]
            await again.nothing(0.5)
            await again.disconnect()
        # a new subscriber gets only the retained message that has not expired, interval reduced
        with Paho("exp-late") as late:
            await late.connect(h.port)
            await late.subscribe("exp/retained/#", 1)
            (m,) = await late.expect(1)
            assert (m.topic, m.payload, m.retain) == ("exp/retained/long", b"retained - don't expire", True)
            assert _interval(m) is not None and 1 <= _interval(m) < 60 - 1, _interval(m)  # type: ignore[operator]
            await late.nothing(0.3)
            await late.disconnect()


async def test_retained_message_expires(tmp_path: Path, db_url: str) -> None:
    """Issue 19 (9): a retained message is delivered with what is left of its interval, and no
    longer once it has passed (MQTT 5 3.3.2.3.3)."""
    async with mqtt_node(tmp_path, db_url) as h:
        with Paho("ret-pub") as pub:
            await pub.connect(h.port)
            await pub.publish("ret/short", b"s", 1, retain=True, props=_expiring(2))
            await pub.publish("ret/long", b"l", 1, retain=True, props=_expiring(3600))
            with Paho("ret-early") as early:
                await early.connect(h.port)
                await early.subscribe("ret/#", 1)
                got = sorted(await early.expect(2), key=lambda m: m.topic)
                assert [(m.topic, m.retain) for m in got] == [("ret/long", True), ("ret/short", True)]
                assert 3599 <= _interval(got[0]) <= 3600  # type: ignore[operator]
                assert 1 <= _interval(got[1]) <= 2  # type: ignore[operator]
                await early.disconnect()
            await asyncio.sleep(2.5)
            with Paho("ret-late") as late:
                await late.connect(h.port)
                await late.subscribe("ret/#", 1)
                (m,) = await late.expect(1)
                assert m.topic == "ret/long"
                assert 1 <= _interval(m) <= 3600 - 2, _interval(m)  # type: ignore[operator]
                await late.nothing(0.3)
                await late.disconnect()
            await pub.disconnect()
