"""Zero-copy relays of two sockets on Linux: ``splice(2)`` through a kernel pipe per direction.

A relay that only passes bytes on (the gateway agent's side of a stream channel: the device's
socket and the hub's stream connection) need not copy them into Python at all: ``splice`` moves
them from one socket into a pipe and from the pipe into the other socket inside the kernel. The
event loop only waits for readiness (``add_reader`` / ``add_writer`` on the raw descriptors).

Flow control: each direction holds at most one pipe's worth (``PIPE_SIZE``) in the kernel; while
the destination cannot take more, the source is not read, so TCP holds the sender back. EOF
from a source is passed on as a half close (``shutdown(SHUT_WR)``) once its pipe is drained;
the relay ends when both directions ended, or at once on an error or ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

PIPE_SIZE = 1024 * 1024
CHUNK = PIPE_SIZE
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def available() -> bool:
    """Whether this platform has ``splice`` (Linux, Python 3.10+)."""
    return sys.platform.startswith("linux") and hasattr(os, "splice")


class _Pump:
    """One direction: ``src`` -> pipe -> ``dst``."""

    def __init__(self, relay: SpliceRelay, src: socket.socket, dst: socket.socket) -> None:
        self.relay = relay
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # the default (64 KiB) works too, with more wake-ups
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.in_pipe = 0
        self.moved = 0
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self._want_read(True)

    def _want_read(self, on: bool) -> None:
        loop = self.relay.loop
        if on and not self.reading:
            loop.add_reader(self.src_fd, self._readable)
        elif not on and self.reading:
            loop.remove_reader(self.src_fd)
        self.reading = on

    def _want_write(self, on: bool) -> None:
        loop = self.relay.loop
        if on and not self.writing:
            loop.add_writer(self.dst_fd, self._writable)
        elif not on and self.writing:
            loop.remove_writer(self.dst_fd)
        self.writing = on

    def _readable(self) -> None:
        try:
            n = os.splice(self.src_fd, self.w, CHUNK, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            self.relay._error(exc)
            return
        if n == 0:
            self.eof = True
            self._want_read(False)
        else:
            self.in_pipe += n
        self._drain()

    def _writable(self) -> None:
        self._drain()

    def _drain(self) -> None:
        while self.in_pipe:
            try:
                n = os.splice(self.r, self.dst_fd, self.in_pipe, flags=_FLAGS)
            except BlockingIOError:
                # the destination is full: stop reading the source until it takes more
                self._want_read(False)
                self._want_write(True)
                return
            except OSError as exc:
                self.relay._error(exc)
                return
            self.in_pipe -= n
            self.moved += n
        self._want_write(False)
        if self.eof:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.relay._direction_done()
        elif not self.relay.closed:
            self._want_read(True)

    def stop(self) -> None:
        self._want_read(False)
        self._want_write(False)
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class SpliceRelay:
    """Relays two connected, non-blocking sockets to each other until both directions ended."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        a: socket.socket,
        b: socket.socket,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.a = a
        self.b = b
        self.on_closed = on_closed
        self.closed = False
        self.ab = _Pump(self, a, b)
        self.ba = _Pump(self, b, a)

    def start(self) -> None:
        self.ab.start()
        self.ba.start()

    @property
    def buffered(self) -> int:
        """Bytes held in the kernel pipes (each at most ``PIPE_SIZE``)."""
        return self.ab.in_pipe + self.ba.in_pipe

    def _direction_done(self) -> None:
        if self.ab.done and self.ba.done:
            self.close()

    def _error(self, exc: OSError) -> None:
        if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
            log.info("relay ended: %s", exc)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ab.stop()
        self.ba.stop()
        for s in (self.a, self.b):
            with contextlib.suppress(OSError):
                s.close()
        if self.on_closed is not None:
            self.on_closed()


async def connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket with TCP_NODELAY (for ``SpliceRelay``)."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    last: OSError | None = None
    for family, type_, proto, _canon, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, addr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last or OSError(f"{host}:{port}: no address")
