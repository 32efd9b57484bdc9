"""The hub side of the via-gateway tunnel: a dialect that owns ``v1/devicelink/`` on the MQTT hub.

A gateway's agent announces itself with HELLO on ``v1/devicelink/up``; from then on its session
has a ``GatewayTunnel`` and links to its sub-devices relay through it, one channel per TCP
client connection or per UDP link (frames: ``protocols.devicelink``; spec: docs/devicelink.md).
Only a gateway principal may speak the protocol, and a channel is found only in the tunnel of
the session that carries it, so one gateway can never reach another's channels.

When the session ends, its channels close; when it ends for good (not taken over by a newer
connection of the same gateway), ``on_gateway_gone`` tells the link service, which closes the
gateway's links.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gatehub.domain.model import DeviceKind
from gatehub.protocols import devicelink as proto
from gatehub.protocols.devicelink import CloseCode, FrameError, FrameType, ReceiveWindow, StreamSender
from gatehub.protocols.mqtt import Publish, Subscription
from gatehub.protocols.mqtt.topics import topic_matches
from gatehub.transports.mqtt.dialect import AckResult, Dialect

if TYPE_CHECKING:
    from gatehub.services.links.contracts import StreamConnection, StreamPort
    from gatehub.services.links.model import Target
    from gatehub.transports.mqtt.session import MqttSession

log = logging.getLogger("gatehub.devicelink")

STATE_KEY = "devicelink"
NOT_AUTHORIZED = 0x87
MAX_CHANNELS = 1024  # open channels per gateway session


class HubChannel:
    """One relayed conversation through a gateway: the device end of a TCP client connection or
    of a UDP link (``user``)."""

    __slots__ = (
        "closed",
        "id",
        "protocol",
        "recv",
        "sender",
        "stream",
        "timer",
        "token",
        "tunnel",
        "user",
        "user_paused",
    )

    def __init__(self, tunnel: GatewayTunnel, channel_id: int, protocol: str, user: Any) -> None:
        self.tunnel = tunnel
        self.id = channel_id
        self.protocol = protocol
        self.user = user
        self.recv = ReceiveWindow(tunnel.window)
        self.sender: StreamSender | None = None  # once OPENED granted us credit
        self.user_paused = False  # our side's socket is full: credit is held back
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.token: str | None = None  # a stream channel is expected with this token
        self.stream: StreamConnection | None = None  # the agent's stream connection, once it came

    # a stream channel (transports.devicelink.streams) ----------------------------------------
    def stream_attached(self, conn: StreamConnection) -> Any:
        """The agent connected the stream of this channel: its data flows there from now on.
        Returns the user (the link's client connection), which ``conn`` relays to."""
        self.token = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.stream = conn
        user = self.user
        user.device_ready(conn)
        return user

    def stream_closed(self) -> None:
        self.stream = None
        self._forget()

    # DeviceEnd (TCP) / UdpDeviceEnd -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        s = self.sender
        if s is None or self.closed:
            return
        if not s.send(data):
            self.user.device_pause()

    def send(self, data: bytes) -> None:  # UDP: one datagram
        s = self.sender
        if s is None or self.closed or not s.send_datagram(data):
            self.user.dropped += 1  # no credit: UDP drops, memory does not grow

    def write_eof(self) -> None:
        if self.sender is not None and not self.closed:
            self.sender.eof()

    def pause_reading(self) -> None:
        self.user_paused = True

    def resume_reading(self) -> None:
        if not self.user_paused:
            return
        self.user_paused = False
        credit = self.recv.release(True)
        if credit and not self.closed:
            self.tunnel.send(proto.window_frame(self.id, credit))

    def close(self) -> None:
        """Our side is done: CLOSE to the agent (after data still held for credit)."""
        if self.closed:
            return
        if self.sender is not None and not self.sender.close(CloseCode.NORMAL, "client closed"):
            self.user = _Gone()  # the close frame follows the held data; nobody listens any more
            return
        self.tunnel.send(proto.close_frame(self.id, CloseCode.NORMAL, "closed"))
        self._forget()

    def _forget(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.token is not None and self.tunnel.streams is not None:
            self.tunnel.streams.forget(self.token)
            self.token = None
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.close()
        self.tunnel.channels.pop(self.id, None)

    # frames from the agent --------------------------------------------------------------------
    def on_frame(self, frame: proto.Frame) -> None:
        t = frame.type
        if t is FrameType.DATA:
            n = len(frame.body)
            if self.sender is None or not self.recv.received(n):
                self.abort(CloseCode.PROTOCOL_ERROR, "DATA beyond the granted window")
                return
            self.user.on_device_data(frame.body)
            credit = self.recv.delivered(n, self.user_paused)
            if credit and not self.closed:
                self.tunnel.send(proto.window_frame(self.id, credit))
        elif t is FrameType.WINDOW:
            if self.sender is not None and self.sender.grant(frame.credit()):
                if self.sender.close_after is None and isinstance(self.user, _Gone):
                    self._forget()
                else:
                    self.user.device_resume()
        elif t is FrameType.OPENED:
            if self.sender is not None or self.stream is not None:
                return
            if self.token is not None and self.tunnel.streams is not None:  # framed after all
                self.tunnel.streams.forget(self.token)
                self.token = None
            window = proto.check_window(frame.json().get("window"))
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.sender = StreamSender(self.id, window, self.tunnel.send)
            self.user.device_ready(self)
        elif t is FrameType.EOF:
            if self.stream is not None:
                offset = proto.stream_eof_offset(frame)
                if offset is not None:
                    self.stream.device_eof(offset)
            elif self.protocol == "tcp":
                self.user.on_device_eof()
        elif t is FrameType.CLOSE:
            code, reason = frame.close_reason()
            had_stream = self.stream is not None
            self._forget()
            if had_stream:
                return  # the stream's end tells the user
            if self.sender is None:
                self.user.device_failed(f"{_code_name(code)}: {reason}")
            else:
                self.user.on_device_closed()

    def abort(self, code: int, reason: str) -> None:
        """Close at once with an error, both towards the agent and our user."""
        if self.closed:
            return
        log.info("channel %d of %s closed: %s", self.id, self.tunnel.gateway_id, reason)
        self.tunnel.send(proto.close_frame(self.id, code, reason))
        self._forget()
        user, self.user = self.user, _Gone()
        if self.sender is None:
            user.device_failed(reason)
        else:
            user.on_device_closed()

    def _open_timeout(self) -> None:
        self.timer = None
        if self.sender is None and self.stream is None and not self.closed:
            self.abort(CloseCode.TIMEOUT, "the gateway did not answer OPEN in time")


class _Gone:
    """Stands in for a user that went away while frames were still due."""

    dropped = 0

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


def _code_name(code: int) -> str:
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return f"code {code}"


class GatewayTunnel:
    """The tunnel of one gateway session that sent HELLO."""

    def __init__(
        self,
        session: MqttSession,
        gateway_id: str,
        tenant_id: str,
        version: int,
        window: int,
        streams: StreamPort | None = None,
    ) -> None:
        self.session = session
        self.streams = streams  # the agent opens stream channels there (it offered them)
        self.gateway_id = gateway_id
        self.tenant_id = tenant_id
        self.version = version
        self.window = window
        self.channels: dict[int, HubChannel] = {}
        self._next = 1
        self.dead = False
        self.frames_out = 0

    def send(self, frame: bytes) -> None:
        if self.dead:
            return
        self.frames_out += 1
        res = self.session.send(proto.TOPIC_DOWN, frame, 1)
        if not res.accepted:
            log.warning("gateway %s: tunnel frame not taken (%s): closing its channels", self.gateway_id, res.value)
            self.close_all("the gateway's session could not take more frames")

    def _new_channel(self, protocol: str, user: Any) -> HubChannel:
        if len(self.channels) >= MAX_CHANNELS:
            raise ConnectionError(f"gateway {self.gateway_id} has {MAX_CHANNELS} open channels")
        cid = self._next
        self._next = cid + 1 if cid < 0xFFFFFFFF else 1
        ch = HubChannel(self, cid, protocol, user)
        self.channels[cid] = ch
        return ch

    def _open(self, ch: HubChannel, target: Target, timeout: float) -> None:
        body = {
            "protocol": ch.protocol,
            "deviceId": target.device_id,
            "deviceName": target.device_name,
            "port": target.port,
            "host": target.host,
            "window": self.window,
        }
        if self.streams is not None and ch.protocol == "tcp":
            ch.token = body["stream"] = self.streams.expect(ch)
        ch.timer = asyncio.get_running_loop().call_later(timeout, ch._open_timeout)
        self.send(proto.json_frame(FrameType.OPEN, ch.id, body))

    def open_tcp(self, user: Any, target: Target, timeout: float) -> None:
        """Open a channel for one TCP client connection; ``user.device_ready(channel)`` or
        ``user.device_failed(reason)`` follows."""
        if self.dead:
            user.device_failed(f"gateway {self.gateway_id} is not connected")
            return
        try:
            ch = self._new_channel("tcp", user)
        except ConnectionError as exc:
            user.device_failed(str(exc))
            return
        self._open(ch, target, timeout)

    def open_udp(self, user: Any, target: Target, timeout: float = 10.0) -> HubChannel:
        if self.dead:
            raise ConnectionError(f"gateway {self.gateway_id} is not connected")
        ch = self._new_channel("udp", user)
        self._open(ch, target, timeout)
        return ch

    def on_frame(self, frame: proto.Frame) -> None:
        ch = self.channels.get(frame.channel)
        if ch is None:
            return  # a channel we closed a moment ago: its last frames are of no use
        try:
            ch.on_frame(frame)
        except FrameError as exc:
            ch.abort(CloseCode.PROTOCOL_ERROR, str(exc))

    def close_all(self, reason: str) -> None:
        """The session is gone (or broke): every channel ends, without frames."""
        self.dead = True
        for ch in list(self.channels.values()):
            if ch.stream is not None:
                ch._forget()  # closes the stream: its end tells the user
                continue
            ch._forget()
            user, ch.user = ch.user, _Gone()
            try:
                if ch.sender is None:
                    user.device_failed(reason)
                else:
                    user.on_device_closed()
            except Exception:
                log.exception("closing channel %d failed", ch.id)


class TunnelDialect(Dialect):
    """``v1/devicelink/``: HELLO, then channel frames, from gateway sessions only."""

    name = "devicelink"
    prefixes = (proto.PREFIX,)

    def __init__(self, window: int, streams: StreamPort | None = None, streams_tls: StreamPort | None = None) -> None:
        self.window = window
        self.streams = streams  # for sessions on the plain listener
        self.streams_tls = streams_tls  # for sessions on the TLS listener
        self.tunnels: dict[str, GatewayTunnel] = {}  # gateway id -> its current tunnel
        self.on_gateway_gone: Callable[[str, str], None] | None = None  # (tenant id, gateway id)

    def listeners(self) -> list[StreamPort]:
        return [ls for ls in (self.streams, self.streams_tls) if ls is not None]

    def tunnel_for(self, gateway_id: str) -> GatewayTunnel | None:
        t = self.tunnels.get(gateway_id)
        if t is None or t.dead or t.session.closed:
            return None
        return t

    @staticmethod
    def _gateway(session: MqttSession) -> str | None:
        p = session.principal
        if p is None or p.device_id is None or p.device_kind != DeviceKind.GATEWAY.value:
            return None
        return p.device_id

    def on_publish(self, session: MqttSession, packet: Publish) -> AckResult:
        gw = self._gateway(session)
        if gw is None or packet.topic != proto.TOPIC_UP:
            return NOT_AUTHORIZED if packet.qos else None
        ok = 0 if packet.qos else None
        try:
            frame = proto.decode(packet.payload)
        except FrameError as exc:
            log.info("gateway %s: bad tunnel frame: %s", gw, exc)
            return ok
        if frame.type is FrameType.HELLO:
            self._hello(session, gw, frame)
            return ok
        tunnel: GatewayTunnel | None = session.state().get(STATE_KEY)
        if tunnel is None or frame.version != tunnel.version:
            return ok  # no HELLO yet, or a version not agreed: nothing to route to
        tunnel.on_frame(frame)
        return ok

    def _hello(self, session: MqttSession, gw: str, frame: proto.Frame) -> None:
        try:
            offered = frame.json().get("versions", [frame.version])
        except FrameError:
            offered = [frame.version]
        common = [v for v in proto.VERSIONS if isinstance(offered, list) and v in offered]
        if not common:
            session.send(proto.TOPIC_DOWN, proto.json_frame(FrameType.HELLO, 0, {"version": 0, "versions": [1]}), 1)
            log.info("gateway %s offers tunnel versions %s; this hub speaks %s", gw, offered, list(proto.VERSIONS))
            return
        old: GatewayTunnel | None = session.state().get(STATE_KEY)
        if old is not None:
            old.close_all("the agent started over (HELLO)")
        assert session.principal is not None
        try:
            wants_streams = frame.json().get("streams") is True
        except FrameError:
            wants_streams = False
        tls = session.transport is not None and session.transport.get_extra_info("ssl_object") is not None
        streams = (self.streams_tls if tls else self.streams) if wants_streams else None
        tunnel = GatewayTunnel(session, gw, session.principal.tenant_id, max(common), self.window, streams)
        session.state()[STATE_KEY] = tunnel
        self.tunnels[gw] = tunnel
        hello: dict[str, Any] = {"version": tunnel.version, "maxData": proto.MAX_DATA}
        if streams is not None:
            hello["streamPort"] = streams.port
            hello["streamTls"] = streams.ssl is not None
        session.send(proto.TOPIC_DOWN, proto.json_frame(FrameType.HELLO, 0, hello), 1)
        log.info("gateway %s: device-link tunnel v%d ready%s", gw, tunnel.version, " (streams)" if streams else "")

    def on_subscribe(self, session: MqttSession, sub: Subscription, subscription_id: int | None) -> int:
        if self._gateway(session) is None or not topic_matches(sub.topic_filter, proto.TOPIC_DOWN):
            return NOT_AUTHORIZED
        return min(sub.qos, 1)

    def on_unsubscribe(self, session: MqttSession, topic_filter: str) -> int:
        return 0

    async def on_disconnect(self, session: MqttSession, *, taken_over: bool) -> None:
        tunnel: GatewayTunnel | None = session.state().pop(STATE_KEY, None) if session.user else None
        if tunnel is None:
            return
        tunnel.close_all("the gateway's MQTT session ended")
        if self.tunnels.get(tunnel.gateway_id) is tunnel:
            del self.tunnels[tunnel.gateway_id]
        if not taken_over and self.on_gateway_gone is not None:
            self.on_gateway_gone(tunnel.tenant_id, tunnel.gateway_id)
