"""Master gateway (G-SDK gRPC): status fan-out latency and certificate issuance rate.

Fan-out: a node (SQLite, gRPC listener with its TLS relay on 127.0.0.1) and a separate client
process holding 1, 100 and 1,000 ``SubscribeStatus`` streams over mTLS (100 streams per
connection). Each status change is triggered with ``store.devices.set_presence`` — what the
MQTT transport calls when a gateway's CONNECT is accepted — so the latency runs from that call
(including the SQLite commit) to the moment the client process has the ``StatusChange`` in
hand, for every stream (CLOCK_MONOTONIC is shared by both processes). Target: p99 < 20 ms at
1,000 streams.

Reference, measured in the same run: a bare grpc.aio server (no TLS, no login, no relay, no
database) whose SubscribeStatus writes the same ``StatusChange`` to every stream, read by the
same client process. It is what grpc.aio itself costs on this machine: gatehub cannot be faster
than the stack it runs on, so its figures are given as ratios to it (latency: lower is better).

Issuance: gateway certificates (EC P-256, recorded in the issuance history) per second, and
the same without the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import Report, Timer

_CLIENT = r"""
import asyncio, json, sys, time
import grpc
from gatehub.transports.grpc._generated import gateway_pb2, gateway_pb2_grpc, login_pb2, login_pb2_grpc

