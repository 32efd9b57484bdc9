"""uvicorn's httptools protocol with the limits a listener open to the network needs.

uvicorn's httptools backend has no limit of its own on a request head: llhttp hands each header
to the protocol only when it is complete, and httptools buffers a header line until then, so one
socket sending a 19 MB header line pins 19 MB (``h11_max_incomplete_event_size`` is honoured by
the h11 backend only). It also has no deadline for a request head: a connection that sends
nothing, or trickles a byte every few seconds, is held forever (slowloris).

:class:`GuardedHttpToolsProtocol` adds, per connection:

- a **head size** limit: bytes are counted from the first byte of a request until its head is
  complete; the parser is never fed more than ``max_head_bytes`` of one head, and a head that is
  not complete by then is answered ``431`` and the connection closed;
- a **header count** limit: a head with more than ``max_headers`` fields is answered ``431``;
- a **head deadline**: a connection that has not completed a request head ``header_timeout``
  seconds after it was accepted (or after the first byte of a later request) is closed; between
  keep-alive requests uvicorn's keep-alive timeout applies as before;
- a **body** limit: the application answers an over-limit body itself (413 in the format of its
  API, from ``Content-Length`` up front or by counting a chunked body), but the protocol does not
  keep reading and discarding the rest of such a body for the next request: once a declared or
  counted body is over ``max_body_bytes`` the connection is closed after the response.

An answer the protocol gives itself, or an over-limit body, ends the connection with a short
*linger*: the response is written, the write side shut (plain TCP), and what the client still
sends is discarded for at most :data:`LINGER_SECONDS` or :data:`LINGER_BYTES` before the socket
is closed. Closing a socket with unread input sends a TCP RST, which can make the client lose
the response it was about to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatehub.config import Settings

LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits of one listener (see ``http_*`` in :mod:`gatehub.config`)."""

    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    max_body_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, s: Settings, max_body_bytes: int) -> HttpLimits:
        return cls(s.http_max_head_bytes, s.http_max_headers, s.http_header_timeout, max_body_bytes)


class _Refused(Exception):
    pass


class _ClosingTransport:
    """What a request cycle sees as its transport once its connection must end after the
    response: ``close`` lingers instead of closing at once (see the module doc)."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: GuardedHttpToolsProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _response(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = message.encode("ascii")
    phrase = http.HTTPStatus(status).phrase.encode("ascii")
    out = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    out.extend(b"%s: %s\r\n" % (name, value) for name, value in default_headers)
    out.append(b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body))
    out.append(b"connection: close\r\n\r\n")
    out.append(body)
    return b"".join(out)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module doc; ``limits`` is set by :func:`guarded_protocol`."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lim = self.limits
        self._max_head = lim.max_head_bytes
        self._max_headers = lim.max_headers
        self._max_body = lim.max_body_bytes
        self._in_head = True
        self._head_seen = 0
        self._began = False  # a request has begun and its head is not complete
        self._body_seen = 0
        self._body_over = False
        self._refusal: tuple[int, str] | None = None
        self._deferred: tuple[int, str] | None = None  # a refusal waiting for earlier responses
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._linger_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    # --- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deferred is not None:
            return  # reading is paused until the refusal is sent; this is what was in flight
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        try:
            while self._in_head:
                room = self._max_head - self._head_seen
                if room <= 0:
                    self._refuse(431, f"Request head larger than {self._max_head} bytes.")
                    return
                # feed up to the end of this head when it is in sight, so that what follows
                # (a pipelined request) is counted against its own head
                end = data.find(b"\r\n\r\n", 0, room)
                cut = end + 4 if end >= 0 else room
                if cut >= len(data):
                    self._head_seen += len(data)
                    self.parser.feed_data(data)
                    break
                piece, data = data[:cut], data[cut:]
                self._head_seen += cut
                self.parser.feed_data(piece)
                if self._lingering or self._deferred is not None or self.transport.is_closing():
                    return
            else:
                self.parser.feed_data(data)
            if self._began and self._head_timer is None and not self._lingering:
                self._arm_head_timer()  # a head that did not come in one piece: its deadline
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    # --- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_seen = 0
        self._began = True

    def on_headers_complete(self) -> None:
        if len(self.headers) > self._max_headers:
            # counted here, not per header: the head size limit already bounds what they hold
            self._refusal = (431, f"More than {self._max_headers} header fields.")
            raise _Refused
        self._in_head = False
        self._began = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.cycle is None or self.cycle.scope is not self.scope:
            return  # an upgrade: no request cycle of its own
        for name, value in self.headers:
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self._max_body:
                        self._end_after_response()
                break

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_seen > self._max_body and not self._body_over:
            self._end_after_response()
        if self._body_over and self.cycle.response_complete:
            self.linger()
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_seen = 0

    # --- refusing and closing --------------------------------------------------------------
    def _end_after_response(self) -> None:
        """The connection ends once the current response is out (the app answers 413)."""
        self._body_over = True
        cycle = self.cycle
        if cycle.response_complete:
            self.linger()
        elif not isinstance(cycle.transport, _ClosingTransport):
            cycle.keep_alive = False  # uvicorn then sends ``connection: close`` and closes: lingering
            cycle.transport = _ClosingTransport(self, self.transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        deferred = self._deferred
        if deferred is not None and not self.pipeline and (self.cycle is None or self.cycle.response_complete):
            self._deferred = None
            self._refuse(*deferred)

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            # pipelined: the answers to the requests before this one go first
            self._deferred = (status, message)
            self.flow.pause_reading()
            return
        self.logger.info("%s - refused with %d: %s", self._peer(), status, message)
        self.transport.write(_response(status, message, self.server_state.default_headers))
        self.linger()

    def linger(self) -> None:
        """Shut the write side and discard input a short while, then close (module doc)."""
        if self._lingering:
            return
        self._lingering = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._linger_left = LINGER_BYTES
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        self.flow.resume_reading()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            timeout = self.limits.header_timeout
            self.logger.debug("%s - no complete request head in %.1f s: closed", self._peer(), timeout)
            self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for a listener with ``limits``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
