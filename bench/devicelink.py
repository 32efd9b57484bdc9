"""Device links: throughput and added latency of a TCP link against a direct connection to the
same echo device, in the same run; plain and encrypted, direct mode and via a gateway.

Processes, all on 127.0.0.1: the echo device (uvloop, ``asyncio.Protocol``), the hub
(``gatehub serve``: uvloop, SQLite in a temporary folder, MQTT and device links on), and for the
via-gateway figures two agent processes: the real gateway agent (``gatehub.agent``: aiomqtt, its
device-link relay, a simulated sub-device whose local address is the echo device), one with
stream channels (the default on a plain MQTT connection) and one with every link framed over MQTT
(``[devicelink] streams = false``: what an agent without a reachable stream port gets;
informational, no target). The
load generator is this process (one TCP connection, ``asyncio.Protocol``), identical for the
direct reference and for every link.

- Throughput: the client writes N MiB and reads the echo back concurrently; MB/s of payload.
  Target: at least 50% of the direct connection's.
- Latency: sequential round trips of 64 bytes; p50 and p99; "added" = link p50 - direct p50.
  Target: added p50 under 0.5 ms.
With encryption the client encrypts and decrypts (AES-256-CTR, the documented scheme) and the
hub does the other half: that cost is part of the figure.

What a relay costs here, measured in the same rounds (informational): the same client through one
and through two pass-through relay processes that only ``splice`` the two sockets, no protocol
and no copy into Python. A link through the hub has one relay on its path, a link via a gateway
two (the hub and the agent). On a machine whose cores the client, the relays and the device
share, every relay adds the kernel's work of two receives and two sends per echoed byte to the
reference's four, whether or not it copies: that, not the relay's own code, bounds the ratios.

``python -m bench.devicelink echo PORTFILE``, ``... relay PORTFILE TARGETPORT`` and
``... agent MQTTPORT TOKEN ECHOPORT STATEFILE SUB 1|0`` run the helpers.
Knobs for investigation: ``BENCH_WINDOW`` (the hub's credit window), ``BENCH_HUB_STOCK=1`` /
``BENCH_AGENT_STOCK=1`` (stock asyncio instead of uvloop), ``BENCH_PROFILE_HUB=FILE`` /
``BENCH_PROFILE_AGENT=FILE`` (cProfile output), ``BENCH_LINKS`` (the labels of the links to
measure, comma-separated, e.g. ``direct encrypted,via gateway plain``; default all).
The notes of each throughput figure give the CPU seconds per GB relayed of the hub and the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Report

GW_TOKEN = "bench-gw-token"
GW2_TOKEN = "bench-gw2-token"
KEY = bytes(range(32))
IV = bytes(range(16, 32))
PHASE_TIMEOUT = 120.0
ONLY = [x.strip() for x in os.environ.get("BENCH_LINKS", "").split(",") if x.strip()]  # labels to run
INFLIGHT = int(os.environ.get("BENCH_INFLIGHT", str(4 * 1024 * 1024)))  # bytes the client keeps in flight


def _uvloop_run(coro: Any) -> None:
    from gatehub.loop import run_loop

    run_loop(coro)


# --- helper processes ------------------------------------------------------------------------
class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.t.write(data)

    def pause_writing(self) -> None:
        self.t.pause_reading()

    def resume_writing(self) -> None:
        self.t.resume_reading()


async def _echo_main(portfile: str) -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    Path(portfile).write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


async def _agent_main(mqtt_port: int, token: str, echo_port: int, state: str, sub: str, streams: bool) -> None:
    """The real gateway agent (``gatehub.agent``, as ``gatehub agent run`` starts it) with one
    simulated sub-device, ``sub``, whose address on the local network is the echo device; with
    stream channels (the default) or with every link framed over MQTT (the fallback)."""
    from gatehub.agent import Agent, agent_config
    from gatehub.agent.devicelink import DeviceLinkExtension

    cfg = agent_config(
        {
            "hub": {"host": "127.0.0.1", "port": mqtt_port, "access_token": token, "client_id": f"bench-{sub}"},
            "state": {"path": state},
            "devicelink": {"streams": streams},
            "drivers": [
                {
                    "type": "simulator",
                    "poll_interval": 5.0,
                    "devices": [
                        {
                            "uid": sub,
                            "name": sub,
                            "model": "bench-sub-p",
                            "address": f"127.0.0.1:{echo_port}",
                            "keys": {"t": {"kind": "walk", "min": 18, "max": 26}},
                        }
                    ],
                }
            ],
        }
    )
    async with Agent(cfg) as agent:
        await asyncio.wait_for(agent.reconciled.wait(), 60)
        ext = next(e for e in agent.extensions if isinstance(e, DeviceLinkExtension))
        assert ext.relay is not None
        await asyncio.wait_for(ext.relay.ready.wait(), 60)
        print("AGENT READY", flush=True)
        await asyncio.Event().wait()


async def _relay_main(portfile: str, target_port: int) -> None:
    """A pass-through relay with no protocol at all: accept, connect to ``target_port``, splice the
    two sockets. The bound of what any relay can do here: a link through the hub is one such hop,
    a link via a gateway two (the hub and the agent)."""
    from gatehub import splice

    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    Path(portfile).write_text(str(listener.getsockname()[1]))
    relays: set[splice.SpliceRelay] = set()
    while True:
        client, _addr = await loop.sock_accept(listener)
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        device = await splice.connect(loop, "127.0.0.1", target_port)
        relay = splice.SpliceRelay(loop, client, device)
        relays.add(relay)
        relay.on_closed = lambda r=relay: relays.discard(r)
        relay.start()


async def _port_of(portfile: Path) -> int:
    for _ in range(200):
        if portfile.exists() and portfile.read_text():
            return int(portfile.read_text())
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no port in {portfile}")


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    prof = os.environ.get("BENCH_PROFILE_AGENT") if args[0] == "agent" else None
    pre = ["-m", "cProfile", "-o", prof] if prof else []
    return subprocess.Popen(
        [sys.executable, *pre, "-m", "bench.devicelink", *args],
        env=env or os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


# --- the load generator ----------------------------------------------------------------------
class _Client(asyncio.Protocol):
    def __init__(self, encrypt: bool) -> None:
        self.buf = bytearray()
        self.want = 0
        self.got = 0
        self.waiter: asyncio.Future[None] | None = None
        self.up = self.down = None
        self.number = time.time_ns() // 1000  # connection number: grows from one connection to the next
        if encrypt:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            def ctx(d: int) -> Any:
                n = self.number
                start = ((int.from_bytes(IV, "big") + d * 2**127 + n * 2**64) % 2**128).to_bytes(16, "big")
                return Cipher(algorithms.AES(KEY), modes.CTR(start)).encryptor()

            self.up, self.down = ctx(0), ctx(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.up is not None:
            self.t.write(struct.pack(">Q", self.number))

    def send(self, data: bytes) -> None:
        self.t.write(self.up.update(data) if self.up is not None else data)

    def data_received(self, data: bytes) -> None:
        if self.down is not None:
            data = self.down.update(data)
        self.got += len(data)
        if self.waiter is not None and self.got >= self.want and not self.waiter.done():
            self.waiter.set_result(None)

    async def until(self, total: int) -> None:
        self.want = total
        if self.got >= total:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(self.waiter, PHASE_TIMEOUT)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, float] = {}  # process name -> CPU seconds per GB relayed, last throughput phase


async def measure(
    port: int, encrypt: bool, mib: int, trips: int, pids: dict[str, int] | None = None
) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    cpu0 = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    # throughput
    _t, c = await loop.create_connection(lambda: _Client(encrypt), "127.0.0.1", port)
    chunk = os.urandom(64 * 1024)
    total = mib * 1024 * 1024
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        c.send(chunk)
        sent += len(chunk)
        if sent - c.got > INFLIGHT:  # keep at most this much in flight
            await c.until(sent - INFLIGHT // 2)
    await c.until(total)
    mbps = total / (time.perf_counter() - t0) / 1e6
    for name, pid in (pids or {}).items():
        CPU[name] = (cpu_seconds(pid) - cpu0[name]) / (total / 1e9)
    c.t.close()
    await asyncio.sleep(0.1)
    # latency
    _t, c = await loop.create_connection(lambda: _Client(encrypt), "127.0.0.1", port)
    msg = b"l" * 64
    rtts = []
    for i in range(trips):
        t1 = time.perf_counter()
        c.send(msg)
        await c.until(64 * (i + 1))
        rtts.append((time.perf_counter() - t1) * 1000)
    c.t.close()
    await asyncio.sleep(0.1)
    return mbps, rtts


# --- the run ---------------------------------------------------------------------------------
async def _wait_line(proc: subprocess.Popen[bytes], prefix: bytes, timeout: float = 60) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise RuntimeError(f"process exited ({proc.poll()}) before {prefix!r}")
        if line.startswith(prefix):
            return line
    raise TimeoutError(prefix)


async def run(report: Report, quick: bool) -> None:
    # the load generator runs on uvloop like every other process here (the hub, the agents, the
    # echo device): stock asyncio allocates a fresh 256 KiB buffer for every read, which made the
    # client the costliest process of the run on small reads
    await asyncio.to_thread(_uvloop_run, _run(report, quick))


async def _run(report: Report, quick: bool) -> None:
    mib, trips, rounds = (8, 300, 1) if quick else (256, 1000, 5)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            echo = _spawn("echo", str(Path(tmp) / "echo.port"))
            procs.append(echo)
            echo_port = await _port_of(Path(tmp) / "echo.port")
            # the bound: pass-through relays with no protocol, one (like the hub on a direct link)
            # and two in a row (like the hub and the agent on a link via a gateway)
            relays: dict[str, tuple[int, tuple[int, ...]]] = {}
            for label, hops in (("splice-only relay x1", 1), ("splice-only relays x2", 2)):
                target, pids = echo_port, ()
                for hop in range(hops):
                    relay = _spawn("relay", str(Path(tmp) / f"relay{hops}{hop}.port"), str(target))
                    procs.append(relay)
                    target, pids = await _port_of(Path(tmp) / f"relay{hops}{hop}.port"), (*pids, relay.pid)
                relays[label] = (target, pids)
            env = {
                **os.environ,
                "GATEHUB_DATA_DIR": str(Path(tmp) / "hub"),
                "GATEHUB_BIND_HOST": "127.0.0.1",
                "GATEHUB_HTTP_PORT": "0",
                "GATEHUB_MQTT_PORT": "0",
                "GATEHUB_MQTTS_PORT": "-1",
                "GATEHUB_GRPC_PORT": "-1",
                "GATEHUB_IOTDA_PORT": "-1",
                "GATEHUB_DEVICELINK_PORT_MIN": "0",
                "GATEHUB_DEVICELINK_PORT_MAX": "0",
                "GATEHUB_LOG_LEVEL": "warning",
                "GATEHUB_DEVICELINK_TUNNEL_WINDOW": os.environ.get("BENCH_WINDOW", "1048576"),
            }
            cmd = [str(Path(sys.executable).parent / "gatehub"), "serve"]
            if os.environ.get("BENCH_HUB_STOCK"):  # stock asyncio instead of uvloop, for comparison
                cmd = [
                    sys.executable,
                    "-c",
                    "import asyncio; from gatehub.config import load_settings; "
                    "from gatehub.app.node import serve; asyncio.run(serve(load_settings()))",
                ]
            if os.environ.get("BENCH_PROFILE_HUB"):  # a cProfile of the hub for this run
                cmd = [sys.executable, "-m", "cProfile", "-o", os.environ["BENCH_PROFILE_HUB"], cmd[0], "serve"]
            hub = await asyncio.to_thread(
                subprocess.Popen, cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            procs.append(hub)
            ready = json.loads((await _wait_line(hub, b"READY ")).split(b" ", 1)[1])
            key = (Path(tmp) / "hub" / "admin.key").read_text().strip()
            api = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ready['http']}/api/v1", headers={"Authorization": f"Bearer {key}"}
            )
            async with api:
                await _setup(api)
                mqtt = str(ready["mqtt_tcp"])
                agent = _spawn("agent", mqtt, GW_TOKEN, str(echo_port), str(Path(tmp) / "agent.db"), "sub", "1")
                framed = _spawn("agent", mqtt, GW2_TOKEN, str(echo_port), str(Path(tmp) / "agent2.db"), "sub2", "0")
                procs += [agent, framed]
                await _wait_line(agent, b"AGENT READY")
                await _wait_line(framed, b"AGENT READY")
                await asyncio.sleep(0.5)  # HELLO answered
                links: dict[str, dict[str, Any]] = {}
                for ident, mode, agent_pid in (
                    ("bench-direct", "direct", agent.pid),
                    ("bench-sub", "via gateway", agent.pid),
                    ("bench-sub2", "via gateway framed over MQTT", framed.pid),
                ):
                    for encrypt in (False, True):
                        label = f"{mode} {'encrypted' if encrypt else 'plain'}"
                        if ONLY and label not in ONLY:
                            continue
                        body: dict[str, Any] = {"protocol": "tcp", "devicePort": echo_port}
                        if encrypt:
                            body["encrypt"] = {
                                "key": KEY.hex(),
                                "initializationVector": IV.hex(),
                                "mode": "per-connection",
                            }
                        r = await api.post(f"/devicelink/{ident}", json=body)
                        r.raise_for_status()
                        links[label] = {**r.json(), "encrypt": encrypt, "agent_pid": agent_pid}
                # rounds that alternate the reference and every link, so that the load of a shared
                # machine falls on all of them alike; each figure is the median of its rounds
                names = ("hub", "agent", "echo", "client", "relays")
                bounds = {k: v for k, v in relays.items() if not ONLY or k in ONLY}
                runs = ("direct", *links, *bounds)
                cpu: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in runs}
                tput: dict[str, list[float]] = {k: [] for k in runs}
                rtt: dict[str, list[float]] = {k: [] for k in runs}
                for _round in range(rounds):
                    m, rt = await measure(echo_port, False, mib, trips, {"echo": echo.pid, "client": os.getpid()})
                    for name in ("echo", "client"):
                        cpu["direct"][name].append(CPU[name])
                    tput["direct"].append(m)
                    rtt["direct"] += rt
                    for label, link in links.items():
                        pids = {"hub": hub.pid, "agent": link["agent_pid"], "echo": echo.pid, "client": os.getpid()}
                        m, rt = await measure(link["port"], link["encrypt"], mib, trips, pids)
                        for name in pids:
                            cpu[label][name].append(CPU[name])
                        tput[label].append(m)
                        rtt[label] += rt
                    for label, (port, relay_pids) in bounds.items():
                        pids = {"echo": echo.pid, "client": os.getpid(), **{f"r{p}": p for p in relay_pids}}
                        m, rt = await measure(port, False, mib, trips, pids)
                        for name in ("echo", "client"):
                            cpu[label][name].append(CPU[name])
                        cpu[label]["relays"].append(sum(CPU[f"r{p}"] for p in relay_pids))
                        tput[label].append(m)
                        rtt[label] += rt
                ref = statistics.median(tput["direct"])
                ref_p50 = statistics.median(rtt["direct"])
                report.add(
                    "devicelink",
                    "direct connection throughput (reference)",
                    ref,
                    "MB/s",
                    notes=f"rounds: {', '.join(f'{x:.0f}' for x in tput['direct'])} MB/s; CPU s per GB: "
                    f"client {statistics.median(cpu['direct']['client']):.2f}, "
                    f"echo device {statistics.median(cpu['direct']['echo']):.2f}",
                )
                report.add(
                    "devicelink",
                    "direct connection p50 round trip (reference)",
                    ref_p50 * 1000,
                    "µs",
                    notes=f"p99 {_p99(rtt['direct']) * 1000:.0f} µs",
                )
                for label in links:
                    informational = "framed" in label  # the fallback path: no target of its own
                    report.add(
                        "devicelink",
                        f"link throughput, {label}",
                        statistics.median(tput[label]),
                        "MB/s",
                        reference=ref,
                        target_ratio=None if informational else 0.5,
                        notes=("informational (the fallback without a stream port); " if informational else "")
                        + f"rounds: {', '.join(f'{x:.0f}' for x in tput[label])} MB/s; CPU s per GB: hub "
                        f"{statistics.median(cpu[label]['hub']):.2f}, "
                        f"agent {statistics.median(cpu[label]['agent']):.2f}, "
                        f"client {statistics.median(cpu[label]['client']):.2f}, "
                        f"echo device {statistics.median(cpu[label]['echo']):.2f}",
                    )
                    p50 = statistics.median(rtt[label])
                    added = p50 - ref_p50
                    report.add(
                        "devicelink",
                        f"link added p50 latency, {label}",
                        added * 1000,
                        "µs",
                        notes=f"p50 {p50 * 1000:.0f} µs, p99 {_p99(rtt[label]) * 1000:.0f} µs"
                        + (
                            "; informational"
                            if informational
                            else "; target < 500 µs: " + ("meets target" if added < 0.5 else "BELOW target")
                        ),
                    )
                for label in bounds:
                    report.add(
                        "devicelink",
                        f"throughput, {label}",
                        statistics.median(tput[label]),
                        "MB/s",
                        reference=ref,
                        notes="informational: relays that only splice, no protocol and no copy into Python; "
                        f"rounds: {', '.join(f'{x:.0f}' for x in tput[label])} MB/s; CPU s per GB: relays "
                        f"{statistics.median(cpu[label]['relays']):.2f}, "
                        f"client {statistics.median(cpu[label]['client']):.2f}, "
                        f"echo device {statistics.median(cpu[label]['echo']):.2f}; "
                        f"added p50 {(statistics.median(rtt[label]) - ref_p50) * 1000:.0f} µs",
                    )
                for link in links.values():
                    (await api.delete(f"/devicelink/{link['token']}")).raise_for_status()
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.terminate()
            for p in procs:
                with contextlib.suppress(Exception):
                    p.wait(10)


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


async def _setup(api: httpx.AsyncClient) -> None:
    async def ok(r: httpx.Response) -> None:
        if r.status_code >= 300:
            raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text}")

    await ok(await api.post("/tenants", json={"id": "bench", "name": "bench"}))
    for pid, nt in (("bench-direct-p", "direct"), ("bench-gw-p", "gateway"), ("bench-sub-p", "sub-device")):
        await ok(await api.post("/products?tenantId=bench", json={"id": pid, "nodeType": nt}))
    await ok(
        await api.post(
            "/devices?tenantId=bench", json={"id": "bench-direct", "name": "d", "productId": "bench-direct-p"}
        )
    )
    await ok(await api.post("/devices/bench-direct/attributes/server", json={"deviceLinkAddress": "127.0.0.1"}))
    await ok(
        await api.post(
            "/gateways?tenantId=bench",
            json={"id": "bench-gw", "name": "gw", "productId": "bench-gw-p", "accessToken": GW_TOKEN},
        )
    )
    await ok(
        await api.post(
            "/devices?tenantId=bench",
            json={"id": "bench-sub", "name": "sub", "productId": "bench-sub-p", "parentId": "bench-gw"},
        )
    )
    await ok(
        await api.post(
            "/gateways?tenantId=bench",
            json={"id": "bench-gw2", "name": "gw2", "productId": "bench-gw-p", "accessToken": GW2_TOKEN},
        )
    )
    await ok(
        await api.post(
            "/devices?tenantId=bench",
            json={"id": "bench-sub2", "name": "sub2", "productId": "bench-sub-p", "parentId": "bench-gw2"},
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        _uvloop_run(_echo_main(sys.argv[2]))
    elif sys.argv[1] == "relay":
        _uvloop_run(_relay_main(sys.argv[2], int(sys.argv[3])))
    elif sys.argv[1] == "agent":
        import signal

        signal.signal(signal.SIGTERM, lambda *_a: sys.exit(0))
        args = sys.argv[2:8]
        main = _agent_main(int(args[0]), args[1], int(args[2]), args[3], args[4], args[5] == "1")
        if os.environ.get("BENCH_AGENT_STOCK"):
            asyncio.run(main)
        else:
            _uvloop_run(main)
