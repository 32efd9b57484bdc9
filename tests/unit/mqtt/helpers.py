"""A tiny MQTT client side for tests: builds packets with the codec and reads server bytes."""

from __future__ import annotations

from typing import Any

from gatehub.protocols.mqtt import (
    ConnectPacket,
    Decoder,
    Event,
    Packet,
    Properties,
    ServerConnection,
    ServerOptions,
    encode_packet,
)


class Peer:
    """The client end of a :class:`ServerConnection`, wired to it in memory."""

    def __init__(self, version: int = 5, options: ServerOptions | None = None) -> None:
        self.version = version
        self.server = ServerConnection(options)
        self.decoder = Decoder(version=version)

    def send(self, *packets: Packet) -> list[Event]:
        self.server.receive_data(b"".join(encode_packet(p, self.version) for p in packets))
        return self.server.events_received()

    def send_raw(self, data: bytes) -> list[Event]:
        self.server.receive_data(data)
        return self.server.events_received()

    def received(self) -> list[Packet]:
        self.decoder.feed(self.server.data_to_send())
        return list(self.decoder)

    def connect(
        self,
        client_id: str = "c1",
        clean_start: bool = True,
        keepalive: int = 60,
        properties: Properties | None = None,
        **fields: Any,
    ) -> list[Event]:
        packet = ConnectPacket(client_id, self.version, clean_start, keepalive, **fields)
        if properties is not None:
            packet.properties = properties
        return self.send(packet)

    def connected(self, client_id: str = "c1", properties: Properties | None = None, **accept: Any) -> Peer:
        events = self.connect(client_id, properties=properties)
        assert events and type(events[0]).__name__ == "Connect", events
        self.server.accept(**accept)
        packets = self.received()
        assert packets and packets[0].type.name == "CONNACK"
        return self
