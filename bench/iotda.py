"""IoTDA HTTPS property reports per second, stored, against a bare Starlette JSON endpoint.

Three processes: a gatehub node (SQLite in a temp folder, uvloop, IoTDA listener only), a bare
Starlette app on uvicorn over HTTPS with the same certificate (the reference: parse the JSON
body, answer JSON), and a load client (uvloop, asyncio Protocol, several keep-alive TLS
connections, one request in flight per connection). The client sends the same request bytes to
both servers; every report carries a distinct event_time so every row is distinct, and after
the run the node is stopped and the telemetry table is counted: every acknowledged report must
be there.

Scenarios: one device reporting 2 properties per request; a gateway reporting 50 children with
2 properties each (100 rows) per request.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import signal
import sqlite3
import ssl
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.harness import Report

SECRET = "bench-secret-0123456789"
BASE_MS = 1_700_000_000_000
CHILDREN = 50


# -- the hub -------------------------------------------------------------------------------------


def _hub_main(data_dir: str, conn: Connection) -> None:
    from gatehub.loop import run_loop

    run_loop(_hub(data_dir, conn))


async def _hub(data_dir: str, conn: Connection) -> None:
    from gatehub.app.node import Node
    from gatehub.config import Settings
    from gatehub.domain.model import NodeType

    values: dict[str, Any] = {n: -1 for n in Settings.model_fields if n.endswith("_port") and "device" not in n}
    values.update(
        data_dir=data_dir,
        bind_host="127.0.0.1",
        iotda_port=0,
        iotda_rate_per_device=0,
        iotda_rate_per_tenant=0,
        log_level="warning",
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Node(Settings.model_validate(values)) as node:
        st = node.store
        assert st is not None and node.pki is not None
        await st.accounts.create_tenant("bench")
        await st.catalog.create_product("bench", "dp", node_type=NodeType.DIRECT)
        await st.catalog.create_product("bench", "gwp", node_type=NodeType.GATEWAY)
        await st.catalog.create_product("bench", "sp", node_type=NodeType.SUBDEVICE)
        await st.devices.create("bench", "device", "dp", device_id="dev", secret=SECRET)
        await st.devices.create("bench", "gateway", "gwp", device_id="gw", secret=SECRET)
        for i in range(CHILDREN):
            await st.devices.create("bench", f"child {i}", "sp", device_id=f"child{i:02d}", parent_id="gw")
        conn.send(
            {"port": node.endpoints.extra["iotda"], "ca": node.pki.ca.cert_pem, "pki": str(node.settings.pki_dir)}
        )
        cpu0 = time.process_time()
        await stop.wait()
        w = node.writer
        stats: dict[str, Any] = {"cpu": time.process_time() - cpu0}
        if w is not None:
            stats.update(rows_committed=w.rows_committed, transactions=w.transactions, commit_s=w.commit_seconds)
    conn.send({"rows_committed": -1, **stats})


# -- the reference -------------------------------------------------------------------------------


def _ref_main(pki_dir: str, conn: Connection) -> None:
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    conn.send({"port": sock.getsockname()[1]})
    config = uvicorn.Config(
        app,
        loop="uvloop",
        log_config=None,
        access_log=False,
        lifespan="off",
        ssl_certfile=f"{pki_dir}/server.crt",
        ssl_keyfile=f"{pki_dir}/server.key",
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- the client ----------------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.transport.write(self.client.request())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(buf[:i]).lower()
            j = head.find(b"content-length:")
            length = int(head[j + 15 : head.find(b"\r\n", j) if head.find(b"\r\n", j) > 0 else None]) if j >= 0 else 0
            if len(buf) < i + 4 + length:
                return
            del buf[: i + 4 + length]
            self.client.answered(int(head[9:12]))
            if self.client.running:
                assert self.transport is not None
                self.transport.write(self.client.request())
            else:
                if not self.done.done():
                    self.done.set_result(None)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Client:
    def __init__(self, path: bytes, token: bytes, template: bytes) -> None:
        self.head = b"POST %s HTTP/1.1\r\nHost: bench\r\naccess_token: %s\r\nContent-Type: application/json\r\n" % (
            path,
            token,
        )
        self.parts = template.split(b"@TS@")
        self.seq = itertools.count()
        self.running = True
        self.ok = 0
        self.errors = 0
        self.counting = False
        self.counted = 0

    def request(self) -> bytes:
        from gatehub.protocols.iotda import format_event_time

        ts = format_event_time(BASE_MS + next(self.seq)).encode()
        body = ts.join(self.parts)
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)

    def answered(self, status: int) -> None:
        if status == 200:
            self.ok += 1
            if self.counting:
                self.counted += 1
        else:
            self.errors += 1


def _client_main(port: int, ca_pem: str, job: dict[str, Any], conn: Connection) -> None:
    import uvloop

    try:
        conn.send(uvloop.run(_load(port, ca_pem, job)))
    except BaseException as exc:
        conn.send({"error": repr(exc)})
        raise


async def _load(port: int, ca_pem: str, job: dict[str, Any]) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=ca_pem)
    client = _Client(job["path"], job["token"], job["template"])
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(job["connections"]):
        _t, proto = await loop.create_connection(lambda: _Conn(client), "127.0.0.1", port, ssl=ctx)
        conns.append(proto)
    await asyncio.sleep(job["warmup"])
    client.counting = True
    t0 = time.perf_counter()
    await asyncio.sleep(job["duration"])
    client.counting = False
    elapsed = time.perf_counter() - t0
    client.running = False
    await asyncio.wait_for(asyncio.gather(*(c.done for c in conns)), 30)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return {"rate": client.counted / elapsed, "ok": client.ok, "errors": client.errors}


async def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    try:
        if not await asyncio.to_thread(parent.poll, 120):
            raise RuntimeError(f"{target.__name__} gave no answer")
        out: dict[str, Any] = parent.recv()
        if "error" in out:
            raise RuntimeError(f"{target.__name__} failed: {out['error']}")
    finally:
        proc.join(5)
    return out


# -- the benchmark -------------------------------------------------------------------------------


def _templates() -> dict[str, tuple[bytes, bytes, int]]:
    single = b'{"services":[{"service_id":"env","properties":{"temperature":21.5,"humidity":40},"event_time":"@TS@"}]}'
    child = (
        b'{"device_id":"%s","services":[{"service_id":"env",'
        b'"properties":{"temperature":21.5,"humidity":40},"event_time":"@TS@"}]}'
    )
    batch = b'{"devices":[' + b",".join(child % f"child{i:02d}".encode() for i in range(CHILDREN)) + b"]}"
    return {
        "single": (b"/v5/devices/dev/sys/properties/report", single, 2),
        "batch": (b"/v5/devices/gw/sys/gateway/sub-devices/properties/report", batch, 2 * CHILDREN),
    }


async def _token(port: int, ca_pem: str, device: str) -> bytes:
    import datetime as dt

    import httpx

    from gatehub.protocols.iotda import password

    ts = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H")
    body = {"device_id": device, "sign_type": 1, "timestamp": ts, "password": password(SECRET, ts)}
    async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=ca_pem), timeout=30) as c:
        r = await c.post(f"https://127.0.0.1:{port}/v5/device-auth", json=body)
        r.raise_for_status()
        return str(r.json()["access_token"]).encode()


async def run(report: Report, quick: bool) -> None:
    duration, warmup = (2.0, 0.5) if quick else (8.0, 1.0)
    connections = 32
    with tempfile.TemporaryDirectory(prefix="gatehub-bench-iotda-") as tmp:
        ctx = mp.get_context("spawn")
        hub_parent, hub_child = ctx.Pipe()
        hub = ctx.Process(target=_hub_main, args=(tmp, hub_child), daemon=True)
        hub.start()
        ref: mp.process.BaseProcess | None = None
        try:
            if not await asyncio.to_thread(hub_parent.poll, 120):
                raise RuntimeError("the hub did not start")
            info = hub_parent.recv()
            ref_parent, ref_child = ctx.Pipe()
            ref = ctx.Process(target=_ref_main, args=(info["pki"], ref_child), daemon=True)
            ref.start()
            ref_port = (await asyncio.to_thread(ref_parent.recv))["port"]
            await asyncio.sleep(1.0)  # uvicorn starts serving the bound socket
            tokens = {
                "single": await _token(info["port"], info["ca"], "dev"),
                "batch": await _token(info["port"], info["ca"], "gw"),
            }
            expected_rows = 0
            for name, (path, template, rows) in _templates().items():
                job = {"path": path, "token": tokens[name], "template": template, "connections": connections,
                       "duration": duration, "warmup": warmup}  # fmt: skip
                ref_out = await _in_process(_client_main, ref_port, info["ca"], job)
                hub_out = await _in_process(_client_main, info["port"], info["ca"], job)
                expected_rows += hub_out["ok"] * rows
                what = "single device, 2 properties" if name == "single" else f"gateway batch of {CHILDREN} children"
                report.add(
                    "iotda",
                    f"property reports/s ({what})",
                    hub_out["rate"],
                    "req/s",
                    reference=ref_out["rate"],
                    target_ratio=0.6,
                    notes=f"{hub_out['rate'] * rows:,.0f} rows/s stored; {connections} keep-alive TLS connections; "
                    f"errors hub {hub_out['errors']} ref {ref_out['errors']}",
                )
            # what storage alone allows for the batch: the raw SQLite driver (executemany, same
            # pragmas, insert + latest values) committing the same number of rows, 50 requests'
            # worth per transaction; the hub cannot store gateway batches faster than this
            from bench.storage import _fresh_sqlite, _raw_sqlite

            raw_url = await _fresh_sqlite(Path(tmp), "raw.db")
            raw = await _raw_sqlite(
                raw_url.split("///", 1)[1], 50 * 2 * CHILDREN, 100_000 if quick else 400_000, True, CHILDREN, 2
            )
            batch_rate = next(f.value for f in report.figures if f.name.endswith(f"batch of {CHILDREN} children)"))
            report.add(
                "iotda",
                "gateway batch reports/s against the raw SQLite driver storing the same rows",
                batch_rate,
                "req/s",
                reference=raw / (2 * CHILDREN),
                notes=f"raw driver {raw:,.0f} rows/s (insert + latest values of the same {2 * CHILDREN} series, "
                f"5,000 rows a transaction) = {raw / (2 * CHILDREN):,.0f} requests of {2 * CHILDREN} rows/s",
            )
            hub.terminate()  # SIGTERM: graceful stop, the writer drains
            done = await asyncio.to_thread(hub_parent.poll, 60)
            wstats = hub_parent.recv() if done else {"rows_committed": -1}
            committed = wstats["rows_committed"]
            with sqlite3.connect(Path(tmp) / "gatehub.db") as db:
                stored = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
            report.add(
                "iotda",
                "acknowledged rows found stored",
                100.0 * stored / max(expected_rows, 1),
                "%",
                notes=f"{stored:,} rows in the database, {expected_rows:,} acknowledged, "
                f"writer committed {committed:,} in {wstats.get('transactions', 0):,} transactions taking "
                f"{wstats.get('commit_s', 0.0):.1f} s; hub process CPU {wstats.get('cpu', 0.0):.1f} s",
            )
        finally:
            for proc in (hub, ref):
                if proc is not None and proc.is_alive():
                    proc.kill()
                    proc.join(5)
