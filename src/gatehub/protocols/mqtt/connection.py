"""Server side of one MQTT connection, sans I/O (in the style of websockets' ``protocol.py``).

The transport feeds bytes with :meth:`ServerConnection.receive_data`, takes events with
:meth:`~ServerConnection.events_received`, acts with the methods below, and writes
:meth:`~ServerConnection.data_to_send` to the socket; when :attr:`~ServerConnection.should_close`
is true it flushes and closes. Methods that act may produce events too (``accept`` processes
packets the client pipelined after CONNECT): read events again after calling them.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from gatehub.errors import LocalProtocolError, RemoteProtocolError

from .decode import Decoder
from .encode import PINGRESP
from .events import (
    SESSION_NEVER_EXPIRES,
    Auth,
    Connect,
    Disconnect,
    Event,
    ProtocolViolation,
    Subscribe,
    Unsubscribe,
)
from .options import ServerOptions
from .outbound import OutboundMixin
from .packets import (
    AuthPacket,
    ConnackPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubackPacket,
    SubscribePacket,
    UnsubackPacket,
    UnsubscribePacket,
)
from .properties import EMPTY_PROPERTIES, Properties, PropertyId
from .reason_codes import (
    CLIENT_DISCONNECT_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    MQTT_5,
    SUBACK_CODES,
    SUBACK_CODES_V311,
    UNSUBACK_CODES,
    connack_code_for,
)
from .session import SessionState
from .state import State
from .wire import MAX_PACKET_SIZE, UnsupportedProtocolVersion


def _take(pending: dict[int, deque[int]], packet_id: int) -> int | None:
    waiting = pending.get(packet_id)
    if not waiting:
        return None
    count = waiting.popleft()
    if not waiting:
        del pending[packet_id]
    return count


class ServerConnection(OutboundMixin):
    __slots__ = (
        "_acked",
        "_alias_out",
        "_alias_out_max",
        "_aliases_in",
        "_auth_method",
        "_client_max_packet",
        "_client_receive_max",
        "_connect_expiry",
        "_decoder",
        "_events",
        "_inbound",
        "_inbound_order",
        "_keepalive",
        "_out",
        "_output_paused",
        "_problem_info",
        "_subacks",
        "_unsubacks",
        "client_id",
        "connect",
        "options",
        "session",
        "state",
        "version",
    )

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options = options or ServerOptions()
        self.state = State.AWAITING_CONNECT
        self.version: int | None = None
        self.client_id: str | None = None
        self.connect: Connect | None = None
        self.session: SessionState | None = None
        # until the CONNECT is accepted: only a CONNECT first, and no packet above max_connect_size
        self._decoder = Decoder(
            max_packet_size=min(options.max_connect_size, options.max_packet_size), first_connect=True
        )
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._keepalive = 0
        self._auth_method: str | None = None
        self._problem_info = True
        self._connect_expiry = 0
        self._client_receive_max = options.max_inflight  # the send window: set from the CONNECT
        self._output_paused = False
        self._client_max_packet = MAX_PACKET_SIZE
        self._alias_out_max = 0
        self._alias_out: OrderedDict[str, int] = OrderedDict()
        self._aliases_in: dict[int, str] = {}
        self._inbound: dict[int, int] = {}  # packet id -> QoS, delivered and not yet acked
        self._inbound_order: deque[int] = deque()
        self._acked: dict[int, tuple[int, str | None]] = {}
        # packet id -> filter counts of SUBSCRIBE / UNSUBSCRIBE awaiting an answer (FIFO, so
        # that a client reusing an id still gets one answer per request)
        self._subacks: dict[int, deque[int]] = {}
        self._unsubacks: dict[int, deque[int]] = {}

    # I/O interface -----------------------------------------------------------------------------
    @property
    def should_close(self) -> bool:
        """True once the connection is over: flush ``data_to_send()`` and close the socket."""
        return self.state is State.CLOSED

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.state is State.CLOSED:
            return
        self._decoder.feed(data)
        self._process()

    def receive_eof(self) -> None:
        """The peer closed the connection (without DISCONNECT: the will is to be published)."""
        self.state = State.CLOSED

    @property
    def has_events(self) -> bool:
        """True if :meth:`events_received` has something."""
        return bool(self._events)

    def events_received(self) -> list[Event]:
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def keepalive_timeout(self) -> float | None:
        """Seconds of silence after which the client is gone (1.5 x keep alive), or None."""
        if self.state is State.CLOSED or self.state is State.AWAITING_CONNECT or not self._keepalive:
            return None
        return self._keepalive * 1.5

    def keepalive_expired(self) -> None:
        """The transport saw no packet within :meth:`keepalive_timeout`: DISCONNECT 0x8D, close."""
        if self.state is State.CONNECTED:
            self._violation(0x8D, "keep alive timeout")
        elif self.state is not State.CLOSED:  # no CONNACK yet: there is no packet to say it with
            self.state = State.CLOSED
            self._events.append(ProtocolViolation(0x8D, "keep alive timeout"))

    def pause_output(self) -> None:
        """The transport's write buffer is full: QoS 1/2 messages wait in the session queue
        (within its bounds) instead of being written, whatever room the window has."""
        self._output_paused = True

    def resume_output(self) -> None:
        """The transport can take more: queued messages move into the window again."""
        if self._output_paused:
            self._output_paused = False
            self._pump()

    def discard_input(self) -> None:
        """Drop every byte received and not processed (the transport is closing the connection)."""
        self._decoder.clear()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet processed (they wait while CONNECT awaits an answer)."""
        return self._decoder.buffered

    # inbound processing ------------------------------------------------------------------------
    def _process(self) -> None:
        decoder = self._decoder
        events = self._events
        while True:
            state = self.state
            if state is not State.CONNECTED and (
                state is State.CLOSED or (state is State.CONNECTING and self._auth_method is None)
            ):
                return
            try:
                packet = decoder.next_packet()
            except UnsupportedProtocolVersion as exc:
                if state is State.AWAITING_CONNECT:
                    self._refuse_version(exc)
                else:
                    self._violation(0x82, "a second CONNECT")
                return
            except RemoteProtocolError as exc:
                self._violation(exc.reason_code, exc.message)
                return
            if packet is None:
                return
            if type(packet) is PublishPacket and state is State.CONNECTED:
                if self.version == MQTT_5 or packet.qos:
                    self._on_publish(packet)
                else:
                    events.append(packet)
                continue
            self._dispatch(packet)

    def _dispatch(self, packet: Packet) -> None:
        state = self.state
        kind = type(packet)
        if state is State.CONNECTED:
            # most frequent first; exact type checks are cheaper than isinstance
            if kind is PubAckPacket:
                self._on_puback(packet)  # type: ignore[arg-type]
            elif kind is PubRecPacket:
                self._on_pubrec(packet)  # type: ignore[arg-type]
            elif kind is PubCompPacket:
                self._on_pubcomp(packet)  # type: ignore[arg-type]
            elif kind is PubRelPacket:
                self._on_pubrel(packet)  # type: ignore[arg-type]
            elif kind is PingReqPacket:
                self._out.append(PINGRESP)
            elif kind is SubscribePacket:
                self._on_subscribe(packet)  # type: ignore[arg-type]
            elif kind is UnsubscribePacket:
                self._on_unsubscribe(packet)  # type: ignore[arg-type]
            elif kind is DisconnectPacket:
                self._on_disconnect(packet)  # type: ignore[arg-type]
            elif kind is AuthPacket:
                self._on_auth(packet)  # type: ignore[arg-type]
            elif kind is PublishPacket:
                self._on_publish(packet)  # type: ignore[arg-type]
            else:
                self._violation(0x82, f"a client must not send {packet.type.name}")
        elif state is State.AWAITING_CONNECT:
            if kind is ConnectPacket:
                self._on_connect(packet)  # type: ignore[arg-type]
            else:
                self._violation(0x82, f"{packet.type.name} before CONNECT")
        elif kind is DisconnectPacket:
            self._on_disconnect(packet)  # type: ignore[arg-type]
        elif kind is AuthPacket:
            self._on_auth(packet)  # type: ignore[arg-type]
        else:
            self._violation(0x82, f"{packet.type.name} during enhanced authentication")

    def _on_connect(self, packet: ConnectPacket) -> None:
        options = self.options
        version = self.version = packet.protocol_level
        props = packet.properties
        will = packet.will
        if will is not None and will.qos > options.maximum_qos:
            self._violation(0x9B, f"will QoS {will.qos} above the maximum QoS")
            return
        if will is not None and will.retain and not options.retain_available:
            self._violation(0x9A, "retained will but retain is not available")
            return
        client_id = packet.client_id
        assigned = False
        if not client_id:
            if version != MQTT_5 and not packet.clean_start:
                self._violation(0x85, "empty client identifier without clean session")
                return
            client_id = options.assign_client_id()
            assigned = True
        if version == MQTT_5:
            expiry = props.session_expiry_interval or 0
            # the client's Receive Maximum is honoured; without one (the spec's default is
            # 65535) the server's window applies, as for 3.1.1 (fewer is always allowed)
            self._client_receive_max = props.receive_maximum or options.max_inflight
            self._client_max_packet = props.maximum_packet_size or MAX_PACKET_SIZE
            self._alias_out_max = min(props.topic_alias_maximum or 0, options.outbound_topic_alias_maximum)
            self._problem_info = props.request_problem_information != 0
            self._auth_method = props.authentication_method
        else:
            expiry = 0 if packet.clean_start else SESSION_NEVER_EXPIRES
            self._client_receive_max = options.max_inflight
        self._connect_expiry = expiry
        self._keepalive = packet.keepalive
        self.client_id = client_id
        self.state = State.CONNECTING
        self.connect = event = Connect(
            client_id=client_id,
            protocol_version=version,
            clean_start=packet.clean_start,
            keepalive=packet.keepalive,
            username=packet.username,
            password=packet.password,
            will=will,
            session_expiry_interval=expiry,
            receive_maximum=props.receive_maximum or 65535,
            maximum_packet_size=props.maximum_packet_size,
            topic_alias_maximum=props.topic_alias_maximum or 0,
            request_response_information=bool(props.request_response_information),
            request_problem_information=self._problem_info,
            authentication_method=props.authentication_method,
            authentication_data=props.authentication_data,
            user_properties=props.user_properties,
            client_id_assigned=assigned,
            properties=props,
        )
        self._events.append(event)

    def _on_publish(self, packet: PublishPacket) -> None:
        props = packet.properties
        if props:
            alias = props.topic_alias
            if alias is not None:
                if alias > self.options.topic_alias_maximum:
                    self._violation(0x94, f"topic alias {alias} above the maximum")
                    return
                if packet.topic:
                    self._aliases_in[alias] = packet.topic
                else:
                    topic = self._aliases_in.get(alias)
                    if topic is None:
                        self._violation(0x94, f"unknown topic alias {alias}")
                        return
                    packet.topic = topic
                packet.properties = props = props.without(PropertyId.TOPIC_ALIAS)
            if props.subscription_identifiers:
                self._violation(0x82, "a client PUBLISH must not carry a subscription identifier")
                return
        qos = packet.qos
        if qos > self.options.maximum_qos:
            self._violation(0x9B, f"QoS {qos} above the maximum QoS")
            return
        if packet.retain and not self.options.retain_available:
            self._violation(0x9A, "retain is not available")
            return
        bad_format = False
        if props and props.payload_format_indicator == 1 and self.options.validate_payload_format:
            try:
                packet.payload.decode("utf-8")
            except UnicodeDecodeError:
                bad_format = True
        if not qos:
            if bad_format:
                self._violation(0x99, "payload is not UTF-8 but its format indicator says so")
            else:
                self._events.append(packet)
            return
        session = self.session
        assert session is not None
        pid = packet.packet_id
        if pid in self._inbound:
            return  # a resend of a message the hub has not acknowledged yet
        if qos == 2 and pid in session.inbound_qos2:
            self._send(PubRecPacket(pid))  # resend; already delivered once
            return
        if len(self._inbound) + len(session.inbound_qos2) >= self.options.receive_maximum:
            self._violation(0x93, "receive maximum exceeded")
            return
        self._inbound[pid] = qos
        self._inbound_order.append(pid)
        if bad_format:
            self._acked[pid] = (0x99, "payload is not UTF-8 but its format indicator says so")
            self._flush_acks()
        else:
            self._events.append(packet)

    def _on_subscribe(self, packet: SubscribePacket) -> None:
        props = packet.properties
        sid = props.subscription_identifiers
        if sid and not self.options.subscription_identifier_available:
            self._violation(0xA1, "subscription identifiers are not supported")
            return
        self._subacks.setdefault(packet.packet_id, deque()).append(len(packet.subscriptions))
        self._events.append(
            Subscribe(packet.packet_id, packet.subscriptions, sid[0] if sid else None, props.user_properties)
        )

    def _on_unsubscribe(self, packet: UnsubscribePacket) -> None:
        self._unsubacks.setdefault(packet.packet_id, deque()).append(len(packet.topic_filters))
        self._events.append(Unsubscribe(packet.packet_id, packet.topic_filters, packet.properties.user_properties))

    def _on_disconnect(self, packet: DisconnectPacket) -> None:
        props = packet.properties
        code = packet.reason_code
        if code not in CLIENT_DISCONNECT_CODES:
            self._violation(0x82, f"a client must not send DISCONNECT 0x{code:02x}")
            return
        expiry = props.session_expiry_interval
        if expiry is not None:
            if self._connect_expiry == 0 and expiry != 0:
                self._violation(0x82, "session expiry interval changed from 0 on DISCONNECT")
                return
            cap = self.options.max_session_expiry_interval
            if self.session is not None:
                self.session.session_expiry_interval = expiry if cap is None else min(expiry, cap)
        self.state = State.CLOSED
        self._events.append(Disconnect(code, expiry, props.reason_string, props.user_properties))

    def _on_auth(self, packet: AuthPacket) -> None:
        props = packet.properties
        method = props.authentication_method
        if self._auth_method is None or method != self._auth_method:
            self._violation(0x82, "AUTH without the authentication method of the CONNECT")
            return
        code = packet.reason_code
        if code == 0 or (code == 0x19 and self.state is not State.CONNECTED):
            self._violation(0x82, f"unexpected AUTH reason code 0x{code:02x}")
            return
        self._events.append(Auth(code, method, props.authentication_data, props.reason_string, props.user_properties))

    # errors -----------------------------------------------------------------------------------
    def _violation(self, code: int, message: str) -> None:
        if self.state is State.CLOSED:
            return
        version = self.version or self._decoder.version
        if self.state is not State.CONNECTED:
            if version == MQTT_5:
                connack_code = code if code in CONNACK_CODES else 0x82
                self._send(ConnackPacket(False, connack_code, Properties(reason_string=message[:200])), 5)
            elif version is not None and code == 0x85:
                self._send(ConnackPacket(False, 2), version)
        elif version == MQTT_5:
            code = code if code in DISCONNECT_CODES else 0x82
            self._send(DisconnectPacket(code, Properties(reason_string=message[:200])))
        self.state = State.CLOSED
        self._events.append(ProtocolViolation(code, message))

    def _closed_by_server(self) -> None:
        self.state = State.CLOSED

    def _refuse_version(self, exc: UnsupportedProtocolVersion) -> None:
        if exc.protocol_level > MQTT_5:
            self._send(ConnackPacket(False, 0x84), MQTT_5)
        else:
            self._send(ConnackPacket(False, 1), 4)
        self.state = State.CLOSED
        self._events.append(ProtocolViolation(0x84, exc.message))

    # actions of the transport -----------------------------------------------------------------
    def accept(
        self,
        *,
        session: SessionState | None = None,
        session_present: bool | None = None,
        session_expiry_interval: int | None = None,
        response_information: str | None = None,
        authentication_data: bytes | None = None,
        reason_string: str | None = None,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer the CONNECT with success.

        Pass the ``session`` to resume (its unacknowledged messages are resent, DUP set) or
        ``None`` for a new one (always ``None`` on a clean start). Session Present defaults to
        whether a session was passed. ``session_expiry_interval`` overrides the client's request.
        """
        if self.state is not State.CONNECTING:
            raise LocalProtocolError(f"accept() in state {self.state.name}")
        connect = self.connect
        assert connect is not None and self.client_id is not None
        options = self.options
        expiry = connect.session_expiry_interval
        if options.max_session_expiry_interval is not None and self.version == MQTT_5:
            expiry = min(expiry, options.max_session_expiry_interval)
        if session_expiry_interval is not None:
            expiry = session_expiry_interval
        if session is None:
            session = options.new_session(self.client_id, expiry)
            present = False
        else:
            if connect.clean_start:
                raise LocalProtocolError("a clean start must not resume a session")
            if session.client_id != self.client_id:
                raise LocalProtocolError(f"session of {session.client_id!r} offered to {self.client_id!r}")
            present = True if session_present is None else session_present
            session.session_expiry_interval = expiry
        self.session = session
        props = EMPTY_PROPERTIES
        if self.version == MQTT_5:
            if options.server_keep_alive is not None:
                self._keepalive = options.server_keep_alive
            props = options.connack_properties(
                session_expiry_interval=expiry if expiry != connect.session_expiry_interval else None,
                assigned_client_identifier=self.client_id if connect.client_id_assigned else None,
                authentication_method=self._auth_method,
                authentication_data=authentication_data,
                response_information=response_information if connect.request_response_information else None,
                reason_string=reason_string,
                user_properties=user_properties,
            )
        self._send(ConnackPacket(present, 0, props))
        self.state = State.CONNECTED
        self._decoder.max_packet_size = options.max_packet_size
        self._resend_inflight()
        self._pump()
        self._process()

    def refuse(
        self, reason_code: int, *, reason_string: str | None = None, server_reference: str | None = None
    ) -> None:
        """Answer the CONNECT with a failure (MQTT 5 code >= 0x80, or a 3.1.1 code 1-5) and close.

        Codes are translated to the client's version (0x86 <-> 4, 0x87 <-> 5, ...).
        """
        if self.state is not State.CONNECTING:
            raise LocalProtocolError(f"refuse() in state {self.state.name}")
        version = self.version or 4
        code = connack_code_for(version, reason_code)
        if version == MQTT_5 and (code < 0x80 or code not in CONNACK_CODES):
            raise LocalProtocolError(f"0x{reason_code:02x} is not a CONNACK failure code")
        if version != MQTT_5 and code == 0:
            raise LocalProtocolError("refuse() needs a failure code")
        props = Properties(reason_string=reason_string, server_reference=server_reference)
        self._send(ConnackPacket(False, code, props if version == MQTT_5 else EMPTY_PROPERTIES))
        self.state = State.CLOSED

    def send_auth(
        self, reason_code: int = 0x18, *, data: bytes | None = None, reason_string: str | None = None
    ) -> None:
        """MQTT 5 enhanced authentication: continue (0x18) or, after re-authentication, success (0x00)."""
        if self.version != MQTT_5 or self._auth_method is None:
            raise LocalProtocolError("AUTH needs MQTT 5 and an authentication method in CONNECT")
        if self.state is State.CLOSED:
            return
        if reason_code not in (0x00, 0x18) or (reason_code == 0 and self.state is not State.CONNECTED):
            raise LocalProtocolError(f"cannot send AUTH 0x{reason_code:02x} now")
        props = Properties(
            authentication_method=self._auth_method, authentication_data=data, reason_string=reason_string
        )
        self._send(AuthPacket(reason_code, props))

    def disconnect(
        self, reason_code: int = 0, reason_string: str | None = None, *, server_reference: str | None = None
    ) -> None:
        """Close the connection; on MQTT 5 with a DISCONNECT (a CONNACK if not yet accepted)."""
        state = self.state
        if state is State.CLOSED:
            return
        if state is State.CONNECTING:
            self.refuse(reason_code if reason_code >= 0x80 else 0x80, reason_string=reason_string)
            return
        if state is State.CONNECTED and self.version == MQTT_5:
            if reason_code not in DISCONNECT_CODES:
                raise LocalProtocolError(f"0x{reason_code:02x} is not a DISCONNECT reason code")
            props = Properties(reason_string=reason_string, server_reference=server_reference)
            self._send(DisconnectPacket(reason_code, props))
        self.state = State.CLOSED

    def send_suback(self, packet_id: int, reason_codes: list[int], *, reason_string: str | None = None) -> None:
        """Answer a :class:`Subscribe` with one code per subscription (granted QoS or failure).

        On MQTT 3.1.1 every failure code becomes 0x80.
        """
        if self.state is State.CLOSED:
            return
        waiting = self._subacks.get(packet_id)
        if not waiting or waiting[0] != len(reason_codes):
            raise LocalProtocolError(f"SUBACK {packet_id} does not answer a pending SUBSCRIBE")
        if self.version == MQTT_5:
            allowed = SUBACK_CODES
            props = Properties(reason_string=reason_string)
        else:
            allowed = SUBACK_CODES_V311
            reason_codes = [c if c < 0x80 else 0x80 for c in reason_codes]
            props = EMPTY_PROPERTIES
        if not allowed.issuperset(reason_codes):
            raise LocalProtocolError(f"invalid SUBACK reason codes {reason_codes}")
        _take(self._subacks, packet_id)
        self._send(SubackPacket(packet_id, list(reason_codes), props))

    def send_unsuback(
        self, packet_id: int, reason_codes: list[int] | None = None, *, reason_string: str | None = None
    ) -> None:
        """Answer an :class:`Unsubscribe`; MQTT 5 codes default to success for every filter."""
        if self.state is State.CLOSED:
            return
        waiting = self._unsubacks.get(packet_id)
        if not waiting:
            raise LocalProtocolError(f"UNSUBACK {packet_id} does not answer a pending UNSUBSCRIBE")
        if self.version != MQTT_5:
            _take(self._unsubacks, packet_id)
            self._send(UnsubackPacket(packet_id))
            return
        codes = [0] * waiting[0] if reason_codes is None else list(reason_codes)
        if len(codes) != waiting[0] or not UNSUBACK_CODES.issuperset(codes):
            raise LocalProtocolError(f"invalid UNSUBACK reason codes {codes}")
        _take(self._unsubacks, packet_id)
        self._send(UnsubackPacket(packet_id, codes, Properties(reason_string=reason_string)))
