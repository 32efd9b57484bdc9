"""``/healthz`` latency of a real ``gatehub serve`` while 200 slowloris sockets hold connections.

One ``gatehub serve`` process (SQLite in a temporary folder, the default event loop, only the
REST listener on, every other setting at its default, so ``http_header_timeout`` is 10 s). A
client on one keep-alive connection asks ``/healthz`` one request at a time, every 10 ms:

1. for a few seconds alone (the baseline p50/p99);
2. for :data:`ATTACK_SECONDS` while :data:`SLOWLORIS` other sockets each send a partial request
   head (``GET /healthz HTTP/1.1``, ``Host``) and then trickle one more byte of a header every
   :data:`TRICKLE_SECONDS` (each byte would restart an idle timer; only a deadline for the whole
   head ends them).

Figures: p50 and p99 of both phases, and how many slowloris sockets the hub still held open at
the end of the attack (0 when heads have a deadline shorter than the attack). Bounded: about
25 s with ``--quick`` or without.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

from bench.harness import Report

SLOWLORIS = 200
TRICKLE_SECONDS = 2.0
ATTACK_SECONDS = 14.0
BASELINE_SECONDS = 4.0
GAP_SECONDS = 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(root: Path, port: int) -> Path:
    off = ["iotda_port", "mqtt_port", "mqtts_port", "mqtt_ws_port", "grpc_port"]
    off += ["devicelink_port_min", "devicelink_stream_port", "devicelink_stream_tls_port"]
    lines = [f'data_dir = "{root / "var"}"', 'bind_host = "127.0.0.1"', f"http_port = {port}"]
    lines += [f"{name} = -1" for name in off]
    lines.append('log_level = "warning"')
    path = root / "hub.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class _Health(asyncio.Protocol):
    """One keep-alive connection; ``ask()`` sends ``GET /healthz`` and waits for the answer."""

    REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return
        head = bytes(self.buf[:i]).lower()
        j = head.find(b"content-length:")
        length = int(head[j + 15 :].split(b"\r\n", 1)[0]) if j >= 0 else 0
        if len(self.buf) < i + 4 + length:
            return
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"/healthz answered {head[:40]!r}")
        del self.buf[: i + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the /healthz connection was closed"))

    async def ask(self) -> float:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.transport.write(self.REQUEST)
        await asyncio.wait_for(self.waiter, 10.0)
        return time.perf_counter() - t0


class _Slow(asyncio.Protocol):
    def __init__(self, open_set: set[_Slow]) -> None:
        self.open = open_set
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = t
        self.open.add(self)
        t.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self)


async def _sample(health: _Health, seconds: float, out: list[float]) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        out.append(await health.ask())
        await asyncio.sleep(GAP_SECONDS)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _trickle(slow: set[_Slow], seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(min(TRICKLE_SECONDS, max(0.0, end - time.perf_counter())))
        for s in list(slow):
            if s.transport is not None and not s.transport.is_closing():
                s.transport.write(b"a")


async def _wait_healthy(port: int, proc: asyncio.subprocess.Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"gatehub serve exited with {proc.returncode}")
        try:
            _t, h = await loop.create_connection(_Health, "127.0.0.1", port)
            try:
                await h.ask()
                return
            finally:
                _t.close()
        except (OSError, ConnectionError, TimeoutError):
            await asyncio.sleep(0.2)
    raise RuntimeError("no /healthz answer in time")


async def run(report: Report, quick: bool) -> None:
    loop = asyncio.get_running_loop()
    gatehub = Path(sys.executable).parent / "gatehub"
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-slowloris-") as tmp:
        port = _free_port()
        config = _config(Path(tmp), port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
        proc = await asyncio.create_subprocess_exec(
            str(gatehub), "serve", "--config", str(config), env=env, stdout=DEVNULL, stderr=DEVNULL
        )
        slow: set[_Slow] = set()
        try:
            await _wait_healthy(port, proc)
            transport, health = await loop.create_connection(_Health, "127.0.0.1", port)
            base: list[float] = []
            await _sample(health, BASELINE_SECONDS, base)
            attack: list[float] = []
            t0 = time.perf_counter()
            for _ in range(SLOWLORIS):
                await loop.create_connection(lambda: _Slow(slow), "127.0.0.1", port)
            opened = len(slow)
            trickle = asyncio.create_task(_trickle(slow, ATTACK_SECONDS - (time.perf_counter() - t0)))
            await _sample(health, ATTACK_SECONDS - (time.perf_counter() - t0), attack)
            await trickle
            still_open = len(slow)
            transport.close()
        finally:
            for s in list(slow):
                if s.transport is not None:
                    s.transport.close()
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    name = "http_slowloris"
    report.add(name, "/healthz p50, alone", _pct(base, 0.5), "ms", notes=f"{len(base)} requests")
    report.add(name, "/healthz p99, alone", _pct(base, 0.99), "ms")
    notes = f"{len(attack)} requests, {opened} slowloris sockets opened, a byte every {TRICKLE_SECONDS:.0f} s"
    report.add(name, f"/healthz p50, {SLOWLORIS} slowloris", _pct(attack, 0.5), "ms", notes=notes)
    report.add(name, f"/healthz p99, {SLOWLORIS} slowloris", _pct(attack, 0.99), "ms")
    report.add(
        name,
        f"slowloris sockets still open after {ATTACK_SECONDS:.0f} s",
        float(still_open),
        "sockets",
        notes="http_header_timeout closes them (default 10 s)",
    )
