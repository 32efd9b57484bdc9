"""MQTT: gatehub's plain broker against Mosquitto 2 under the same load generator, in one run.

Both servers run as separate processes on 127.0.0.1 (gatehub as ``gatehub serve`` with only the
MQTT TCP listener and an anonymous tenant, SQLite in a temporary folder; Mosquitto from the
Debian package with a generated config, ``allow_anonymous true``). The load generator is ours and
identical for both: separate processes (multiprocessing, spawn) with raw asyncio sockets, packets
built by gatehub's own encoder (``encode_packet`` / ``encode_publish``), MQTT 3.1.1.

For each server:
- QoS 0 and QoS 1 throughput: N connections publish 100-byte messages on one topic (QoS 1
  pipelined, a window of unacknowledged messages per connection); one subscriber (QoS 0
  subscription) counts deliveries. Reported: msg/s acknowledged (QoS 1) or sent, msg/s
  delivered, and the CPU seconds the server process used per 100K messages.
- QoS 1 latency at a paced rate: publish-to-PUBACK p50 / p99 (ms).
- Idle memory: 10,000 idle connections (CONNECT, keep alive off); RSS growth per connection.

Mosquitto is installed with apt-get when missing and the benchmark runs as root; otherwise its
figures are missing and the report says so. Every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Report
from gatehub.protocols.mqtt import (
    ConnectPacket,
    PingReqPacket,
    SubscribePacket,
    Subscription,
    encode_packet,
    encode_publish,
)

MOSQUITTO = "/usr/sbin/mosquitto"
TOPIC = "bench/load"
PAYLOAD = bytes(range(100))  # 100 B
PHASE_TIMEOUT = 120.0  # no load phase runs longer than this
PINGRESP = b"\xd0\x00"


# --- servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_mosquitto() -> str | None:
    """The mosquitto binary, installing the Debian package if possible; None (and why) if not."""
    if os.path.exists(MOSQUITTO):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "mosquitto is not installed and this is not root with apt-get: apt-get install mosquitto"
    print("[mqtt] installing mosquitto (apt-get install -y mosquitto mosquitto-clients)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "mosquitto", "mosquitto-clients"]):
        r = subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
        if r.returncode:
            return f"{' '.join(cmd)} failed: {r.stderr.decode(errors='replace')[-300:]}"
    return None if os.path.exists(MOSQUITTO) else "mosquitto still missing after apt-get install"


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    def cpu(self) -> float:
        """CPU seconds (user + system) of the server process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        w.write(encode_packet(ConnectPacket("ready-check", 4), 4))
        ack = await asyncio.wait_for(r.read(4), 5)
        w.close()
        if ack[:1] == b"\x20":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not answer CONNECT in time")


