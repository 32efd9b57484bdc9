"""The request limits of our HTTP protocol (``transports/http/limits.py``) on the event loop of the
run, plain and over TLS: a real :class:`HttpServer` on 127.0.0.1 with small limits, serving the
REST API's own ``BodyLimit`` middleware around an app that reads the body, and raw socket clients.

The edges: a head of exactly the limit is served and one byte more is 431, however it is split
into segments; pipelined requests each get the whole limit; a body of exactly the limit is served
on a connection that stays usable, one over it is 413 and ends the connection; the head deadline
closes a stalled head but not a keep-alive connection idle between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from gatehub.pki import CertificateAuthority, TlsContextProvider
from gatehub.transports.http.errors import BodyLimit
from gatehub.transports.http.server import HttpLimits, HttpServer

HEAD = 2048
HEADERS = 20
BODY = 4096
TIMEOUT = 0.6
Served = tuple[HttpServer, ssl.SSLContext | None]
LIMITS = HttpLimits(max_head_bytes=HEAD, max_headers=HEADERS, header_timeout=TIMEOUT, max_body_bytes=BODY)


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    size = 0
    while True:
        msg = await receive()
        size += len(msg.get("body", b""))
        if not msg.get("more_body", False):
            break
    body = b"%d" % size
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 3.0) -> tuple[int, bytes, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        length = 0
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return int(head[9:12]), head, body

    async def closed(self, timeout: float = 3.0) -> bool:
        """True once the server closed (EOF or reset) within ``timeout``."""
        try:
            while True:
                if not await asyncio.wait_for(self.reader.read(65536), timeout):
                    return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(params=["plain", "tls"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    server_ctx = client_ctx = None
    if request.param == "tls":
        ca = CertificateAuthority.load_or_create(tmp_path / "pki")
        server_ctx = TlsContextProvider(ca, server_hosts=["127.0.0.1"]).server_context(
            require_client_cert=False, ask_client_cert=False
        )
        client_ctx = ssl.create_default_context(cadata=ca.cert_pem)
    srv = HttpServer(BodyLimit(_echo, limit=BODY), "127.0.0.1", 0, ssl_context=server_ctx, limits=LIMITS)
    await srv.start()
    try:
        yield srv, client_ctx
    finally:
        await srv.stop()


@contextlib.asynccontextmanager
async def connect(server: Served) -> AsyncIterator[Client]:
    srv, ctx = server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx)
    c = Client(reader, writer)
    try:
        yield c
    finally:
        c.close()


def get(size: int) -> bytes:
    """A GET whose head is exactly ``size`` bytes."""
    start, end = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize("segment", [0, 1, 100, 1500])
async def test_a_head_of_exactly_the_limit_is_served_one_byte_more_is_431(server: Served, segment: int) -> None:
    for size, status in ((HEAD, 200), (HEAD + 1, 431)):
        async with connect(server) as c:
            data = get(size)
            step = segment or len(data)
            for i in range(0, len(data), step):
                await c.send(data[i : i + step])
            code, head, _body = await c.response()
            assert code == status, (size, head)
            if status == 431:
                assert b"connection: close" in head.lower()
                assert await c.closed()


async def test_pipelined_requests_each_get_the_whole_head_limit(server: Served) -> None:
    async with connect(server) as c:
        await c.send(get(HEAD - 100) * 3 + get(HEAD))
        for _ in range(4):
            assert (await c.response())[0] == 200
        await c.send(get(HEAD - 100) + get(HEAD + 1))  # the second is over, whatever came before
        assert (await c.response())[0] == 200
        assert (await c.response())[0] == 431
        assert await c.closed()


async def test_header_count_limit(server: Served) -> None:
    def with_headers(n: int) -> bytes:  # Host + n - 1 others
        return b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n"

    async with connect(server) as c:
        await c.send(with_headers(HEADERS))
        assert (await c.response())[0] == 200
    async with connect(server) as c:
        await c.send(with_headers(HEADERS + 1))
        code, _head, body = await c.response()
        assert code == 431 and b"header fields" in body
        assert await c.closed()


def post(body: bytes, chunked: bool = False) -> bytes:
    if not chunked:
        return b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000]) for i in range(0, len(body), 1000)
    )
    return b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_of_the_limit_is_served_one_over_is_413_and_ends_the_connection(
    server: Served, chunked: bool
) -> None:
    async with connect(server) as c:
        await c.send(post(b"b" * BODY, chunked))
        code, _head, echoed = await c.response()
        assert code == 200 and echoed == b"%d" % BODY
        await c.send(get(100))  # the connection is still usable
        assert (await c.response())[0] == 200
    async with connect(server) as c:
        await c.send(post(b"b" * (BODY + 1), chunked))
        code, head, _body = await c.response()
        assert code == 413 and b"connection: close" in head.lower()
        assert await c.closed()


async def test_an_announced_over_limit_body_is_413_without_sending_it(server: Served) -> None:
    async with connect(server) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n" + b"b" * 1000)
        code, head, _body = await c.response()
        assert code == 413 and b"connection: close" in head.lower()
        assert await c.closed()


async def test_a_stalled_head_is_closed_at_the_deadline(server: Served) -> None:
    async with connect(server) as c:
        t0 = time.monotonic()
        await c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert await c.closed(TIMEOUT + 3)
        assert time.monotonic() - t0 >= TIMEOUT - 0.1


async def test_a_keep_alive_connection_idle_past_the_head_deadline_still_works(server: Served) -> None:
    """Between requests the keep-alive timeout (5 s) applies, not the head deadline; the next
    request's head then has a deadline of its own."""
    async with connect(server) as c:
        await c.send(get(100))
        assert (await c.response())[0] == 200
        await asyncio.sleep(TIMEOUT * 2)
        await c.send(get(100))
        assert (await c.response())[0] == 200
        t0 = time.monotonic()
        await c.send(b"GET / HTTP/1.1\r\n")
        assert await c.closed(TIMEOUT + 3)
        assert time.monotonic() - t0 >= TIMEOUT - 0.1


async def test_a_head_begun_in_the_same_segment_as_a_body_has_the_deadline(server: Served) -> None:
    async with connect(server) as c:
        t0 = time.monotonic()
        await c.send(post(b"b" * 100) + b"GET / HTTP/1.1\r\nHost: t\r\n")
        code, _head, echoed = await c.response()
        assert code == 200 and echoed == b"100"
        assert await c.closed(TIMEOUT + 3)
        assert time.monotonic() - t0 >= TIMEOUT - 0.1
