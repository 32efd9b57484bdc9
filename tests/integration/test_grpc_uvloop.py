"""The G-SDK gRPC listener on uvloop, the loop ``gatehub serve`` runs on by default.

uvloop's transports are not subclasses of :class:`asyncio.Transport`; the TLS relay in front of
grpc.aio once asserted that they were, so every call died right after the TLS handshake on the
shipped loop while the suite (plain asyncio) passed. This test runs the node and a generated
client on a uvloop loop and makes real calls through the relay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gatehub.transports.grpc.server import GrpcListener
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master

uvloop = pytest.importorskip("uvloop")


async def _calls(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("uvloop"), type(loop)
    async with running_master(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gatehub.db'}") as m:
        g = m.g
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            gw = m.gateway(ch)
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["gw-1"]), metadata=md, timeout=CALL_TIMEOUT)
            ids = (await gw.GetList(g.gateway_pb2.GetListRequest(), metadata=md, timeout=CALL_TIMEOUT)).gatewayIDs
            assert list(ids) == ["gw-1"]
        # the relay recorded the connection's certificate and drops it again on close
        listener = m.node.component(GrpcListener)
        assert listener is not None
        relay = listener.relay
        assert relay is not None
        for _ in range(250):
            if not relay.connections:
                break
            await asyncio.sleep(0.02)
        assert relay.connections == {}


def test_grpc_calls_through_the_relay_on_uvloop(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(_calls(tmp_path), 60))