async def start_mosquitto(tmp: Path) -> Server:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        "max_queued_messages 0\nset_tcp_nodelay true\n"
    )
    conf.chmod(0o644)
    proc = await asyncio.to_thread(
        subprocess.Popen, [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server("mosquitto", proc, port)
    await wait_ready(port, proc)
    return server


async def start_gatehub(tmp: Path) -> Server:
    port = free_port()
    data = tmp / "gatehub"
    env = {
        **os.environ,
        "GATEHUB_DATA_DIR": str(data),
        "GATEHUB_BIND_HOST": "127.0.0.1",
        "GATEHUB_MQTT_PORT": str(port),
        "GATEHUB_MQTTS_PORT": "-1",
        "GATEHUB_MQTT_WS_PORT": "-1",
        "GATEHUB_HTTP_PORT": "-1",
        "GATEHUB_IOTDA_PORT": "-1",
        "GATEHUB_GRPC_PORT": "-1",
        "GATEHUB_MQTT_ANONYMOUS_TENANT": "bench",
        "GATEHUB_LOG_LEVEL": "warning",
    }
    exe = Path(sys.executable).parent / "gatehub"
    cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "gatehub.cli.main", "serve"]
    proc = await asyncio.to_thread(subprocess.Popen, cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("gatehub", proc, port)
    await wait_ready(port, proc)
    return server


# --- the load generator (runs in child processes) --------------------------------------------
def _frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Whole MQTT packets at the front of ``buf`` (removed from it): (first byte, body)."""
    out = []
    pos = 0
    n = len(buf)
    while pos + 2 <= n:
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= n:
                break
            b = buf[i]
            length |= (b & 0x7F) << shift
            shift += 7
            i += 1
            if b < 0x80:
                break
        else:
            break
        if i >= n and (buf[i - 1] & 0x80):
            break
        end = i + length
        if end > n:
            break
        out.append((buf[pos], bytes(buf[i:end])))
        pos = end
    del buf[:pos]
    return out


class Publisher(asyncio.Protocol):
    """One connection publishing ``total`` messages: QoS 0 in chunks, QoS 1 with a window."""

    def __init__(self, index: int, packets: list[bytes], qos: int, total: int, window: int, rate: float) -> None:
        self.index = index
        self.packets = packets  # QoS 1: indexed by packet id - 1; QoS 0: one packet
        self.qos = qos
        self.total = total
        self.window = window
        self.rate = rate
        self.sent = 0
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()
        self.done = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(encode_packet(ConnectPacket(f"pub-{os.getpid()}-{self.index}", 4, keepalive=0), 4))  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connected, self.done):
            if not fut.done():
                fut.set_exception(ConnectionError(f"connection lost: {exc}"))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        now = time.monotonic()
        freed = 0
        for first, body in _frames(self.buf):
            kind = first >> 4
            if kind == 4:  # PUBACK
                pid = body[0] << 8 | body[1]
                t = self.sent_at.pop(pid, None)
                if t is not None:
                    self.latencies.append(now - t)
                self.acked += 1
                freed += 1
            elif kind == 2 and not self.connected.done():
                self.connected.set_result(None)
            elif kind == 13 and not self.done.done():  # PINGRESP: everything before it was processed
                self.done.set_result(None)
        if self.qos and self.acked >= self.total and not self.done.done():
            self.done.set_result(None)
        elif freed and self.qos and not self.rate:
            self._send_qos1(freed)

    def _send_qos1(self, n: int) -> None:
        assert self.transport is not None
        n = min(n, self.total - self.sent)
        if n <= 0:
            return
        now = time.monotonic()
        out = []
        for _ in range(n):
            pid = self.sent % 65535 + 1
            self.sent += 1
            self.sent_at[pid] = now
            out.append(self.packets[pid - 1])
        self.transport.write(b"".join(out))

    async def run(self) -> None:
        await self.connected
        assert self.transport is not None
        if self.rate:  # paced QoS 1
            t0 = time.monotonic()
            for i in range(self.total):
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._send_qos1(1)
        elif self.qos:
            self._send_qos1(self.window)
        else:
            packet = self.packets[0]
            while self.sent < self.total:
                n = min(64, self.total - self.sent)
                self.transport.write(packet * n)
                self.sent += n
                if not self.writable.is_set():
                    await self.writable.wait()
                else:
                    await asyncio.sleep(0)
            self.transport.write(encode_packet(PingReqPacket(), 4))
        await self.done
        self.transport.close()


async def _publishers(port: int, conns: int, qos: int, total: int, window: int, rate: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if qos:
        packets = [encode_publish(TOPIC, PAYLOAD, 1, packet_id=pid, version=4) for pid in range(1, 65536)]
    else:
        packets = [encode_publish(TOPIC, PAYLOAD, 0, version=4)]
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    pubs: list[Publisher] = []

    def factory(i: int) -> Publisher:
        return Publisher(i, packets, qos, per[i], window, rate / conns if rate else 0.0)

    for i in range(conns):
        _t, p = await loop.create_connection(lambda i=i: factory(i), "127.0.0.1", port)  # type: ignore[misc]
        pubs.append(p)
    await asyncio.gather(*(p.connected for p in pubs))
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.run() for p in pubs)), PHASE_TIMEOUT)
        ok = True
    except (TimeoutError, ConnectionError):
        ok = False
    t1 = time.monotonic()
    lat = sorted(x for p in pubs for x in p.latencies)
    return {
        "ok": ok,
        "start": t0,
        "end": t1,
        "sent": sum(p.sent for p in pubs),
        "acked": sum(p.acked for p in pubs),
        "p50": lat[len(lat) // 2] if lat else None,
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
    }


class Subscriber(asyncio.Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lost = 0.0
        self.first = 0.0
        self.last = 0.0
        self.buf = bytearray()
        loop = asyncio.get_running_loop()
        self.subscribed = loop.create_future()
        self.done = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(  # type: ignore[attr-defined]
            encode_packet(ConnectPacket(f"sub-{os.getpid()}", 4, keepalive=0), 4)
            + encode_packet(SubscribePacket(1, [Subscription("bench/#", 0)]), 4)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = time.monotonic()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = 0
        for first, _body in _frames(self.buf):
            kind = first >> 4
            if kind == 3:
                n += 1
            elif kind == 9 and not self.subscribed.done():
                self.subscribed.set_result(None)
        if n:
            now = time.monotonic()
            if not self.count:
                self.first = now
            self.count += n
            self.last = now
            if self.count >= self.expected and not self.done.done():
                self.done.set_result(None)


async def _subscriber(port: int, expected: int, ready: Any, idle: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, sub = await loop.create_connection(lambda: Subscriber(expected), "127.0.0.1", port)
    await asyncio.wait_for(sub.subscribed, 10)
    ready.set()
    deadline = time.monotonic() + PHASE_TIMEOUT
    timeline = []
    while not sub.done.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        timeline.append(sub.count)
        if sub.count and time.monotonic() - sub.last > idle:  # nothing more is coming
            break
    transport.close()
    return {"count": sub.count, "first": sub.first, "last": sub.last, "lost": sub.lost, "timeline": timeline}


def _run(coro: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _set_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def publisher_main(port: int, conns: int, qos: int, total: int, window: int, rate: float, out: Any) -> None:
    out.put(_run(_publishers(port, conns, qos, total, window, rate)))


def subscriber_main(port: int, expected: int, ready: Any, out: Any) -> None:
    out.put(_run(_subscriber(port, expected, ready, 2.0)))


async def _idle(port: int, n: int, batch: int) -> dict[str, Any]:
    _set_nofile(n + 1000)
    loop = asyncio.get_running_loop()
    connect = encode_packet(ConnectPacket("", 4, keepalive=0), 4)

    class Idle(asyncio.Protocol):
        def __init__(self) -> None:
            self.acked = loop.create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.write(connect)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            if not self.acked.done():
                self.acked.set_result(data[:4] == b"\x20\x02\x00\x00")

    transports = []
    ok = 0
    deadline = time.monotonic() + PHASE_TIMEOUT
    for start in range(0, n, batch):
        if time.monotonic() > deadline:
            break
        made = await asyncio.gather(
            *(loop.create_connection(Idle, "127.0.0.1", port) for _ in range(min(batch, n - start))),
            return_exceptions=True,
        )
        pairs = [m for m in made if isinstance(m, tuple)]
        transports += [t for t, _p in pairs]
        acks = await asyncio.gather(*(asyncio.wait_for(p.acked, 30) for _t, p in pairs), return_exceptions=True)
        ok += sum(1 for a in acks if a is True)
    return {"transports": transports, "ok": ok}


def idle_main(port: int, n: int, ready: Any, release: Any, out: Any) -> None:
    async def main() -> None:
        res = await _idle(port, n, 500)
        out.put({"ok": res["ok"]})
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, PHASE_TIMEOUT)
        for t in res["transports"]:
            t.close()
        await asyncio.sleep(0.5)

    _run(main())


# --- the orchestration ------------------------------------------------------------------------
@dataclass
class Figures:
    qos0_sent: float = 0.0
    qos0_delivered: float = 0.0
    qos0_cpu: float = 0.0
    qos1_acked: float = 0.0
    qos1_delivered: float = 0.0
    qos1_cpu: float = 0.0
    qos1_p50: float = 0.0
    qos1_p99: float = 0.0
    paced_p50: float = 0.0
    paced_p99: float = 0.0
    idle_bytes: float = 0.0
    idle_ok: int = 0
    notes: str = ""


async def _load_phase(
    ctx: Any, server: Server, procs: int, conns: int, qos: int, total: int, window: int, rate: float
) -> tuple[dict[str, Any], dict[str, Any], float]:
    out = ctx.Queue()
    ready = ctx.Event()
    sub = ctx.Process(target=subscriber_main, args=(server.port, total, ready, out))
    sub.start()
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, ready.wait, 30):
        sub.kill()
        raise RuntimeError("the subscriber did not subscribe in time")
    cpu0 = server.cpu()
    pubs = [
        ctx.Process(
            target=publisher_main,
            args=(server.port, conns // procs, qos, total // procs, window, rate / procs, out),
        )
        for _ in range(procs)
    ]
    for p in pubs:
        p.start()
    results = [await loop.run_in_executor(None, out.get, True, PHASE_TIMEOUT + 30) for _ in range(procs + 1)]
    cpu = server.cpu() - cpu0
    for p in [sub, *pubs]:
        p.join(10)
        if p.is_alive():
            p.kill()
    sub_res = next(r for r in results if "count" in r)
    pub_res = [r for r in results if "sent" in r]
    merged = {
        "ok": all(r["ok"] for r in pub_res),
        "start": min(r["start"] for r in pub_res),
        "end": max(r["end"] for r in pub_res),
        "sent": sum(r["sent"] for r in pub_res),
        "acked": sum(r["acked"] for r in pub_res),
        "p50": max((r["p50"] or 0) for r in pub_res),
        "p99": max((r["p99"] or 0) for r in pub_res),
    }
    return merged, sub_res, cpu


async def measure(ctx: Any, server: Server, quick: bool) -> Figures:
    f = Figures()
    procs = max(1, min(4, (os.cpu_count() or 2) // 2))
    conns = 8 if quick else 20
    total = 30_000 if quick else 200_000
    window = 32
    # QoS 0
    pub, sub, cpu = await _load_phase(ctx, server, procs, conns, 0, total, window, 0.0)
    f.qos0_sent = pub["sent"] / (pub["end"] - pub["start"])
    f.qos0_delivered = sub["count"] / max(1e-9, sub["last"] - pub["start"])
    f.qos0_cpu = cpu / max(1, sub["count"]) * 100_000
    lost0 = pub["sent"] - sub["count"]
    # QoS 1, saturated
    pub, sub, cpu = await _load_phase(ctx, server, procs, conns, 1, total, window, 0.0)
    f.qos1_acked = pub["acked"] / (pub["end"] - pub["start"])
    f.qos1_delivered = sub["count"] / max(1e-9, sub["last"] - pub["start"])
    f.qos1_cpu = cpu / max(1, pub["acked"]) * 100_000
    f.qos1_p50, f.qos1_p99 = pub["p50"] * 1000, pub["p99"] * 1000
    lost1 = pub["acked"] - sub["count"]
    if not pub["ok"]:
        f.notes += "QoS 1 run timed out; "
    # QoS 1, paced
    rate = 1000.0
    paced_total = int(rate * (2 if quick else 5))
    pub, _sub, _cpu = await _load_phase(ctx, server, 1, 10, 1, paced_total, window, rate)
    f.paced_p50, f.paced_p99 = pub["p50"] * 1000, pub["p99"] * 1000
    f.notes += f"{conns} publishers x {procs} process(es), window {window}; not delivered QoS0 {lost0}, QoS1 {lost1}"
    return f


async def measure_idle(ctx: Any, server: Server, n: int) -> tuple[float, int]:
    out = ctx.Queue()
    ready = ctx.Event()
    release = ctx.Event()
    await asyncio.sleep(0.5)
    rss0 = server.rss()
    p = ctx.Process(target=idle_main, args=(server.port, n, ready, release, out))
    p.start()
    loop = asyncio.get_running_loop()
    try:
        res = await loop.run_in_executor(None, out.get, True, PHASE_TIMEOUT + 30)
        await loop.run_in_executor(None, ready.wait, 30)
        await asyncio.sleep(1.0)
        rss1 = server.rss()
    finally:
        release.set()
        await loop.run_in_executor(None, p.join, 30)
        if p.is_alive():
            p.kill()
    ok = int(res["ok"])
    return (rss1 - rss0) / max(1, ok), ok


async def run(report: Report, quick: bool) -> None:
    _set_nofile(65536)  # the servers inherit it: 10,000 idle connections need the descriptors
    ctx = mp.get_context("spawn")
    idle_n = 1_000 if quick else 10_000
    results: dict[str, Figures] = {}
    why_not = ensure_mosquitto()
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-mqtt-") as d:
        tmp = Path(d)
        tmp.chmod(0o755)
        starters = [("gatehub", start_gatehub)]
        if why_not is None:
            starters.insert(0, ("mosquitto", start_mosquitto))
        else:
            print(f"[mqtt] Mosquitto unavailable: {why_not}", flush=True)
        for name, start in starters:
            server = await start(tmp)
            try:
                print(f"[mqtt] {name} on port {server.port} (pid {server.proc.pid})", flush=True)
                figs = await measure(ctx, server, quick)
                figs.idle_bytes, figs.idle_ok = await measure_idle(ctx, server, idle_n)
                results[name] = figs
            finally:
                server.stop()
    g = results["gatehub"]
    m = results.get("mosquitto")

    def ref(attr: str) -> float | None:
        return None if m is None else float(getattr(m, attr))

    missing = "" if m is not None else f"no Mosquitto reference: {why_not}"
    report.add("mqtt", "QoS 0 publish msg/s sent", g.qos0_sent, "msg/s", reference=ref("qos0_sent"), notes=missing)
    report.add(
        "mqtt", "QoS 0 msg/s delivered to the subscriber", g.qos0_delivered, "msg/s", reference=ref("qos0_delivered")
    )
    report.add(
        "mqtt",
        "QoS 1 publish msg/s acknowledged",
        g.qos1_acked,
        "msg/s",
        reference=ref("qos1_acked"),
        target_ratio=0.5,
        notes=g.notes,
    )
    report.add(
        "mqtt", "QoS 1 msg/s delivered to the subscriber", g.qos1_delivered, "msg/s", reference=ref("qos1_delivered")
    )
    report.add("mqtt", "QoS 1 saturated publish-to-PUBACK p50", g.qos1_p50, "ms", reference=ref("qos1_p50"))
    report.add("mqtt", "QoS 1 saturated publish-to-PUBACK p99", g.qos1_p99, "ms", reference=ref("qos1_p99"))
    report.add("mqtt", "QoS 1 paced 1000 msg/s publish-to-PUBACK p50", g.paced_p50, "ms", reference=ref("paced_p50"))
    report.add("mqtt", "QoS 1 paced 1000 msg/s publish-to-PUBACK p99", g.paced_p99, "ms", reference=ref("paced_p99"))
    report.add("mqtt", "server CPU per 100K QoS 0 messages", g.qos0_cpu, "s", reference=ref("qos0_cpu"))
    report.add("mqtt", "server CPU per 100K QoS 1 messages", g.qos1_cpu, "s", reference=ref("qos1_cpu"))
    report.add(
        "mqtt",
        f"RSS per idle connection at {idle_n:,} connections",
        g.idle_bytes,
        "bytes",
        reference=ref("idle_bytes"),
        notes=f"target under 10 KB: {'met' if g.idle_bytes < 10_240 else 'MISSED'}; {g.idle_ok:,} connected"
        + ("" if m is None else f" (mosquitto {m.idle_ok:,})"),
    )
    if m is not None:
        print(f"[mqtt] mosquitto: {m}", flush=True)
    with contextlib.suppress(Exception):
        print(f"[mqtt] gatehub: {g}", flush=True)
