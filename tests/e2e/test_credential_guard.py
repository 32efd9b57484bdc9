"""Brute force against a real ``gatehub serve``: wrong credentials cost time, refusals do not
flood the log, refused TLS client certificates are logged with their reason, and /metrics counts
it all.

One hub of its own with small back-off numbers (after 3 failures: 0.05 s, doubling, at most
0.4 s; lock-out after 9 failures for 1.2 s). The hub keys sources on the client address, and all
of 127.0.0.0/8 reaches a listener on 127.0.0.1, so each test speaks from a source address of its
own (``127.0.0.N``) and the tests do not back each other off. 127.0.0.200 is exempt from
back-off (still counted and logged): the flood test sends 500 refusals from there quickly.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import unique
from tests.e2e.hub_process import HubProcess, wait_until

FLOOD_SOURCE = "127.0.0.200"
MAX_DELAY = 0.4


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = HubProcess(
        tmp_path_factory.mktemp("guard") / "hub",
        guard_backoff_after=3,
        guard_backoff_base=0.05,
        guard_backoff_max=MAX_DELAY,
        guard_lockout_after=9,
        guard_lockout_minutes=0.02,  # 1.2 s
        guard_exempt_networks=[f"{FLOOD_SOURCE}/32"],
        guard_log_per_source=5,
        guard_log_interval=2.0,
    )
    h.write_config()
    h.cli("cert", "init", "--out", str(h.certs))
    h.start()
    try:
        yield h
    finally:
        code = h.stop()
        h.assert_clean_exit(code)


@pytest.fixture(scope="module")
def token(hub: HubProcess) -> str:
    tenant = unique("guard")  # REST, not the CLI: a CLI run costs seconds on a busy machine
    hub.api("POST", "/tenants", 201, json={"id": tenant})
    hub.api("POST", "/products", 201, params={"tenantId": tenant}, json={"id": f"{tenant}-meter"})
    tok = f"tok-{tenant}-good"
    hub.device(tenant, f"{tenant}-m1", f"{tenant}-meter", accessToken=tok)
    return tok


def _connect_packet(client_id: str, username: str) -> bytes:
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = s(b"MQTT") + bytes([4, 0x82]) + (60).to_bytes(2, "big") + s(client_id.encode()) + s(username.encode())
    n, length = len(body), b""
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return b"\x10" + length + body


def mqtt_connect(port: int, source: str, username: str, client_id: str = "guard-test") -> tuple[int, float]:
    """A raw MQTT 3.1.1 CONNECT from ``source``: (CONNACK return code, seconds to the answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0)) as sock:
        sock.sendall(_connect_packet(client_id, username))
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
    assert data[:3] == b"\x20\x02\x00", data
    return data[3], time.monotonic() - started


