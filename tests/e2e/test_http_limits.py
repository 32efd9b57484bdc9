"""Hostile HTTP clients against a real ``gatehub serve``: the REST listener (plain HTTP) and the
IoTDA listener (TLS) bound request heads (size, header count, read time) and end a connection
whose body is over the limit, and the hub's memory stays flat under a flood of huge header lines.

Raw sockets (TLS-wrapped for IoTDA with the hub CA), every loop bounded in bytes and time.
The hub is this module's own, with a short ``http_header_timeout`` so the slowloris cases take
about a second.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.hub_process import HubProcess

HEADER_TIMEOUT = 1.5
MAX_BODY = 1_048_576  # http_max_body_bytes and iotda_max_body_bytes, default
FLOOD_SOCKETS = 10
FLOOD_BYTES = 19 * 1024 * 1024
FLOOD_SECONDS = 20.0
RSS_GROWTH_BOUND = 48 * 1024 * 1024  # 10 pinned header lines would be >= 190 MB


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    root: Path = tmp_path_factory.mktemp("http-limits")
    h = HubProcess(root, http_header_timeout=HEADER_TIMEOUT, log_level="warning")
    h.write_config()
    h.cli("cert", "init", "--out", str(h.certs))
    h.start()
    try:
        yield h
    finally:
        code = h.stop()
        h.assert_clean_exit(code)


@dataclass
class Listener:
    name: str
    connect: Callable[[], socket.socket]
    path: str  # a route that answers a plain GET on this listener
    post_path: str  # a route that reads a JSON body


@pytest.fixture(params=["rest", "iotda"])
def listener(request: pytest.FixtureRequest, hub: HubProcess) -> Listener:
    if request.param == "rest":

        def plain() -> socket.socket:
            return socket.create_connection(("127.0.0.1", hub.ports.http), timeout=10)

        return Listener("rest", plain, "/healthz", "/api/v1/tenants")
    ctx = hub.client_tls()

    def tls() -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", hub.ports.iotda), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    return Listener("iotda", tls, "/v5/openapi.json", "/v5/device-auth")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _read_until_close(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sends until it closes (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except OSError:  # reset (or a TLS error from a torn-down connection): closed
            return data, True
        if not chunk:
            return data, True
        data += chunk


def _readable(sock: socket.socket) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return bool(select.select([sock], [], [], 0)[0])


def _status(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12])


def _head(path: str, *extra: bytes) -> bytes:
    return b"\r\n".join([f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *extra, b"", b""])


def test_a_normal_request_is_served(listener: Listener) -> None:
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_head(listener.path, b"X-Ok: " + b"a" * 8000, *(b"X-H%d: v" % i for i in range(90))))
        data, _closed = _read_until_close(s, 1.0)
        assert _status(data) == 200, data[:300]


def test_a_100_kb_header_is_431_and_closed(listener: Listener) -> None:
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_head(listener.path, b"X-Big: " + b"a" * 100_000))
        data, closed = _read_until_close(s, 5.0)
    assert _status(data) == 431, data[:300]
    assert b"connection: close" in data.lower()
    assert closed


def test_200_headers_are_431_and_closed(listener: Listener) -> None:
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_head(listener.path, *(b"X-H%d: v" % i for i in range(200))))
        data, closed = _read_until_close(s, 5.0)
    assert _status(data) == 431, data[:300]
    assert closed


def _send_until_closed(sock: socket.socket, block: bytes, seconds: float) -> tuple[bytes, bool]:
    """Go on sending ``block`` (a client streaming the rest of its body) for up to ``seconds``:
    what the server sent, and whether it closed the connection meanwhile."""
    deadline = time.monotonic() + seconds
    data = b""
    while time.monotonic() < deadline:
        try:
            while _readable(sock):
                chunk = sock.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
            sock.sendall(block)
        except OSError:
            return data, True
        time.sleep(0.05)
    return data, False


def _post_head(listener: Listener, hub: HubProcess, framing: str) -> bytes:
    return (
        f"POST {listener.post_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {hub.admin_key}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _assert_too_large(data: bytes) -> None:
    assert _status(data) in (413, 403), data[:300]  # IoTDA says 403 IOTDA.021105, as Huawei's
    assert b"payload_too_large" in data or b"IOTDA.021105" in data, data[:300]


def test_an_over_limit_content_length_is_413_and_the_connection_ends(listener: Listener, hub: HubProcess) -> None:
    """The answer comes from the Content-Length alone, and the hub does not go on reading (and
    discarding) the announced 50 MB while the client streams it: it closes the connection."""
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_post_head(listener, hub, f"Content-Length: {50 * 1024 * 1024}") + b"x" * 65536)
        data, closed = _send_until_closed(s, b"x" * 65536, 6.0)
    _assert_too_large(data)
    assert closed, "the connection stayed open after an over-limit body"


def test_an_over_limit_chunked_body_is_413_and_the_connection_ends(listener: Listener, hub: HubProcess) -> None:
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_post_head(listener, hub, "Transfer-Encoding: chunked"))
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 8 * MAX_BODY and not _readable(s):
                s.sendall(chunk)
                sent += 0x10000
        data, closed = _send_until_closed(s, chunk, 6.0)
    assert sent > MAX_BODY
    _assert_too_large(data)
    assert closed, "the connection stayed open after an over-limit chunked body"


@pytest.mark.parametrize("kind", ["half-head", "nothing", "trickle"])
def test_a_connection_without_a_complete_head_is_closed_after_the_header_timeout(listener: Listener, kind: str) -> None:
    with contextlib.closing(listener.connect()) as s:
        t0 = time.monotonic()
        if kind == "half-head":
            s.sendall(f"GET {listener.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            data, closed = _read_until_close(s, HEADER_TIMEOUT + 4)
        elif kind == "nothing":
            data, closed = _read_until_close(s, HEADER_TIMEOUT + 4)
        else:  # a byte every 0.25 s: each byte would reset an idle timer, not a head deadline
            data, closed = b"", False
            s.sendall(f"GET {listener.path} HTTP/1.1\r\n".encode())
            while time.monotonic() - t0 < HEADER_TIMEOUT + 4:
                try:
                    s.sendall(b"X")
                except OSError:
                    closed = True
                    break
                if _readable(s):
                    data, closed = _read_until_close(s, 1.0)
                    break
                time.sleep(0.25)
        elapsed = time.monotonic() - t0
    assert closed, f"{kind}: still open after {elapsed:.1f} s"
    assert data == b"", data[:200]
    assert elapsed >= HEADER_TIMEOUT - 0.3, elapsed  # the deadline, not an immediate close


def test_a_keep_alive_connection_gets_the_head_deadline_again(listener: Listener) -> None:
    """After a served request, the next request's head is bounded too (not only the first)."""
    with contextlib.closing(listener.connect()) as s:
        s.sendall(_head(listener.path))
        data, closed = _read_until_close(s, 0.5)
        assert _status(data) == 200 and not closed
        t0 = time.monotonic()
        s.sendall(f"GET {listener.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        data, closed = _read_until_close(s, HEADER_TIMEOUT + 4)
        elapsed = time.monotonic() - t0
    assert closed and data == b"", (closed, data[:200])
    assert elapsed >= HEADER_TIMEOUT - 0.3, elapsed


def _flood(connect: Callable[[], socket.socket], path: str, results: list[str], opened: list[socket.socket]) -> None:
    """One socket sending a header line of up to FLOOD_BYTES: how it ended, into ``results``."""
    try:
        s = connect()
    except OSError as exc:
        results.append(f"connect failed: {exc!r}")
        return
    opened.append(s)
    deadline = time.monotonic() + FLOOD_SECONDS
    block = b"a" * 65536
    sent = 0
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ".encode())
        while sent < FLOOD_BYTES and time.monotonic() < deadline:
            s.sendall(block)
            sent += len(block)
            if _readable(s):
                break
    except OSError:
        results.append("reset")
        return
    data, closed = _read_until_close(s, 5.0)
    if closed and (data == b"" or data.startswith(b"HTTP/1.1 431")):
        results.append("431" if data else "closed")
    else:
        results.append(f"still open after {sent} bytes: {data[:80]!r}")


def test_a_flood_of_huge_header_lines_is_refused_and_memory_stays_flat(listener: Listener, hub: HubProcess) -> None:
    assert hub.proc is not None
    pid = hub.proc.pid
    with httpx.Client(base_url=hub.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        rss0 = _rss(pid)
        results: list[str] = []
        opened: list[socket.socket] = []
        threads = [
            threading.Thread(target=_flood, args=(listener.connect, listener.path, results, opened), daemon=True)
            for _ in range(FLOOD_SOCKETS)
        ]
        for t in threads:
            t.start()
        health: list[int] = []
        rss_peak = rss0
        try:
            while True:  # at least once while the flood threads run (with limits they end fast)
                health.append(c.get("/healthz").status_code)
                rss_peak = max(rss_peak, _rss(pid))
                if not any(t.is_alive() for t in threads):
                    break
                time.sleep(0.05)
            for t in threads:
                t.join(FLOOD_SECONDS + 10)
            rss_peak = max(rss_peak, _rss(pid))
        finally:
            for s in opened:
                s.close()
        assert c.get("/healthz").status_code == 200
    assert len(results) == FLOOD_SOCKETS and all(r in ("431", "closed", "reset") for r in results), results
    assert health and all(code == 200 for code in health), health
    growth = rss_peak - rss0
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 1e6:.1f} MB under the flood"
