"""MQTT over WebSocket (subprotocol ``mqtt``): the optional ``ws`` listener of the MQTT hub.

The ``websockets`` package does the HTTP upgrade and the framing; :class:`WebSocketTransport`
adapts one WebSocket connection to the small part of ``asyncio.Transport`` that
:class:`~gatehub.transports.mqtt.session.MqttSession` uses (write, close, pause/resume reading,
extra info), so a WebSocket client gets exactly the same session as a TCP one. Binary messages
carry MQTT bytes (a message may hold part of a packet or several packets); a text message is a
protocol error and closes the connection (1003). Writes are queued and sent in order by one task
per connection; a client that reads too slowly makes the session drop QoS 0 (pause_writing),
as on TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gatehub.transports.mqtt.session import MqttSession

if TYPE_CHECKING:
    from gatehub.transports.mqtt.contracts import SessionHost

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("mqtt", "mqttv3.1")  # the standard name, and the one of old MQTT 3.1 clients
HIGH_WATER = 1 << 20  # queued bytes before the session is told to pause writing
LOW_WATER = 1 << 18


class WebSocketTransport:
    """The transport face of one WebSocket connection, as MqttSession sees it."""

    __slots__ = ("_closing", "_out", "_out_bytes", "_readable", "_wake", "_writer", "session", "ws")

    def __init__(self, ws: ServerConnection, session: MqttSession) -> None:
        self.ws = ws
        self.session = session
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._closing = False
        self._readable = asyncio.Event()
        self._readable.set()
        self._wake = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    # the asyncio.Transport subset ---------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.ws.remote_address
        if name == "socket":
            return self.ws.transport.get_extra_info("socket", default)
        if name == "ssl_object":
            return self.ws.transport.get_extra_info("ssl_object", default)
        return self.ws.transport.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        if self._closing or not data:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._wake.set()
        if self._out_bytes > HIGH_WATER:
            self.session.pause_writing()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._wake.set()  # the writer flushes what is queued, then closes

    def abort(self) -> None:
        """Close at once, dropping what is queued (a peer that does not read, or hostile)."""
        self._out.clear()
        self._out_bytes = 0
        self._closing = True
        self._wake.set()
        self.ws.transport.abort()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    # the loops --------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._out:
                    data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
                    self._out.clear()
                    self._out_bytes = 0
                    await ws.send(data)
                    if self._out_bytes < LOW_WATER and self.session._write_paused:
                        self.session.resume_writing()
                    continue
                if self._closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            self._closing = True
            with contextlib.suppress(Exception):
                await ws.close()

    async def read_loop(self) -> None:
        session = self.session
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    await self.ws.close(1003, "MQTT needs binary messages")
                    break
                if not self._readable.is_set():
                    await self._readable.wait()
                if session.closed:
                    break
                session.data_received(message)
        except ConnectionClosed:
            pass
        finally:
            session.connection_lost(None)
            self.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 5)


class WebSocketListener:
    """A started ``ws`` listener, closed like an ``asyncio.Server`` (sessions stay open)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return self.server.sockets

    def close(self) -> None:
        self.server.server.close()  # stop accepting; open sessions are the hub's to close

    async def wait_closed(self) -> None:
        await self.server.server.wait_closed()


async def start_websocket_listener(hub: SessionHost[MqttSession], host: str, port: int) -> WebSocketListener:
    async def handler(ws: ServerConnection) -> None:
        if ws.subprotocol not in SUBPROTOCOLS:
            await ws.close(1002, "subprotocol mqtt required")
            return
        session = MqttSession(hub, "ws")
        transport = WebSocketTransport(ws, session)
        session.connection_made(transport)  # type: ignore[arg-type]
        await transport.read_loop()

    server = await serve(
        handler,
        host,
        port,
        subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
        compression=None,
        max_size=hub.server_options.max_packet_size + 16,  # the hub's mqtt_max_packet_size
        ping_interval=None,  # MQTT keep alive does this job
        reuse_address=True,
    )
    return WebSocketListener(server)
