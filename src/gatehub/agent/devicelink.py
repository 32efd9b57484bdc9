"""The gateway agent's side of device links: relays tunnel channels to sub-devices on the local
network (protocol: ``gatehub.protocols.devicelink``; spec: docs/devicelink.md).

A self-contained extension of the agent's MQTT connection. The agent:

- subscribes ``DeviceLinkRelay.topics`` (QoS 1) on its connection to the hub,
- passes every message on those topics to ``await relay.on_message(topic, payload)``,
- calls ``await relay.on_connected()`` once its session is up (after the subscription) and
  ``await relay.on_disconnected()`` when it is lost (every channel closes: the hub's side of
  them is gone too), and ``await relay.close()`` when it stops,
- gives the relay ``publish(topic, payload, qos)``, a coroutine that publishes on that
  connection, and ``resolve(device_id, device_name)``, which answers the sub-device's address on
  the local network (host name or IP, or None when it is not known), sync or async.

The hub asks for a channel with OPEN; the relay connects to the device (TCP) or opens a UDP
socket to it, answers OPENED with its credit window, and relays. Data towards the hub waits for
credit (the device socket stops being read meanwhile); data from the hub is written to the
device and its credit returned only once the device socket's buffer has room, so a slow device
slows the client down and memory stays bounded (one window per channel and direction).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from gatehub import splice
from gatehub.agent.extensions import AgentExtension, ExtensionContext
from gatehub.protocols import devicelink as proto
from gatehub.protocols.devicelink import CloseCode, Frame, FrameError, FrameType, ReceiveWindow, StreamSender

log = logging.getLogger("gatehub.agent.devicelink")

Publish = Callable[[str, bytes, int], Awaitable[Any]]
Resolve = Callable[[str, str], Awaitable[str | None] | str | None]


class DeviceLinkRelay:
    """Relays the hub's device-link channels to local devices (one per agent connection)."""

    topics: tuple[str, ...] = (proto.TOPIC_DOWN,)
    subscribe_qos = 1

    def __init__(
        self,
        publish: Publish,
        resolve: Resolve,
        *,
        window: int = proto.DEFAULT_WINDOW,
        connect_timeout: float = 10.0,
        max_channels: int = 256,
        allow_hub_addresses: bool = True,
        upstream_qos: int = 0,
        agent: str = "gatehub-agent",
        stream_host: str | None = None,
        stream_tls: ssl.SSLContext | None = None,
        use_splice: bool = True,
    ) -> None:
        self.publish = publish
        self.resolve = resolve
        self.window = proto.check_window(window)
        self.connect_timeout = connect_timeout
        self.max_channels = max_channels
        self.allow_hub_addresses = allow_hub_addresses  # the hub may name the address (operator-set)
        self.upstream_qos = upstream_qos
        self.agent = agent
        self.stream_host = stream_host  # where the hub's stream port is (None: streams not offered)
        self.stream_tls = stream_tls  # the agent's MQTT connection is TLS: so are its streams
        self.stream_port: int | None = None  # told by the hub's HELLO
        self.use_splice = use_splice  # stream channels relayed by the kernel where it can (Linux)
        self.channels: dict[int, _TcpChannel | _UdpChannel] = {}
        self.version: int | None = None  # agreed with the hub's HELLO
        self.ready = asyncio.Event()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # the extension interface ------------------------------------------------------------------
    async def on_connected(self) -> None:
        await self.on_disconnected()
        self._queue = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        hello: dict[str, Any] = {"versions": list(proto.VERSIONS), "agent": self.agent}
        if self.stream_host:
            hello["streams"] = True
        self.emit(proto.json_frame(FrameType.HELLO, 0, hello))

    async def on_disconnected(self) -> None:
        self.ready.clear()
        self.version = None
        self.stream_port = None
        for ch in list(self.channels.values()):
            ch.abort_local()
        self.channels.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
            self._sender = None

    async def close(self) -> None:
        await self.on_disconnected()

    async def on_message(self, topic: str, payload: bytes) -> None:
        if topic != proto.TOPIC_DOWN:
            return
        try:
            frame = proto.decode(bytes(payload))
        except FrameError as exc:
            log.warning("bad device-link frame from the hub: %s", exc)
            return
        try:
            self._dispatch(frame)
        except FrameError as exc:
            log.warning("bad device-link %s frame from the hub: %s", frame.type.name, exc)
            ch = self.channels.get(frame.channel)
            if ch is not None:
                ch.fail(CloseCode.PROTOCOL_ERROR, str(exc))

    # frames -----------------------------------------------------------------------------------
    def emit(self, frame: bytes) -> None:
        self._queue.put_nowait(frame)

    async def _send_loop(self) -> None:
        q = self._queue
        while True:
            frame = await q.get()
            try:
                await self.publish(proto.TOPIC_UP, frame, self.upstream_qos)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection is going down: on_disconnected follows
                log.warning("device-link frame not published: %s", exc)

    def _dispatch(self, frame: Frame) -> None:
        t = frame.type
        if t is FrameType.HELLO:
            body = frame.json()
            version = body.get("version")
            if version in proto.VERSIONS:
                self.version = version
                port = body.get("streamPort")
                # the hub offers the kind of stream port that matches our connection; another is ignored
                matches = body.get("streamTls", False) is (self.stream_tls is not None)
                ok = self.stream_host and matches and type(port) is int and 0 < port < 65536
                self.stream_port = port if ok else None
                self.ready.set()
                log.info("device-link tunnel v%d ready", version)
            else:
                log.warning("the hub speaks device-link tunnel versions %s, this agent %s", body, proto.VERSIONS)
            return
        if self.version is None or frame.version != self.version:
            return
        ch = self.channels.get(frame.channel)
        if t is FrameType.OPEN:
            if ch is not None:
                raise FrameError(f"channel {frame.channel} is already open")
            self._open(frame)
            return
        if ch is not None:
            ch.on_frame(frame)

    def _open(self, frame: Frame) -> None:
        body = frame.json()
        cid = frame.channel
        protocol = body.get("protocol")
        port = body.get("port")
        if protocol not in ("tcp", "udp"):
            self.emit(proto.close_frame(cid, CloseCode.UNSUPPORTED, f"protocol {protocol!r}"))
            return
        if type(port) is not int or not 1 <= port <= 65535:
            self.emit(proto.close_frame(cid, CloseCode.PROTOCOL_ERROR, f"bad port {port!r}"))
            return
        if len(self.channels) >= self.max_channels:
            self.emit(proto.close_frame(cid, CloseCode.OVERLOADED, f"{self.max_channels} channels open"))
            return
        hub_window = proto.check_window(body.get("window"))
        ch: _TcpChannel | _UdpChannel
        token = body.get("stream")
        if protocol == "udp":
            ch = _UdpChannel(self, cid, hub_window)
        elif isinstance(token, str) and token and self.stream_port is not None:
            ch = _StreamChannel(self, cid, hub_window, token)
        else:
            ch = _TcpChannel(self, cid, hub_window)
        self.channels[cid] = ch
        task = asyncio.get_running_loop().create_task(ch.connect(body, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def address_of(self, body: dict[str, Any]) -> str | None:
        hint = body.get("host")
        if self.allow_hub_addresses and isinstance(hint, str) and hint:
            return hint
        answer = self.resolve(str(body.get("deviceId", "")), str(body.get("deviceName", "")))
        if inspect.isawaitable(answer):
            answer = await answer
        return answer if isinstance(answer, str) and answer else None

    def forget(self, cid: int) -> None:
        self.channels.pop(cid, None)


class _ChannelBase:
    def __init__(self, relay: DeviceLinkRelay, cid: int, hub_window: int) -> None:
        self.relay = relay
        self.id = cid
        self.recv = ReceiveWindow(relay.window)
        self.sender = StreamSender(cid, hub_window, relay.emit)
        self.closed = False

    async def connect(self, body: dict[str, Any], port: int) -> None:
        relay = self.relay
        try:
            host = await relay.address_of(body)
        except Exception as exc:
            log.warning("resolving the address of %s failed: %s", body.get("deviceId"), exc)
            host = None
        if host is None:
            self.fail(CloseCode.UNREACHABLE, f"the gateway does not know the address of {body.get('deviceId')}")
            return
        try:
            await asyncio.wait_for(self._connect(host, port), relay.connect_timeout)
        except TimeoutError:
            self.fail(CloseCode.TIMEOUT, f"{host}:{port} did not answer within {relay.connect_timeout} s")
            return
        except ConnectionRefusedError as exc:
            self.fail(CloseCode.REFUSED, f"{host}:{port}: {exc.strerror or exc}")
            return
        except OSError as exc:
            self.fail(CloseCode.UNREACHABLE, f"{host}:{port}: {exc.strerror or exc}")
            return
        if self.closed:  # the hub gave up meanwhile
            self._close_socket()
            return
        log.info("channel %d: %s %s:%d open", self.id, type(self).__name__[1:4].lower(), host, port)

    def _opened(self) -> None:
        """The socket exists: OPENED goes out before anything the device sends."""
        if not self.closed:
            self.relay.emit(proto.json_frame(FrameType.OPENED, self.id, {"window": self.relay.window}))

    async def _connect(self, host: str, port: int) -> None:
        raise NotImplementedError

    def _close_socket(self) -> None:
        raise NotImplementedError

    def fail(self, code: int, reason: str) -> None:
        """Close with an error: CLOSE to the hub, the socket closed."""
        if self.closed:
            return
        log.info("channel %d closed: %s", self.id, reason)
        self.closed = True
        self.relay.forget(self.id)
        self.relay.emit(proto.close_frame(self.id, code, reason))
        self._close_socket()

    def abort_local(self) -> None:
        """The connection to the hub is gone: close without frames."""
        self.closed = True
        self._close_socket()

    def on_frame(self, frame: Frame) -> None:
        raise NotImplementedError


class _TcpChannel(_ChannelBase, asyncio.Protocol):
    def __init__(self, relay: DeviceLinkRelay, cid: int, hub_window: int) -> None:
        super().__init__(relay, cid, hub_window)
        self.transport: asyncio.Transport | None = None
        self.device_full = False
        self.reading_paused = False
        self.eof_from_hub = self.eof_from_device = False
        self.closing = False  # our CLOSE waits for held data

    async def _connect(self, host: str, port: int) -> None:
        await asyncio.get_running_loop().create_connection(lambda: self, host, port)

    def _close_socket(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # the device socket
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._opened()
        nodelay_socket(transport)  # and a DATA frame (256 KiB) fits without pausing

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.sender.send(data) and self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof_from_device = True
        if not self.closed:
            self.sender.eof()
        return not self.eof_from_hub

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed or self.closing:
            return
        if self.sender.close(CloseCode.NORMAL, "device closed the connection"):
            self.closed = True
            self.relay.forget(self.id)
        else:
            self.closing = True  # CLOSE goes after the data still held for credit

    def pause_writing(self) -> None:
        self.device_full = True

    def resume_writing(self) -> None:
        self.device_full = False
        credit = self.recv.release(True)
        if credit and not self.closed:
            self.relay.emit(proto.window_frame(self.id, credit))

    def hub_eof(self) -> bool:
        """The hub's side finished sending: half close towards the device (or close, when the
        device finished too). True while the device may still send."""
        self.eof_from_hub = True
        tr = self.transport
        if tr is not None and not tr.is_closing():
            if self.eof_from_device:
                tr.close()
            elif tr.can_write_eof():
                tr.write_eof()
        return not self.eof_from_device

    # frames from the hub
    def on_frame(self, frame: Frame) -> None:
        t = frame.type
        if t is FrameType.DATA:
            n = len(frame.body)
            if not self.recv.received(n):
                self.fail(CloseCode.PROTOCOL_ERROR, "DATA beyond the granted window")
                return
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame.body)
            credit = self.recv.delivered(n, self.device_full)
            if credit:
                self.relay.emit(proto.window_frame(self.id, credit))
        elif t is FrameType.WINDOW:
            if self.sender.grant(frame.credit()):
                if self.closing:
                    self.closed = True
                    self.relay.forget(self.id)
                elif self.reading_paused and self.transport is not None:
                    self.reading_paused = False
                    self.transport.resume_reading()
        elif t is FrameType.EOF:
            self.hub_eof()
        elif t is FrameType.CLOSE:
            self.closed = True
            self.relay.forget(self.id)
            self._close_socket()


class _StreamChannel(_TcpChannel):
    """A TCP channel whose data goes over a stream connection to the hub (``streams`` in the
    hub's HELLO, a ``stream`` token in OPEN): the device socket and that connection relay to
    each other directly, with TCP's own backpressure. When the hub's stream port cannot be
    reached, the channel answers OPENED and is framed over MQTT like any other."""

    def __init__(self, relay: DeviceLinkRelay, cid: int, hub_window: int, token: str) -> None:
        super().__init__(relay, cid, hub_window)
        self.token = token
        self.stream: _HubStream | None = None
        self.spliced: splice.SpliceRelay | None = None  # Linux: the kernel relays, no copies here
        self.framed = False  # fell back to the tunnel
        self.early = b""  # the device's first bytes, read before the stream (or tunnel) took data

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        if splice.available() and self.relay.use_splice and self.relay.stream_tls is None:
            await self._connect_spliced(loop, host, port)
            return
        await loop.create_connection(lambda: self, host, port)
        assert self.transport is not None
        relay = self.relay
        try:
            assert relay.stream_host is not None and relay.stream_port is not None
            _t, stream = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _HubStream(self),
                    relay.stream_host,
                    relay.stream_port,
                    ssl=relay.stream_tls,
                    server_hostname=relay.stream_host if relay.stream_tls is not None else None,
                ),
                relay.connect_timeout,
            )
        except (OSError, TimeoutError, AssertionError) as exc:
            log.warning("channel %d: the hub's stream port is not reachable (%s): framed over MQTT", self.id, exc)
            self._fall_back()
        else:
            if self.closed:
                stream.close()
                return
            self.stream = stream
            stream.send(b"GHS1 " + self.token.encode("ascii") + b"\n", preamble=True)
            if self.early:
                early, self.early = self.early, b""
                stream.send(early)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _connect_spliced(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        relay = self.relay
        device = await splice.connect(loop, host, port)  # the device's data waits in its socket
        try:
            assert relay.stream_host is not None and relay.stream_port is not None
            stream = await asyncio.wait_for(
                splice.connect(loop, relay.stream_host, relay.stream_port), relay.connect_timeout
            )
        except asyncio.CancelledError:  # the connect timeout as a whole, or the agent stopping
            device.close()
            raise
        except (OSError, TimeoutError, AssertionError) as exc:
            log.warning("channel %d: the hub's stream port is not reachable (%s): framed over MQTT", self.id, exc)
            try:
                await loop.create_connection(lambda: self, sock=device)
            except BaseException:
                device.close()
                raise
            self._fall_back()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
            return
        if self.closed:
            device.close()
            stream.close()
            return
        try:
            await loop.sock_sendall(stream, b"GHS1 " + self.token.encode("ascii") + b"\n")
        except OSError:
            device.close()
            stream.close()
            raise
        self.spliced = splice.SpliceRelay(loop, device, stream, on_closed=self._splice_closed)
        self.spliced.start()

    def _fall_back(self) -> None:
        """No stream: OPENED, and the data is framed over the tunnel from here on."""
        self.framed = True
        self._opened()
        if self.early:
            early, self.early = self.early, b""
            super().data_received(early)

    def _splice_closed(self) -> None:
        self.spliced = None
        if not self.closed:
            self.closed = True
            self.relay.forget(self.id)

    def _close_socket(self) -> None:
        super()._close_socket()
        if self.stream is not None:
            self.stream.close()
        if self.spliced is not None:
            self.spliced.close()

    # the device socket
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay_socket(transport)
        transport.pause_reading()  # type: ignore[attr-defined]  # until the stream (or tunnel) takes data

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.send(data)
        elif self.framed:
            super().data_received(data)
        elif not self.closed:
            # uvloop starts reading once connection_made has returned, whatever it paused: hold
            # this read (one at most) and pause again, now that pausing takes effect
            self.early += data
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.stream is not None:
            self.eof_from_device = True
            if not self.stream.write_eof():  # TLS has no half close: EOF through the tunnel, counted
                self.relay.emit(proto.stream_eof_frame(self.id, self.stream.sent))
            return not self.eof_from_hub
        return super().eof_received()

    def on_frame(self, frame: Frame) -> None:
        if self.stream is None:
            super().on_frame(frame)
            return
        if frame.type is FrameType.EOF:
            offset = proto.stream_eof_offset(frame)
            if offset is not None:
                self.stream.eof_at = offset
                self.stream.check_eof()
        elif frame.type is FrameType.CLOSE:
            self.closed = True
            self.relay.forget(self.id)
            self._close_socket()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.closed = True
            self.relay.forget(self.id)
            self.stream.close()  # the hub sees the stream end
            return
        if not self.framed:  # gone before the stream was up: the hub hears it in the tunnel
            self.fail(CloseCode.NORMAL, "device closed the connection")
            return
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        if self.stream is not None:
            self.stream.pause_reading()
        else:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self.stream is not None:
            self.stream.resume_reading()
        else:
            super().resume_writing()

    # the stream connection
    def from_hub(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def hub_gone(self) -> None:
        self.stream = None
        if not self.closed:
            self.closed = True
            self.relay.forget(self.id)
            super()._close_socket()

    def hub_full(self, full: bool) -> None:
        tr = self.transport
        if tr is None or tr.is_closing():
            return
        if full:
            tr.pause_reading()
        else:
            tr.resume_reading()


class _HubStream(asyncio.Protocol):
    """The agent's end of a stream channel's connection to the hub."""

    def __init__(self, channel: _StreamChannel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.sent = 0  # bytes to the hub (the preamble not counted)
        self.received = 0
        self.eof_at: int | None = None  # TLS: the hub's EOF, due once this much has come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay_socket(transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.channel.from_hub(data)
        self.check_eof()

    def check_eof(self) -> None:
        if self.eof_at is not None and self.received >= self.eof_at:
            self.eof_at = None
            self.channel.hub_eof()

    def eof_received(self) -> bool:
        if self.transport is not None and self.transport.get_extra_info("ssl_object") is not None:
            return False  # TLS ends whole (close_notify): the connection closes
        return self.channel.hub_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.channel.hub_gone()

    def pause_writing(self) -> None:
        self.channel.hub_full(True)

    def resume_writing(self) -> None:
        self.channel.hub_full(False)

    def send(self, data: bytes, *, preamble: bool = False) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if not preamble:
                self.sent += len(data)
            self.transport.write(data)

    def write_eof(self) -> bool:
        """Pass the device's EOF on; False when this connection cannot (TLS)."""
        t = self.transport
        if t is not None and not t.is_closing():
            if self.channel.eof_from_hub:
                t.close()
            elif t.can_write_eof():
                t.write_eof()
            else:
                return False
        return True

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def nodelay_socket(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY, and write-buffer limits that let a whole read through without pausing."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(AttributeError, ValueError):
        transport.set_write_buffer_limits(1024 * 1024, 256 * 1024)  # type: ignore[attr-defined]


class _UdpChannel(_ChannelBase, asyncio.DatagramProtocol):
    def __init__(self, relay: DeviceLinkRelay, cid: int, hub_window: int) -> None:
        super().__init__(relay, cid, hub_window)
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped = 0

    async def _connect(self, host: str, port: int) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, remote_addr=(host, port))

    def _close_socket(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._opened()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.closed and not self.sender.send_datagram(data):
            self.dropped += 1  # no credit: UDP may lose it, memory does not grow

    def error_received(self, exc: Exception) -> None:
        log.debug("channel %d: %s", self.id, exc)

    def on_frame(self, frame: Frame) -> None:
        t = frame.type
        if t is FrameType.DATA:
            n = len(frame.body)
            if not self.recv.received(n):
                self.fail(CloseCode.PROTOCOL_ERROR, "DATA beyond the granted window")
                return
            if self.transport is not None:
                self.transport.sendto(frame.body)
            credit = self.recv.delivered(n)
            if credit:
                self.relay.emit(proto.window_frame(self.id, credit))
        elif t is FrameType.WINDOW:
            self.sender.grant(frame.credit())
        elif t is FrameType.CLOSE:
            self.closed = True
            self.relay.forget(self.id)
            self._close_socket()


class DeviceLinkExtension(AgentExtension):
    """The relay plugged into the agent (``gatehub.agent.extensions``): the agent adds it when
    ``[devicelink] enabled`` (the default). A sub-device is reached at the host of the address its
    driver found it at (``SubDeviceView.address``, "host:port"), on the port the link asks for."""

    name = "devicelink"
    topic_filters = DeviceLinkRelay.topics

    def __init__(
        self,
        *,
        allow_hub_addresses: bool = False,
        max_channels: int = 256,
        connect_timeout: float = 10.0,
        streams: bool = True,
    ):
        self._streams = streams
        self._options = {
            "allow_hub_addresses": allow_hub_addresses,
            "max_channels": max_channels,
            "connect_timeout": connect_timeout,
        }
        self.relay: DeviceLinkRelay | None = None

    async def start(self, ctx: ExtensionContext) -> None:
        await super().start(ctx)
        # streams are protected as the MQTT connection is: TLS (with its certificate) beside TLS
        self.relay = DeviceLinkRelay(
            ctx.publish,
            self._resolve,
            stream_host=ctx.hub_host if self._streams else None,
            stream_tls=ctx.hub_tls_context() if self._streams else None,
            **self._options,  # type: ignore[arg-type]
        )

    def _resolve(self, device_id: str, device_name: str) -> str | None:
        view = self.ctx.subdevice(device_name) or self.ctx.subdevice(device_id)
        return host_of(view.address) if view is not None and view.address else None

    async def on_connected(self) -> None:
        if self.relay is not None:
            await self.relay.on_connected()

    async def on_disconnected(self) -> None:
        if self.relay is not None:
            await self.relay.on_disconnected()

    async def on_message(self, topic: str, payload: bytes) -> None:
        if self.relay is not None:
            await self.relay.on_message(topic, payload)

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.close()


def host_of(address: str) -> str:
    """The host of a driver's "host:port" address ("[v6]:port" too; a bare host stays)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else address
