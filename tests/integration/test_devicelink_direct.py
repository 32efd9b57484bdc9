"""Device links in direct mode with real sockets: TCP and UDP echo devices, the address learned
from the device's MQTT connection or set by an operator, source lock, first-client inheritance,
timeout, the event log, closing when the device goes away and at shutdown."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.integration.devicelink_helpers import (
    eventually,
    free_tcp_port,
    free_udp_port,
    link_node,
    mqtt_device,
    read_exactly,
    refused,
    tcp_client,
    tcp_echo,
    udp_client,
    udp_echo,
    write_until_held_back,
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}"


async def test_tcp_echo_through_connection_address(tmp_path: Path, db_url: str) -> None:
    async with link_node(tmp_path, db_url) as h, tcp_echo(banner=b"hello\n") as (dev_port, rec):
        await h.direct_device("acme", "Meter-7", token="tok-meter-7")
        # the device connects over MQTT: the hub learns its address from that connection
        async with mqtt_device(h.mqtt_port, "tok-meter-7", "meter-7"):
            dev = await eventually(lambda: h.store.devices.get("acme", "Meter-7"))
            await eventually(lambda: _address(h, "Meter-7"))
            link = await h.create("meter-7", {"protocol": "tcp", "devicePort": dev_port})
            assert dev.id == "Meter-7"
            assert link["deviceIdentifier"] == "METER-7" and link["deviceId"] == "Meter-7"
            assert link["protocol"] == "tcp" and link["devicePort"] == dev_port and link["mode"] == "direct"
            assert isinstance(link["port"], int) and link["port"] > 0 and len(link["token"]) >= 32
            reader, writer = await tcp_client(link["port"])
            assert await read_exactly(reader, 6) == b"hello\n"  # the device speaks first
            payload = bytes(range(256)) * 400  # 100 KiB both ways
            writer.write(payload)
            assert await read_exactly(reader, len(payload)) == payload
            assert bytes(rec.received) == payload
            listed = (await h.api.get("/api/v1/devicelink", params={"tenantId": "acme"})).json()["items"]
            assert [x["token"] for x in listed] == [link["token"]]
            assert listed[0]["bytesIn"] == len(payload) and listed[0]["bytesOut"] == len(payload) + 6
            assert "key" not in str(listed[0].get("encrypt", ""))
            r = await h.api.delete(f"/api/v1/devicelink/{link['token']}")
            assert r.status_code == 204 and r.content == b""
            assert await reader.read() == b""  # the client connection ends with the link
            writer.close()
            with pytest.raises(OSError):
                await tcp_client(link["port"])
            assert (await h.api.delete(f"/api/v1/devicelink/{link['token']}")).status_code == 404
            closed = await eventually(lambda: h.events("acme", "devicelink.closed"))
            body = closed[0]["body"]
            assert closed[0]["deviceId"] == "Meter-7"
            assert body["bytesIn"] == len(payload) and body["bytesOut"] == len(payload) + 6
            assert body["reason"] == "closed by DELETE" and body["addressSource"] == "connection"
            assert "token" not in body
            assert await h.events("acme", "devicelink.opened")


async def _address(h: object, device_id: str) -> bool:
    dev = await h.store.devices.get("acme", device_id)  # type: ignore[attr-defined]
    return dev.last_address == "127.0.0.1"


async def test_udp_echo_with_operator_address(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, udp_echo() as (dev_port, rec, _t):
        await h.direct_device("acme", "sensor-1")
        r = await h.api.post("/api/v1/devices/sensor-1/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        assert r.status_code == 200, r.text
        link = await h.create("SENSOR-1", {"protocol": "UDP", "devicePort": dev_port})
        assert link["protocol"] == "udp" and "timeout" not in link
        async with udp_client(link["port"]) as (t, client):
            for i in range(20):
                t.sendto(f"ping {i}".encode())
                assert await client.get() == f"echo:ping {i}".encode()
        assert rec.datagrams == [f"ping {i}".encode() for i in range(20)]
        info = h.links.get(link["token"], None)
        assert info.bytes_in == sum(len(f"ping {i}") for i in range(20))
        assert info.target.address_source == "attribute"


async def test_tcp_source_lock(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, rec):
        await h.direct_device("acme", "plc")
        await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        src_port = free_tcp_port()
        link = await h.create(
            "plc", {"protocol": "tcp", "devicePort": dev_port, "source": {"host": "127.0.0.1", "port": src_port}}
        )
        assert link["source"] == {"host": "127.0.0.1", "port": src_port}
        assert await refused(link["port"])  # from another port of the right host
        reader, writer = await tcp_client(link["port"], ("127.0.0.1", src_port))
        writer.write(b"abc")
        assert await read_exactly(reader, 3) == b"abc"
        writer.close()
        assert h.links.get(link["token"], None).refused == 1
        assert rec.connections == 1  # the refused client never reached the device


async def test_tcp_first_client_inherits(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, rec):
        await h.direct_device("acme", "plc")
        await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port})
        reader, writer = await tcp_client(link["port"])
        writer.write(b"one")
        assert await read_exactly(reader, 3) == b"one"
        assert await refused(link["port"])  # one client at a time
        assert await refused(link["port"], ("127.0.0.2", 0))  # another host, also once the first is gone
        writer.close()
        await eventually(lambda: h.links.get(link["token"], None).client is None)
        assert await refused(link["port"], ("127.0.0.2", 0))
        reader, writer = await tcp_client(link["port"])  # the inheriting host again, from a new port
        writer.write(b"two")
        assert await read_exactly(reader, 3) == b"two"
        writer.close()
        listed = (await h.api.get("/api/v1/devicelink", params={"tenantId": "acme"})).json()["items"]
        assert listed[0]["inheritedBy"] == "127.0.0.1" and listed[0]["refused"] == 3
        assert listed[0]["connections"] == 2 and rec.connections == 2


async def test_udp_first_client_inherits_and_source_gets_device_data_at_once(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, udp_echo() as (dev_port, rec, dev_t):
        await h.direct_device("acme", "sensor")
        await h.api.post("/api/v1/devices/sensor/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        link = await h.create("sensor", {"protocol": "udp", "devicePort": dev_port})
        async with udp_client(link["port"]) as (t1, c1), udp_client(link["port"]) as (t2, c2):
            t1.sendto(b"first")
            assert await c1.get() == b"echo:first"
            t2.sendto(b"intruder")  # another host:port: dropped, never relayed
            t1.sendto(b"again")
            assert await c1.get() == b"echo:again"
            with pytest.raises(TimeoutError):
                await c2.get(timeout=0.3)
        assert rec.datagrams == [b"first", b"again"]
        # with source, what the device sends reaches that client before it sent anything
        src = free_udp_port()
        link2 = await h.create(
            "sensor", {"protocol": "udp", "devicePort": dev_port, "source": {"host": "127.0.0.1", "port": src}}
        )
        lk = h.links.get(link2["token"], None)
        hub_side = lk.device.transport.get_extra_info("sockname")  # the hub's socket towards the device
        async with udp_client(link2["port"], bind=("127.0.0.1", src)) as (_t, c):
            dev_t.sendto(b"unsolicited", hub_side)
            assert await c.get() == b"unsolicited"


async def test_udp_timeout(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, udp_echo() as (dev_port, _rec, _t):
        await h.direct_device("acme", "sensor")
        await h.api.post("/api/v1/devices/sensor/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        idle = await h.create("sensor", {"protocol": "udp", "devicePort": dev_port, "timeout": 300})
        busy = await h.create("sensor", {"protocol": "udp", "devicePort": dev_port, "timeout": 300})
        never = await h.create("sensor", {"protocol": "udp", "devicePort": dev_port})
        assert idle["timeout"] == 300
        async with udp_client(busy["port"]) as (t, c):
            for _ in range(8):  # 0.8 s of traffic every 0.1 s keeps it open
                t.sendto(b"x")
                assert await c.get() == b"echo:x"
                await asyncio.sleep(0.1)
            assert busy["token"] in h.links.links
        assert idle["token"] not in h.links.links
        await eventually(lambda: busy["token"] not in h.links.links, timeout=5)
        assert never["token"] in h.links.links
        closed = await eventually(lambda: h.events("acme", "devicelink.closed"))
        assert {e["body"]["reason"] for e in closed} == {"timeout: no traffic for 300 ms"}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", idle["port"]))  # the port is free again


async def test_links_close_when_device_goes_away_and_at_shutdown(tmp_path: Path, sqlite_url: str) -> None:
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.direct_device("acme", "m1", token="tok-m1")
        await h.direct_device("acme", "m2")
        await h.direct_device("acme", "m3", token="tok-m3")
        for dev in ("m2", "m3"):
            await h.api.post(f"/api/v1/devices/{dev}/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        async with mqtt_device(h.mqtt_port, "tok-m1", "m1"), mqtt_device(h.mqtt_port, "tok-m3", "m3"):
            await eventually(lambda: _address(h, "m1"))
            learned = await h.create("m1", {"protocol": "tcp", "devicePort": dev_port})
            configured = await h.create("m3", {"protocol": "tcp", "devicePort": dev_port})
            assert h.links.get(configured["token"], None).target.address_source == "attribute"
        # the devices went offline: the address learned from m1's connection may be stale;
        # m3's address was set by an operator and stays valid
        await eventually(lambda: learned["token"] not in h.links.links)
        await asyncio.sleep(0.3)
        assert configured["token"] in h.links.links
        other = await h.create("m2", {"protocol": "tcp", "devicePort": dev_port})
        reader, writer = await tcp_client(other["port"])
        writer.write(b"z")
        assert await read_exactly(reader, 1) == b"z"
        assert (await h.api.delete("/api/v1/devices/m2")).status_code == 204
        await eventually(lambda: other["token"] not in h.links.links)
        assert await reader.read() == b""
        writer.close()
        await h.direct_device("gone", "g1")
        await h.api.post("/api/v1/devices/g1/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        doomed = await h.create("g1", {"protocol": "tcp", "devicePort": dev_port})
        assert (await h.api.delete("/api/v1/tenants/gone")).status_code == 204
        await eventually(lambda: doomed["token"] not in h.links.links)
        last = await h.create("m1", {"protocol": "udp", "devicePort": dev_port})
        reasons = {e["body"]["reason"] for e in await eventually(lambda: h.events("acme", "devicelink.closed"))}
        assert "device m2 was deleted" in reasons
        assert any("went offline" in r for r in reasons)
    # the node stopped: its links closed and were logged before the writer drained
    async with link_node(tmp_path, sqlite_url) as h2:
        closed = await h2.events("acme", "devicelink.closed")
        assert any(e["body"]["id"] == last["id"] and e["body"]["reason"] == "node shutting down" for e in closed)


async def test_tcp_timeout_counts_relayed_traffic(tmp_path: Path, sqlite_url: str) -> None:
    """A TCP link with ``timeout`` stays open while bytes flow and closes once they stop; a
    half close passes through."""
    async with link_node(tmp_path, sqlite_url) as h, tcp_echo() as (dev_port, _rec):
        await h.direct_device("acme", "plc-t")
        r = await h.api.post("/api/v1/devices/plc-t/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
        assert r.status_code == 200, r.text
        link = await h.create("plc-t", {"protocol": "tcp", "devicePort": dev_port, "timeout": 400})
        reader, writer = await tcp_client(link["port"])
        for i in range(12):  # 1.2 s of traffic, three times the timeout
            writer.write(b"tick%02d" % i)
            assert await read_exactly(reader, 6) == b"tick%02d" % i
            await asyncio.sleep(0.1)
        lk = h.links.get(link["token"], None)
        assert lk is not None and not lk.closed
        assert lk.bytes_in == lk.bytes_out == 72
        writer.write_eof()  # the client is done sending: the device sees EOF, answers are still read
        assert await reader.read() == b""  # the echo device closes on EOF; its end reaches the client
        writer.close()
        await eventually(lambda: link["token"] not in h.links.links, timeout=5)  # then idle: closed
        closed = await eventually(lambda: h.events("acme", "devicelink.closed"))
        assert closed[0]["body"]["reason"] == "timeout: no traffic for 400 ms"
        assert closed[0]["body"]["bytesIn"] == 72 and closed[0]["body"]["bytesOut"] == 72


async def test_a_client_is_not_read_while_the_device_is_being_reached(tmp_path: Path, sqlite_url: str) -> None:
    """Until the device answers, the client's socket is not read (whatever it sends waits in TCP,
    not in the hub's memory); then all of it reaches the device, in order. uvloop starts reading a
    connection after connection_made even when that paused it: the pause is made again."""
    # a device whose accept queue is full: the hub's SYN goes unanswered (retried after ~1 s)
    dev = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dev.bind(("127.0.0.1", 0))
    dev.listen(0)
    dev_port = dev.getsockname()[1]
    fillers = [socket.create_connection(("127.0.0.1", dev_port))]  # backlog 0 holds one
    try:
        async with link_node(tmp_path, sqlite_url, devicelink_connect_timeout=20) as h:
            await h.direct_device("acme", "plc")
            await h.api.post("/api/v1/devices/plc/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
            link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port})
            _reader, writer = await tcp_client(link["port"])
            sent = await write_until_held_back(writer, limit=16 * 1024 * 1024)
            await asyncio.sleep(0.3)
            client = h.links.get(link["token"], None).client
            assert client is not None and client.device is None  # the device is still being reached
            assert client._pause and not client.transport.is_reading()
            assert len(client._pending) <= 256 * 1024  # at most the read before the pause took hold
            assert sent < 16 * 1024 * 1024
            # the device accepts: its queue frees, the hub's connect goes through
            loop = asyncio.get_running_loop()
            for f in fillers:
                f.close()
            dev.setblocking(False)
            got = bytearray()
            conns: list[socket.socket] = []
            deadline = loop.time() + 30
            while len(got) < sent and loop.time() < deadline:
                try:
                    c, _ = dev.accept()
                    c.setblocking(False)
                    conns.append(c)
                except BlockingIOError:
                    pass
                for c in conns:
                    try:
                        while chunk := c.recv(1 << 20):
                            got += chunk
                    except BlockingIOError:
                        pass
                await asyncio.sleep(0.01)
            assert len(got) == sent and got == b"\xa5" * sent
            writer.close()
            for c in conns:
                c.close()
    finally:
        for f in fillers:
            f.close()
        dev.close()
