"""Other real clients: aiomqtt, Debian's mosquitto_pub / mosquitto_sub, and paho over WebSocket."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiomqtt
import pytest

from tests.integration.mqtt_helpers import V5, V311, Paho, eventually, mqtt_node

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_aiomqtt(tmp_path: Path, db_url: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("acme", ("d1", "tok-d1"), ("d2", "tok-d2"))
        async with (
            aiomqtt.Client("127.0.0.1", h.port, identifier="aio-sub", username="tok-d1") as sub,
            aiomqtt.Client(
                "127.0.0.1", h.port, identifier="aio-pub", username="tok-d2", protocol=aiomqtt.ProtocolVersion.V5
            ) as pub,
        ):
            await sub.subscribe("plant/#", qos=1)
            await pub.publish("plant/1/temp", b"21.5", qos=1)
            await pub.publish("plant/2/temp", b"22.0", qos=2, retain=True)
            await pub.publish("plant/3/temp", b"q0", qos=0)
            got = []
            async with asyncio.timeout(5):
                async for msg in sub.messages:
                    got.append((str(msg.topic), msg.payload, msg.qos))
                    if len(got) == 3:
                        break
            assert got == [("plant/1/temp", b"21.5", 1), ("plant/2/temp", b"22.0", 1), ("plant/3/temp", b"q0", 0)]
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", h.port, identifier="bad", username="not-a-token"):
                pass


MOSQUITTO_PUB = shutil.which("mosquitto_pub")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")


@pytest.mark.skipif(not (MOSQUITTO_PUB and MOSQUITTO_SUB), reason="mosquitto-clients is not installed")
@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
async def test_mosquitto_clients(tmp_path: Path, db_url: str, version: str) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_anonymous_tenant=None) as h:
        await h.tenant_with_devices("acme", ("d1", "tok-d1"), ("d2", "tok-d2"))
        port = str(h.port)
        common = ["-h", "127.0.0.1", "-p", port, "-V", version]
        assert MOSQUITTO_PUB and MOSQUITTO_SUB
        pub = await asyncio.create_subprocess_exec(
            MOSQUITTO_PUB, *common, "-u", "tok-d2", "-t", "m/retained", "-m", "kept", "-q", "1", "-r"
        )
        assert await asyncio.wait_for(pub.wait(), 10) == 0
        sub = await asyncio.create_subprocess_exec(
            MOSQUITTO_SUB,
            *common,
            "-u",
            "tok-d1",
            "-t",
            "m/#",
            "-q",
            "2",
            "-C",
            "3",
            "-v",
            "-W",
            "10",
            stdout=asyncio.subprocess.PIPE,
        )
        await eventually(lambda: h.hub.by_device.get("d1"))
        await asyncio.sleep(0.2)  # the subscription is made right after the CONNACK
        for qos, text in ((1, "one"), (2, "two")):
            pub = await asyncio.create_subprocess_exec(
                MOSQUITTO_PUB, *common, "-u", "tok-d2", "-t", f"m/q{qos}", "-m", text, "-q", str(qos)
            )
            assert await asyncio.wait_for(pub.wait(), 10) == 0
        out, _ = await asyncio.wait_for(sub.communicate(), 15)
        assert sub.returncode == 0
        assert out.decode().splitlines() == ["m/retained kept", "m/q1 one", "m/q2 two"]
        # a refused token: mosquitto_pub fails
        bad = await asyncio.create_subprocess_exec(
            MOSQUITTO_PUB,
            *common,
            "-u",
            "nope",
            "-t",
            "x",
            "-m",
            "x",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(bad.communicate(), 10)
        assert bad.returncode != 0
        assert b"not authori" in err.lower() or b"bad user" in err.lower() or b"refused" in err.lower(), err


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])
async def test_websocket_listener_with_paho(tmp_path: Path, db_url: str, version: int) -> None:
    async with mqtt_node(tmp_path, db_url, mqtt_ws_port=0) as h:
        ws_port = h.node.endpoints.extra["mqtt_ws"]
        with Paho("ws-sub", version, transport="websockets") as ws_sub, Paho("tcp-pub", version) as tcp_pub:
            assert await ws_sub.connect(ws_port) == (0, False)
            await ws_sub.subscribe("mix/#", 2)
            await tcp_pub.connect(h.port)
            for qos in (0, 1, 2):
                await tcp_pub.publish(f"mix/{qos}", bytes(1000) * (qos + 1), qos)
            got = await ws_sub.expect(3)
            assert [(m.topic, len(m.payload), m.qos) for m in got] == [
                ("mix/0", 1000, 0),
                ("mix/1", 2000, 1),
                ("mix/2", 3000, 2),
            ]
            session = next(s for s in h.hub.connections if s.client_id == "ws-sub")
            assert session.listener == "ws"
            await ws_sub.publish("mix/back", b"from ws", 1)
            assert [m.payload for m in await ws_sub.expect(1)] == [b"from ws"]
            # the WebSocket listener stops and starts like the others; its session stays
            await h.hub.stop_listener("ws")
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", ws_port)
            assert await h.hub.start_listener("ws") == ws_port
            await ws_sub.publish("mix/again", b"still", 1)
            assert [m.payload for m in await ws_sub.expect(1)] == [b"still"]
            # takeover across listeners: TCP replaces the WebSocket connection
            with Paho("ws-sub", version) as tcp_twin:
                await tcp_twin.connect(h.port)
                rc = await ws_sub.disconnected()
                assert rc == (0x8E if version == V5 else rc)
                await tcp_twin.disconnect()
            await tcp_pub.disconnect()


async def test_websocket_will_on_abrupt_close_and_text_refused(tmp_path: Path, db_url: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async with mqtt_node(tmp_path, db_url, mqtt_ws_port=0) as h:
        ws_port = h.node.endpoints.extra["mqtt_ws"]
        with Paho("watch") as watch:
            await watch.connect(h.port)
            await watch.subscribe("w/#", 1)
            with Paho("ws-dies", V5, transport="websockets") as dies:
                await dies.connect(ws_port, will=("w/dies", b"bye", 1, False))
                dies.abort()
                assert [m.payload for m in await watch.expect(1)] == [b"bye"]
            await watch.disconnect()
        # a text frame is not MQTT; no subprotocol is refused too
        async with connect(f"ws://127.0.0.1:{ws_port}/mqtt", subprotocols=["mqtt"]) as ws:  # type: ignore[list-item]
            await ws.send("hello")
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1003
        with pytest.raises(InvalidStatus) as info:  # no subprotocol: refused in the HTTP upgrade
            async with connect(f"ws://127.0.0.1:{ws_port}/mqtt"):
                pass
        assert info.value.response.status_code == 400
