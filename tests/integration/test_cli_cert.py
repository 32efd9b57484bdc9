"""`gatehub cert ...`: CA, server, admin, tenant and gateway certificates as usable PEM files;
blacklist and history; a running hub picks up a blacklist change made on the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from gatehub.cli.main import app
from gatehub.pki import CertificateAuthority, CertKind, IssuedCertificate, PKIName, parse_certificate
from tests.integration.gsdk_client import CALL_TIMEOUT, running_master
from tests.integration.mqtt_helpers import V5, Paho

GATEHUB = shutil.which("gatehub", path=str(Path(sys.executable).parent)) or "gatehub"


async def _cli(env: dict[str, str], *args: str) -> Any:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result


def _env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {"GATEHUB_DATA_DIR": str(tmp_path / "var"), "GATEHUB_DATABASE_URL": db_url, "GATEHUB_CONFIG": ""}


def _key_matches(cert_file: Path, key_file: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return cert.public_key() == key.public_key()


async def test_cert_commands_write_usable_files(tmp_path: Path, db_url: str) -> None:
    env = _env(tmp_path, db_url)
    out = tmp_path / "out"
    r = await _cli(env, "cert", "init", "--out", str(out), "--json", "--host", "localhost", "--host", "127.0.0.1")
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert [c["kind"] for c in created] == ["server", "admin"]
    pki = tmp_path / "var" / "pki"
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    ca = CertificateAuthority.load(pki)
    assert parse_certificate(ca, (out / "admin.crt").read_text()).kind is CertKind.ADMIN
    assert _key_matches(out / "admin.crt", out / "admin.key")
    assert stat.S_IMODE((out / "admin.key").stat().st_mode) == 0o600
    assert (out / "ca.crt").read_text() == ca.cert_pem
    server = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    assert server.serial_number == created[0]["serialNO"]

    # -cs keeps the CA
    r = await _cli(env, "cert", "server", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert CertificateAuthority.load(pki).serial == ca.serial

    assert (await _cli(env, "tenant", "create", "acme")).exit_code == 0
    r = await _cli(env, "cert", "tenant", "acme", "--country", "KR", "--org", "Acme", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    tenant = parse_certificate(ca, (out / "acme.crt").read_text())
    assert (tenant.kind, tenant.tenant_id, tenant.subject.organization) == (CertKind.TENANT, "acme", "Acme")
    assert _key_matches(out / "acme.crt", out / "acme.key")

    r = await _cli(
        env,
        "cert",
        "gateway",
        "gw-1",
        "--tenant",
        "acme",
        "--years",
        "5",
        "--cn",
        "Gate 1",
        "--out",
        str(out),
        "--json",
    )
    assert r.exit_code == 0, r.output
    gw = parse_certificate(ca, (out / "gw-1.crt").read_text())
    assert (gw.kind, gw.tenant_id, gw.gateway_id, gw.subject.commonName) == (CertKind.GATEWAY, "acme", "gw-1", "Gate 1")
    assert gw.not_after - gw.not_before > 4 * 365 * 86400
    assert _key_matches(out / "gw-1.crt", out / "gw-1.key")

    # bad input: a clear error and exit code 2, nothing issued
    r = await _cli(env, "cert", "gateway", "gw-2", "--tenant", "acme", "--country", "KOR", "--out", str(out))
    assert r.exit_code == 2 and "country" in r.output
    r = await _cli(env, "cert", "gateway", "gw-2", "--tenant", "nope", "--out", str(out))
    assert r.exit_code == 2 and "nope" in r.output

    hist = json.loads((await _cli(env, "cert", "history", "--json")).output)
    assert {h["kind"] for h in hist} == {"server", "admin", "tenant", "gateway"} and len(hist) == 6
    gws = json.loads((await _cli(env, "cert", "history", "--gateway", "gw-1", "--json")).output)
    assert [h["serialNO"] for h in gws] == [gw.serial]

    # blacklist
    r = await _cli(env, "cert", "blacklist", "add", str(gw.serial), "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads((await _cli(env, "cert", "blacklist", "list", "--json")).output)
    assert [x["serialNO"] for x in listed] == [gw.serial]
    crl_file = tmp_path / "crl.pem"
    assert (await _cli(env, "cert", "crl", "--out", str(crl_file))).exit_code == 0
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(gw.serial) is not None
    r = await _cli(env, "cert", "blacklist", "add", str(gw.serial), "--tenant", "other")
    assert r.exit_code == 2
    r = await _cli(env, "cert", "blacklist", "remove", str(gw.serial))
    assert r.exit_code == 0, r.output
    assert json.loads((await _cli(env, "cert", "blacklist", "list", "--json")).output) == []
    r = await _cli(env, "cert", "blacklist", "add", "12345")
    assert r.exit_code == 2 and "12345" in r.output


async def test_cli_blacklist_reaches_a_running_hub(tmp_path: Path, db_url: str) -> None:
    async with running_master(tmp_path, db_url, pki_blacklist_poll=0.2) as m:
        env = _env(tmp_path, db_url)
        out = tmp_path / "out"
        assert (await _cli(env, "tenant", "create", "acme")).exit_code == 0
        r = await _cli(env, "cert", "tenant", "acme", "--out", str(out), "--json")
        assert r.exit_code == 0, r.output
        info = json.loads(r.output)
        cert = IssuedCertificate(
            serial=info["serialNO"],
            kind=CertKind.TENANT,
            tenant_id="acme",
            gateway_id=None,
            subject=PKIName(),
            not_before=0,
            not_after=0,
            cert_pem=(out / "acme.crt").read_text(),
            key_pem=(out / "acme.key").read_text(),
        )
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            stream = m.gateway(ch).SubscribeStatus(m.g.gateway_pb2.SubscribeStatusRequest(), metadata=md)
            await asyncio.wait_for(stream.initial_metadata(), 5)
            assert (await _cli(env, "cert", "blacklist", "add", str(cert.serial))).exit_code == 0
            t0 = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(stream.read(), 5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert time.perf_counter() - t0 < 1.5
        assert (await _cli(env, "cert", "blacklist", "remove", str(cert.serial))).exit_code == 0
        deadline = time.monotonic() + 5
        assert m.node.pki is not None
        while m.node.pki.is_blacklisted(cert.serial) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            await m.gateway(ch).GetList(m.g.gateway_pb2.GetListRequest(), metadata=md, timeout=CALL_TIMEOUT)


class _TimedPaho(Paho):
    """Notes when paho saw the connection end (its own thread), for the latency below."""

    closed_at: float | None = None

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        super()._on_disconnect(c, u, flags, rc, props)


async def test_cli_blacklist_closes_a_live_mqtts_session_at_once(tmp_path: Path, db_url: str) -> None:
    """`gatehub cert blacklist add` run as a process reaches the running hub through its control
    socket: the gateway's MQTT/TLS session is closed (0x87) before the poll, set to 30 s here,
    could have done it; the measured latency from the command's exit to the close is printed."""
    async with running_master(tmp_path, db_url, mqtts_port=0, pki_blacklist_poll=30.0) as m:
        g, node = m.g, m.node
        assert node.pki is not None
        cert = await m.tenant("acme")
        async with m.channel(cert) as ch:
            md = await m.login(ch, cert)
            gw = m.gateway(ch)
            await gw.Add(g.gateway_pb2.AddRequest(gatewayIDs=["line-1"]), metadata=md, timeout=CALL_TIMEOUT)
            made = await gw.CreateCertificate(
                g.gateway_pb2.CreateCertificateRequest(
                    gatewayID="line-1", subject=g.cert_pb2.PKIName(commonName="line 1"), expireAfterYears=1
                ),
                metadata=md,
                timeout=CALL_TIMEOUT,
            )
            hist = await gw.GetIssuanceHistory(
                g.gateway_pb2.GetIssuanceHistoryRequest(gatewayIDs=["line-1"]), metadata=md, timeout=CALL_TIMEOUT
            )
        serial = hist.certInfos[-1].serialNO
        assert (tmp_path / "var" / "hub.sock").is_socket()
        c = _TimedPaho("line-1-tls", V5)
        try:
            rc, _ = await c.connect(
                node.endpoints.extra["mqtt_tls"], tls=node.pki.client_context(made.gatewayCert, made.gatewayKey)
            )
            assert rc == 0
            env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
            env.update(_env(tmp_path, db_url))
            proc = await asyncio.create_subprocess_exec(
                GATEHUB, "cert", "blacklist", "add", str(serial), "--json", env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            exited = time.monotonic()
            assert proc.returncode == 0, err.decode()
            assert json.loads(out)[0]["blacklisted"] is True
            assert b"warning" not in err, err.decode()
            reason = await c.disconnected(timeout=5)
            assert reason == 0x87  # not authorized
            assert c.closed_at is not None
            latency = c.closed_at - exited
            print(f"CLI exit -> MQTT/TLS session closed: {latency * 1000:.1f} ms")
            assert latency < 2.0  # the poll (30 s) cannot have done it
        finally:
            c.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    proc = await asyncio.create_subprocess_exec(
        GATEHUB, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic()


async def test_cli_blacklist_reaches_gatehub_serve_at_once(tmp_path: Path) -> None:
    """The same with the product as it ships: `gatehub serve` (its default loop) as a process,
    provisioned with the CLI; the poll is 30 s."""
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHUB_")}
    http, mqtts = _free_port(), _free_port()
    env.update(
        GATEHUB_DATA_DIR=str(tmp_path / "var"), GATEHUB_CONFIG="", GATEHUB_BIND_HOST="127.0.0.1",
        GATEHUB_HTTP_PORT=str(http), GATEHUB_MQTTS_PORT=str(mqtts), GATEHUB_MQTT_PORT="-1",
        GATEHUB_IOTDA_PORT="-1", GATEHUB_GRPC_PORT="-1", GATEHUB_DEVICELINK_PORT_MIN="-1",
        GATEHUB_PKI_BLACKLIST_POLL="30", GATEHUB_LOG_LEVEL="warning",
    )  # fmt: skip
    out = tmp_path / "certs"
    for args in (
        ("tenant", "create", "acme"),
        ("product", "create", "gw", "-t", "acme", "--node-type", "gateway"),
        ("gateway", "create", "line-1", "-t", "acme", "-p", "gw", "--id", "line-1"),
        ("cert", "init", "--out", str(out)),
        ("cert", "gateway", "line-1", "-t", "acme", "--out", str(out)),
    ):
        code, _o, err, _t = await _run(env, *args)
        assert code == 0, (args, err)
    serial = json.loads((await _run(env, "cert", "history", "--gateway", "line-1", "--json"))[1])[-1]["serialNO"]
    hub = await asyncio.create_subprocess_exec(
        GATEHUB, "serve", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{http}/healthz", timeout=1)).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("gatehub serve did not become healthy")
        assert (tmp_path / "var" / "hub.sock").is_socket()
        from gatehub.pki import client_context

        tls = client_context(
            (out / "ca.crt").read_text(), (out / "line-1.crt").read_text(), (out / "line-1.key").read_text()
        )
        c = _TimedPaho("line-1-tls", V5)
        try:
            rc, _ = await c.connect(mqtts, tls=tls)
            assert rc == 0
            code, _o, err, exited = await _run(env, "cert", "blacklist", "add", str(serial))
            assert code == 0 and "warning" not in err, err
            assert await c.disconnected(timeout=5) == 0x87
            assert c.closed_at is not None
            print(f"gatehub serve: CLI exit -> MQTT/TLS session closed: {(c.closed_at - exited) * 1000:.1f} ms")
            assert c.closed_at - exited < 2.0
        finally:
            c.stop()
    finally:
        hub.terminate()
        _o, err = await asyncio.wait_for(hub.communicate(), 30)
    assert hub.returncode == 0, err.decode()
    assert not (tmp_path / "var" / "hub.sock").exists()  # removed on a clean stop
