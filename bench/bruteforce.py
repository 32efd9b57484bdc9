"""Guessing credentials against a node: wrong MQTT tokens and wrong REST API keys per second
that the node *checks*, with the credential guard at its defaults and with its back-off off
(the reference: what an attacker gets without it).

A gatehub node in a child process (SQLite in a temp folder, uvloop, MQTT and HTTP only) and a
load client in this process: sequential guesses (one connection or request after the other, as
a simple script does), then parallel guesses over ``CONCURRENCY`` connections at once (as a
serious one does). For MQTT, a CONNACK "bad user name or password" (4) is a checked guess; a
"server unavailable" (3: backed off, not checked) is not. Each scenario runs ``SECONDS``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import signal
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench.harness import Report

SECONDS = 5.0
CONCURRENCY = 32


def _hub_main(data_dir: str, backoff: bool, conn: Connection) -> None:
    from gatehub.loop import run_loop

    run_loop(_hub(data_dir, backoff, conn))


async def _hub(data_dir: str, backoff: bool, conn: Connection) -> None:
    from gatehub.app.node import Node
    from gatehub.config import Settings

    values: dict[str, Any] = {n: -1 for n in Settings.model_fields if n.endswith("_port") and "device" not in n}
    values.update(data_dir=data_dir, bind_host="127.0.0.1", mqtt_port=0, http_port=0, log_level="error")
    if not backoff:
        values["guard_backoff_base"] = 0.0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Node(Settings.model_validate(values)) as node:
        conn.send({"mqtt": node.endpoints.extra["mqtt_tcp"], "http": node.endpoints.http})
        await stop.wait()


def _connect_packet(i: int) -> bytes:
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = s(b"MQTT") + bytes([4, 0x82]) + (60).to_bytes(2, "big") + s(f"guess-{i}".encode()) + s(f"tok-{i}".encode())
    return b"\x10" + bytes([len(body)]) + body


async def _mqtt_guess(port: int, source: str, i: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(_connect_packet(i))
        data = await reader.readexactly(4)
        return data[3]
    finally:
        writer.close()


async def _mqtt(port: int, source: str, concurrency: int) -> tuple[int, int]:
    """(checked guesses, refused unchecked) in SECONDS."""
    deadline = time.monotonic() + SECONDS
    checked = unchecked = 0
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal checked, unchecked
        while time.monotonic() < deadline:
            rc = await _mqtt_guess(port, source, next(counter))
            if rc == 4:
                checked += 1
            else:
                unchecked += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return checked, unchecked


async def _rest(port: int, source: str, concurrency: int) -> tuple[int, int]:
    deadline = time.monotonic() + SECONDS
    checked = unchecked = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = httpx.AsyncHTTPTransport(local_address=source, limits=limits)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", transport=transport, timeout=30) as c:

        async def worker(w: int) -> None:
            nonlocal checked, unchecked
            i = 0
            while time.monotonic() < deadline:
                i += 1
                r = await c.get("/tenants", headers={"Authorization": f"Bearer ghk_guess{w}x{i}_secret"})
                if r.status_code == 401:
                    checked += 1
                else:
                    unchecked += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return checked, unchecked


async def _measure(backoff: bool) -> dict[str, tuple[int, int]]:
    ctx = mp.get_context("spawn")
    out: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-bf-") as tmp:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_hub_main, args=(tmp, backoff, child))
        proc.start()
        try:
            ports = await asyncio.to_thread(parent.recv)
            # the guard keys on the client address: each scenario guesses from one of its own
            out["mqtt sequential"] = await _mqtt(ports["mqtt"], "127.0.0.21", 1)
            out["mqtt parallel"] = await _mqtt(ports["mqtt"], "127.0.0.22", CONCURRENCY)
            out["rest sequential"] = await _rest(ports["http"], "127.0.0.23", 1)
            out["rest parallel"] = await _rest(ports["http"], "127.0.0.24", CONCURRENCY)
        finally:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()
            await asyncio.to_thread(proc.join, 30)
    return out


async def run(report: Report, quick: bool) -> None:
    global SECONDS
    if quick:
        SECONDS = 1.5
    reference = await _measure(backoff=False)
    guarded = await _measure(backoff=True)
    for name, (checked, unchecked) in guarded.items():
        ref_checked = reference[name][0]
        report.add(
            "bruteforce",
            f"{name}: wrong credentials checked/s with the guard",
            checked / SECONDS,
            "guesses/s",
            reference=ref_checked / SECONDS,
            notes=f"{unchecked / SECONDS:,.0f}/s refused unchecked (backed off); reference = back-off off",
        )
