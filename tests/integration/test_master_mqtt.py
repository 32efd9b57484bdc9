"""The master gateway seen by a G-SDK client while real MQTT gateways connect and disconnect.

A tenant logs in over mTLS with a generated G-SDK client, subscribes to the status stream, and
watches a gateway connect over MQTT (access token on 1883, then its hub-issued certificate on
8883), show as connected in Get, and disconnect. Blacklisting that certificate through gRPC closes
the live MQTT/TLS session with DISCONNECT 0x87 within a second and refuses its next handshake;
removing it from the blacklist readmits it.
"""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gsdk_client import CALL_TIMEOUT, running_master
from tests.integration.mqtt_helpers import V5, Paho

T = CALL_TIMEOUT


async def _status(call: Any, timeout: float = 5.0) -> tuple[str, int]:
    msg = await asyncio.wait_for(call.read(), timeout)
    return msg.gatewayID, msg.status


async def test_status_stream_sees_real_mqtt_gateways(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url, mqtt_port=0, mqtts_port=0) as m:
        g = m.g
        node = m.node
        store = node.store
        assert store is not None and node.pki is not None
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            gw = m.gateway(ch)
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["line-1"]), metadata=md, timeout=T)
            call = gw.SubscribeStatus(g.gateway_pb2.SubscribeStatusRequest(queueSize=100), metadata=md)
            await asyncio.wait_for(call.initial_metadata(), 5)

            # 1. the gateway connects with its access token over plain MQTT
            token = (await store.devices.get("acme", "line-1")).access_token
            with Paho("line-1", V5) as c:
                rc, _ = await c.connect(node.endpoints.extra["mqtt_tcp"], username=token)
                assert rc == 0
                assert await _status(call) == ("line-1", g.gateway_pb2.CONNECTED)
                info = await gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=["line-1"]), metadata=md, timeout=T)
                assert info.gatewayInfos[0].isConnected is True
                await c.disconnect()
            assert await _status(call) == ("line-1", g.gateway_pb2.DISCONNECTED)
            info = await gw.Get(g.gateway_pb2.GetRequest(gatewayIDs=["line-1"]), metadata=md, timeout=T)
            assert info.gatewayInfos[0].isConnected is False

            # 2. the same gateway with a certificate the master issued, over MQTT/TLS
            made = await gw.CreateCertificate(
                g.gateway_pb2.CreateCertificateRequest(
                    gatewayID="line-1",
                    subject=g.cert_pb2.PKIName(country="KR", commonName="line 1"),
                    expireAfterYears=1,
                ),
                metadata=md,
                timeout=T,
            )
            tls = node.pki.client_context(made.gatewayCert, made.gatewayKey)
            c = Paho("line-1-tls", V5)
            try:
                rc, _ = await c.connect(node.endpoints.extra["mqtt_tls"], tls=tls)
                assert rc == 0
                assert await _status(call) == ("line-1", g.gateway_pb2.CONNECTED)

                # 3. blacklisting its certificate through gRPC ends the live MQTT session quickly
                hist = await gw.GetIssuanceHistory(
                    g.gateway_pb2.GetIssuanceHistoryRequest(gatewayIDs=["line-1"]), metadata=md, timeout=T
                )
                serial = hist.certInfos[-1].serialNO
                started = time.monotonic()
                await gw.AddCertificateBlacklist(
                    g.gateway_pb2.AddCertificateBlacklistRequest(gatewayID="line-1", serialNOs=[serial]),
                    metadata=md,
                    timeout=T,
                )
                reason = await c.disconnected(timeout=3)
                assert time.monotonic() - started < 1.0
                assert reason == 0x87  # not authorized
                assert await _status(call) == ("line-1", g.gateway_pb2.DISCONNECTED)
            finally:
                c.stop()

            # 4. a new handshake with the revoked certificate is refused
            again = Paho("line-1-tls", V5)
            try:
                # TLS 1.2 fails the handshake (OSError); TLS 1.3 finishes the client side, then the server's alert
                # closes the connection before any CONNACK (queue.Empty)
                with pytest.raises((OSError, queue.Empty)):
                    await again.connect(
                        node.endpoints.extra["mqtt_tls"], tls=node.pki.client_context(made.gatewayCert, made.gatewayKey)
                    )
            finally:
                again.stop()

            # 5. removed from the blacklist, it is admitted again
            await gw.DeleteCertificateBlacklist(
                g.gateway_pb2.DeleteCertificateBlacklistRequest(gatewayID="line-1", serialNOs=[serial]),
                metadata=md,
                timeout=T,
            )
            back = Paho("line-1-tls", V5)
            try:
                rc, _ = await back.connect(
                    node.endpoints.extra["mqtt_tls"], tls=node.pki.client_context(made.gatewayCert, made.gatewayKey)
                )
                assert rc == 0
                assert await _status(call) == ("line-1", g.gateway_pb2.CONNECTED)
                await back.disconnect()
            finally:
                back.stop()
            call.cancel()