def metric(hub: HubProcess, name: str, **labels: str) -> float:
    text = httpx.get(hub.url + "/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return 0.0


def test_wrong_mqtt_tokens_are_answered_ever_later_then_a_good_client_gets_in(hub: HubProcess, token: str) -> None:
    src = "127.0.0.11"
    times = []
    for i in range(7):
        rc, took = mqtt_connect(hub.ports.mqtt, src, f"wrong-token-{i}")
        assert rc == 4, rc  # a delayed refusal is still CONNACK "bad user name or password"
        times.append(took)
    # failures 4..7 are delayed by 0.05, 0.1, 0.2, 0.4 s (the bound)
    assert times[5] >= 0.09, times
    assert times[6] >= 0.35, times
    assert sum(times) < 10, times
    assert metric(hub, "gatehub_auth_failures_total", transport="mqtt", reason="bad_credentials") >= 7
    # the right token from the same source is admitted (after at most the pending back-off)
    rc, took = mqtt_connect(hub.ports.mqtt, src, token, "guard-good")
    assert rc == 0 and took < 5, (rc, took)


def test_wrong_rest_keys_are_answered_ever_later_then_the_right_key_works(hub: HubProcess) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.12")
    with httpx.Client(base_url=hub.url + "/api/v1", transport=transport, timeout=15) as c:
        times = []
        for i in range(7):
            started = time.monotonic()
            r = c.get("/tenants", headers={"Authorization": f"Bearer ghk_nokey{i}_secret"})
            times.append(time.monotonic() - started)
            assert r.status_code == 401, r.text
        assert times[5] >= 0.09, times
        assert times[6] >= 0.35, times
        r = c.get("/tenants", headers={"Authorization": f"Bearer {hub.admin_key}"})
        assert r.status_code == 200, r.text
    assert metric(hub, "gatehub_auth_failures_total", transport="rest", reason="bad_credentials") >= 7
    assert "refused rest from 127.0.0.12: bad_credentials (key ghk_nokey0_…" in hub.stderr()


def test_a_burst_of_wrong_rest_keys_from_a_backed_off_source_is_refused_unchecked_with_429(hub: HubProcess) -> None:
    """Parallel guesses from a backed-off address: each admitted one pushes the next back by the
    delay, so those that would wait beyond guard_backoff_max are answered 429 without a check
    (the status the OpenAPI documents for every route that takes a key)."""
    transport = httpx.HTTPTransport(local_address="127.0.0.14")
    with httpx.Client(base_url=hub.url + "/api/v1", transport=transport, timeout=15) as c:
        for i in range(4):  # over guard_backoff_after: the source is backed off
            assert c.get("/tenants", headers={"Authorization": f"Bearer ghk_burst{i}_x"}).status_code == 401
    with ThreadPoolExecutor(16) as pool:

        def guess(i: int) -> httpx.Response:
            t = httpx.HTTPTransport(local_address="127.0.0.14")
            with httpx.Client(base_url=hub.url + "/api/v1", transport=t, timeout=15) as one:
                return one.get("/tenants", headers={"Authorization": f"Bearer ghk_par{i}_x"})

        answers = list(pool.map(guess, range(16)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) == {401, 429}, codes
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limited", limited.text
    spec = httpx.get(hub.url + "/openapi.json").json()
    assert "429" in spec["paths"]["/api/v1/tenants"]["get"]["responses"]


def test_lock_out_refuses_even_the_right_token_until_it_ends(hub: HubProcess, token: str) -> None:
    src = "127.0.0.13"
    for i in range(9):
        rc, _took = mqtt_connect(hub.ports.mqtt, src, f"guess-{i}")
        assert rc == 4, (i, rc)
    rc, _took = mqtt_connect(hub.ports.mqtt, src, token, "guard-locked")
    assert rc == 5, rc  # 0x8A banned, as MQTT 3.1.1 says it: not authorized; not even checked
    assert metric(hub, "gatehub_auth_sources_locked_out") >= 1
    assert metric(hub, "gatehub_auth_failures_total", transport="mqtt", reason="locked_out") >= 1
    assert "127.0.0.13 locked out for 1 s after 9 credential failures" in hub.stderr()
    time.sleep(1.3)
    rc, _took = mqtt_connect(hub.ports.mqtt, src, token, "guard-after-lockout")
    assert rc == 0, rc


def test_500_refusals_write_a_few_log_lines_and_count_500(hub: HubProcess) -> None:
    before = metric(hub, "gatehub_auth_failures_total", transport="mqtt", reason="bad_credentials")
    started = time.monotonic()
    for i in range(500):
        rc, _took = mqtt_connect(hub.ports.mqtt, FLOOD_SOURCE, f"flood-{i}", f"flood-{i}")
        assert rc == 4
        assert time.monotonic() - started < 60
    after = metric(hub, "gatehub_auth_failures_total", transport="mqtt", reason="bad_credentials")
    assert after - before == 500

    def accounted() -> int:
        err = hub.stderr()
        logged = err.count(f"refused mqtt from {FLOOD_SOURCE}:")
        suppressed = sum(
            int(n) for n in re.findall(rf"(\d+) more refusals from {re.escape(FLOOD_SOURCE)} suppressed", err)
        )
        return logged + suppressed if suppressed else -logged

    # every refusal is either one of the few lines logged or counted in a summary line
    wait_until(lambda: accounted() == 500, timeout=10, what="the summary of suppressed refusals")
    lines = [ln for ln in hub.stderr().splitlines() if FLOOD_SOURCE in ln]
    assert len(lines) < 50, len(lines)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "intruder.crt", tmp / "intruder.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _tls_attempt(port: int, ctx: ssl.SSLContext) -> None:
    """Handshake and read: the hub's refusal (TLS 1.3: after the client's side ended) or EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"\x10\x00")
                s.recv(16)
        except (ssl.SSLError, ConnectionError):
            pass


def test_refused_client_certificates_are_logged_with_their_reason(hub: HubProcess, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    for port in (hub.ports.mqtts, hub.ports.grpc):
        _tls_attempt(port, hub.client_tls(cert, key))
    # a certificate of the hub CA (the admin one ``cert init`` made), blacklisted: refused as revoked
    admin_cert, admin_key = hub.certs / "admin.crt", hub.certs / "admin.key"
    serial = x509.load_pem_x509_certificate(admin_cert.read_bytes()).serial_number
    hub.api("PUT", f"/certificates/{serial}/blacklist")  # applies to the next handshake
    _tls_attempt(hub.ports.mqtts, hub.client_tls(admin_cert, admin_key))

    def logged() -> Any:
        err = hub.stderr()
        return (
            "mqtts: refused TLS handshake from 127.0.0.1: unknown_ca" in err
            and "grpc: refused TLS handshake from 127.0.0.1: unknown_ca" in err
            and "mqtts: refused TLS handshake from 127.0.0.1: revoked" in err
        )

    wait_until(logged, timeout=10, what="log lines of the refused certificates")
    assert metric(hub, "gatehub_tls_handshakes_refused_total", listener="mqtts", reason="unknown_ca") >= 1
    assert metric(hub, "gatehub_tls_handshakes_refused_total", listener="grpc", reason="unknown_ca") >= 1
    assert metric(hub, "gatehub_tls_handshakes_refused_total", listener="mqtts", reason="revoked") >= 1