async def main(port, ca, cert, key, n, per_channel, k):
    nch = (n + per_channel - 1) // per_channel
    opts = [("grpc.use_local_subchannel_pool", 1)]
    if ca == "-":  # the bare grpc.aio reference: no TLS, no login
        chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) for _ in range(nch)]
        md = ()
    else:
        creds = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(), open(cert, "rb").read())
        chans = [grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=opts) for _ in range(nch)]
        token = (await login_pb2_grpc.LoginStub(chans[0]).Login(
            login_pb2.LoginRequest(tenantCert=open(cert).read()), timeout=30)).jwtToken
        md = (("token", token),)
    recv = {}
    state = {"ready": 0, "count": 0}
    ready, done = asyncio.Event(), asyncio.Event()

    async def one(ch):
        call = gateway_pb2_grpc.GatewayStub(ch).SubscribeStatus(
            gateway_pb2.SubscribeStatusRequest(queueSize=10000), metadata=md)
        await call.initial_metadata()
        state["ready"] += 1
        if state["ready"] == n:
            ready.set()
        async for x in call:
            recv.setdefault(x.gatewayID, []).append(time.monotonic())
            state["count"] += 1
            if state["count"] == n * k:
                done.set()

    tasks = [asyncio.create_task(one(chans[i // per_channel])) for i in range(n)]
    await asyncio.wait_for(ready.wait(), 120)
    print("READY", flush=True)
    await asyncio.wait_for(done.wait(), 300)
    print(json.dumps(recv), flush=True)
    for t in tasks:
        t.cancel()
    for ch in chans:
        await ch.close()

asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
                 int(sys.argv[7])))
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class _BareStatus:
    """The reference: a bare grpc.aio SubscribeStatus that writes each change to every stream."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[Any]] = []

    async def SubscribeStatus(self, request: Any, context: Any) -> None:
        q: asyncio.Queue[Any] = asyncio.Queue()
        self.queues.append(q)
        try:
            await context.send_initial_metadata(())
            while True:
                await context.write(await q.get())
        finally:
            self.queues.remove(q)

    async def change(self, gateway_id: str) -> None:
        from gatehub.transports.grpc._generated import gateway_pb2

        msg = gateway_pb2.StatusChange(
            gatewayID=gateway_id, status=gateway_pb2.CONNECTED, timestamp=int(time.time())
        ).SerializeToString()
        for q in self.queues:
            q.put_nowait(msg)


async def _bare_server() -> tuple[Any, int, _BareStatus]:
    import grpc

    from gatehub.transports.grpc._generated import gateway_pb2

    bare = _BareStatus()
    handler = grpc.method_handlers_generic_handler(
        "gsdk.gateway.Gateway",
        {
            "SubscribeStatus": grpc.unary_stream_rpc_method_handler(
                bare.SubscribeStatus,
                request_deserializer=gateway_pb2.SubscribeStatusRequest.FromString,
                response_serializer=lambda b: b,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, bare


async def _fan_out(
    port: int,
    files: dict[str, Path],
    streams: int,
    events: int,
    gap: float,
    change: Callable[[str], Awaitable[None]],
    secure: bool = True,
) -> tuple[list[float], list[float], list[float]]:
    """(latency of every delivery, latency of the last delivery of each change, trigger times) in ms."""
    creds = [str(files["ca"]), str(files["cert"]), str(files["key"])] if secure else ["-", "-", "-"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(files["client"]),
        str(port),
        *creds,
        str(streams),
        "100",
        str(events),
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if line.strip() != b"READY":
            raise RuntimeError(f"client failed: {line!r}")
        sent: dict[str, float] = {}
        trigger: list[float] = []
        for i in range(events):
            gid = f"gw-{i}"
            t0 = time.monotonic()
            sent[gid] = t0
            await change(gid)
            trigger.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(gap)
        out = await asyncio.wait_for(proc.stdout.readline(), 300)
        recv: dict[str, list[float]] = json.loads(out)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    lat = [(t - sent[g]) * 1000 for g, ts in recv.items() for t in ts]
    last = [(max(ts) - sent[g]) * 1000 for g, ts in recv.items()]
    return lat, last, trigger


async def _fan_out_figures(
    report: Report, node: Any, files: dict[str, Path], bare: tuple[int, _BareStatus], streams: int, events: int
) -> None:
    from gatehub.domain.model import Presence

    store = node.store
    for i in range(events):  # reset: every change below is a real OFFLINE -> ONLINE transition
        await store.devices.set_presence("bench", f"gw-{i}", Presence.OFFLINE)
    gap = 0.02 if streams < 1000 else 0.3  # let one fan-out finish before the next change

    async def presence(gid: str) -> None:
        await store.devices.set_presence("bench", gid, Presence.ONLINE)

    lat, last, commit = await _fan_out(node.endpoints.extra["grpc"], files, streams, events, gap, presence)
    ref_lat, ref_last, _ = await _fan_out(bare[0], files, streams, events, gap, bare[1].change, secure=False)
    note = (
        f"{events} changes x {streams} streams; from set_presence (what MQTT CONNECT calls; incl. SQLite commit "
        f"p50 {statistics.median(commit):.1f} ms) to receipt in a client process over mTLS; reference: bare grpc.aio"
    )
    report.add(
        "master",
        f"status fan-out p50, {streams} streams",
        _pct(lat, 0.5),
        "ms",
        reference=_pct(ref_lat, 0.5),
        notes=note,
    )
    report.add(
        "master",
        f"status fan-out p99, {streams} streams",
        _pct(lat, 0.99),
        "ms",
        reference=_pct(ref_lat, 0.99),
        notes="target < 20 ms at 1,000 streams" if streams >= 1000 else "",
    )
    report.add(
        "master",
        f"status fan-out, last stream served p50, {streams} streams",
        _pct(last, 0.5),
        "ms",
        reference=_pct(ref_last, 0.5),
    )


async def _issuance(report: Report, node: Any, seconds: float) -> None:
    from gatehub.pki import PKIName, issue_gateway_certificate

    reg = node.services.registry
    subject = PKIName(country="KR", organization="bench")
    n, t = 0, Timer()
    while t.elapsed < seconds:
        await reg.create_gateway_certificate("bench", f"gw-{n % 1000}", subject, 1)
        n += 1
    report.add("master", "gateway certificates issued + recorded", n / t.elapsed, "certs/s", notes="EC P-256, SQLite")
    n, t = 0, Timer()
    while t.elapsed < seconds:
        issue_gateway_certificate(node.pki.ca, "bench", "gw-x", subject, 1)
        n += 1
    report.add("master", "gateway certificates issued (no database)", n / t.elapsed, "certs/s")


async def run(report: Report, quick: bool) -> None:
    from gatehub.app.node import Node, settle_heap
    from gatehub.config import Settings
    from gatehub.pki import PKIName

    with tempfile.TemporaryDirectory(prefix="gatehub-bench-master-") as tmp:
        root = Path(tmp)
        settings = Settings.model_validate(
            {
                "data_dir": root / "var",
                "bind_host": "127.0.0.1",
                "http_port": -1,
                "iotda_port": -1,
                "mqtt_port": -1,
                "mqtts_port": -1,
                "mqtt_ws_port": -1,
                "grpc_port": 0,
                "log_level": "warning",
            }
        )
        async with Node(settings) as node:
            reg = node.services.registry
            await node.store.accounts.create_tenant("bench")
            events = 10 if quick else 50
            await reg.add_gateways("bench", [f"gw-{i}" for i in range(events)])
            cert = await reg.create_tenant_certificate("bench", PKIName(), 1)
            files = {"client": root / "client.py", "ca": root / "ca.pem", "cert": root / "c.pem", "key": root / "k.pem"}
            files["client"].write_text(_CLIENT)
            files["ca"].write_text(node.pki.ca.cert_pem)
            files["cert"].write_text(cert.cert_pem)
            files["key"].write_text(cert.key_pem)
            os.chmod(files["key"], 0o600)
            settle_heap()  # what `gatehub serve` does once it is up
            server, port, bare = await _bare_server()
            try:
                for streams in (1, 100) if quick else (1, 100, 1000):
                    await _fan_out_figures(report, node, files, (port, bare), streams, events)
            finally:
                await server.stop(0)
            await _issuance(report, node, 1.0 if quick else 3.0)
