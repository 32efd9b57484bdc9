"""MQTT memory under connection count and hostile input, on a fresh ``gatehub serve`` of its own.

- RSS per idle connection at 10,000 authenticated connections (3.1.1 CONNECT, keep alive off,
  CONNACK 0 through the anonymous tenant's authenticator), opened from a child process in
  batches of 500: (RSS after - RSS before) / connections accepted. The bench process raises its
  RLIMIT_NOFILE (the hub inherits it) and checks the hub's own limit in /proc/PID/limits.
- RSS growth while 100 sockets each send an unfinished 3.8 MB PUBLISH as their first packet
  (3.7 MB of it), measured at its peak (sampled every 20 ms), and how many were closed by the hub.

Unlike ``bench/mqtt.py`` (which measures idle memory after its throughput phases, against
Mosquitto) this one starts from an unloaded hub. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from bench.harness import Report
from bench.mqtt import Server, _set_nofile, measure_idle, start_gatehub

ATTACKERS = 100
ATTACK_ANNOUNCED = 3_800_000
ATTACK_SENT = 3_700_000


def hub_nofile(server: Server) -> int:
    """The soft RLIMIT_NOFILE of the hub process."""
    with open(f"/proc/{server.proc.pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


async def idle_per_connection(server: Server, n: int) -> tuple[float, int]:
    await asyncio.sleep(0.5)  # an unloaded hub: let its start settle before the first reading
    return await measure_idle(mp.get_context("spawn"), server, n)


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def _attacker(port: int, closed: list[bool]) -> None:
    chunk = bytes(64 * 1024)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, TimeoutError):
        closed.append(False)
        return
    try:
        writer.write(b"\x30" + _remaining(ATTACK_ANNOUNCED) + b"\x00\x01t")
        sent = 0
        while sent < ATTACK_SENT:
            writer.write(chunk)
            sent += len(chunk)
            await asyncio.wait_for(writer.drain(), 15)
        while await asyncio.wait_for(reader.read(65536), 3):
            pass
        closed.append(True)
    except TimeoutError:
        closed.append(False)
    except OSError:  # reset, broken pipe: closed by the hub
        closed.append(True)
    finally:
        writer.close()


async def unfinished_publish_attack(server: Server) -> tuple[int, int]:
    """(peak RSS growth in bytes, sockets the hub closed) for 100 unfinished 3.8 MB first PUBLISHes."""
    await asyncio.sleep(0.5)
    base = peak = server.rss()
    closed: list[bool] = []
    attack = asyncio.gather(*(_attacker(server.port, closed) for _ in range(ATTACKERS)))
    deadline = time.monotonic() + 60
    while not attack.done() and time.monotonic() < deadline:
        peak = max(peak, server.rss())
        await asyncio.sleep(0.02)
    if not attack.done():
        attack.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attack
    return max(peak, server.rss()) - base, sum(closed)


async def run(report: Report, quick: bool) -> None:
    n = 1_000 if quick else 10_000
    _set_nofile(65536)  # the hub inherits it: 10,000 connections need the descriptors
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-mqtt-idle-") as d:
        tmp = Path(d)
        server = await start_gatehub(tmp)
        try:
            limit = hub_nofile(server)
            note = f"hub RLIMIT_NOFILE {limit:,}"
            if limit and limit < n + 100:
                note += f" (below {n:,} + 100: connections beyond it are refused)"
            per_conn, ok = await idle_per_connection(server, n)
            report.add(
                "mqtt_idle",
                f"RSS per idle authenticated connection at {n:,} connections",
                per_conn,
                "bytes",
                notes=f"{ok:,} of {n:,} connected (CONNACK 0); {note}; target under 10 KB: "
                + ("met" if per_conn < 10_240 else "MISSED"),
            )
            growth, closed = await unfinished_publish_attack(server)
            report.add(
                "mqtt_idle",
                f"RSS growth, {ATTACKERS} sockets each sending an unfinished 3.8 MB first PUBLISH",
                growth / 1e6,
                "MB",
                notes=f"{closed} of {ATTACKERS} closed by the hub within 3 s of their last byte",
            )
        finally:
            server.stop()
