"""What one device link is: its request, where it leads, its counters and its life.

A link owns one port of the pool (TCP listener or UDP socket). Subclasses
(``transports.devicelink.tcp.TcpLink``, ``transports.devicelink.udp.UdpLink``) relay; this base
keeps what every link has: the client admission rule (``source`` lock, first-client
inheritance), the idle timeout, the byte counters and closing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatehub.protocols.linkcrypto import LITERAL, LinkCipher
from gatehub.services.links.contracts import Mode, Target

__all__ = ["Link", "LinkRequest", "Mode", "Target", "new_link_id", "new_link_token", "normalise_ip"]

log = logging.getLogger("gatehub.devicelink")


@dataclass(slots=True)
class LinkRequest:
    protocol: str  # "tcp" or "udp"
    device_port: int
    timeout_ms: int | None  # None or 0: never
    source_host: str | None
    source_port: int | None
    source_ips: frozenset[str]  # what source_host resolved to (normalised)
    key_hex: str | None
    iv_hex: str | None
    cipher_key: bytes | None
    cipher_iv: bytes | None
    cipher_mode: str = LITERAL  # linkcrypto.LITERAL or PER_CONNECTION


def normalise_ip(host: str) -> str:
    """An address as compared with the source lock: IPv4-mapped IPv6 becomes IPv4."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def new_link_id() -> str:
    return "lnk_" + secrets.token_hex(6)


def new_link_token() -> str:
    return secrets.token_urlsafe(24)


class Link:
    """Base of TCP and UDP links."""

    protocol = "?"

    def __init__(
        self,
        *,
        tenant_id: str,
        identifier: str,
        request: LinkRequest,
        target: Target,
        on_closed: Callable[[Link], None],
    ) -> None:
        self.id = new_link_id()
        self.token = new_link_token()
        self.tenant_id = tenant_id
        self.identifier = identifier
        self.request = request
        self.target = target
        self.port = 0
        self.loop = asyncio.get_running_loop()
        self.cipher = (
            LinkCipher(request.cipher_key, request.cipher_iv, request.cipher_mode)
            if request.cipher_key is not None and request.cipher_iv is not None
            else None
        )
        self.created_at = int(time.time() * 1000)
        self.bytes_in = 0  # client -> device, payload bytes relayed to the device
        self.bytes_out = 0  # device -> client, payload bytes relayed to the client
        self.connections = 0  # TCP client connections accepted (UDP: 1 once a client is known)
        self.refused = 0  # clients refused (source lock, another client active, bad header)
        self.dropped = 0  # UDP datagrams dropped (no client yet, no credit, too short)
        self.inherited: str | None = None  # the client that inherited the link (no source given)
        self.customer_id: str | None = None  # the device's customer when the link was made
        self.closed = False
        self.close_reason = ""
        self.last_activity = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._on_closed = on_closed

    # admission --------------------------------------------------------------------------------
    def admits(self, host: str, port: int, *, lock_port: bool) -> bool:
        """May a client at host:port use this link? With ``source``: exactly that host (and port,
        when one was given). Without: the first client inherits the link: later clients must come
        from the same host (TCP: any port, clients reconnect from new ports) or host:port (UDP)."""
        ip = normalise_ip(host)
        r = self.request
        if r.source_host is not None:
            if ip not in r.source_ips:
                return False
            return r.source_port is None or r.source_port == port
        key = f"{ip}:{port}" if lock_port else ip
        if self.inherited is None:
            self.inherited = key
            log.info("link %s: inherited by %s", self.id, key)
            return True
        return self.inherited == key

    # timeout ----------------------------------------------------------------------------------
    @property
    def timeout_ms(self) -> int | None:
        t = self.request.timeout_ms
        return t if t else None

    def start_timer(self) -> None:
        t = self.timeout_ms
        if t is not None:
            self._timer = self.loop.call_later(t / 1000, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        t = self.timeout_ms
        assert t is not None
        idle = time.monotonic() - self.last_activity
        if idle * 1000 >= t:
            self.close(f"timeout: no traffic for {t} ms")
        else:
            self._timer = self.loop.call_later(t / 1000 - idle, self._check_idle)

    # closing ----------------------------------------------------------------------------------
    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._shutdown()
        except Exception:
            log.exception("link %s: closing its sockets failed", self.id)
        log.info(
            "link %s closed (%s): %s port %d -> %s, %d bytes in, %d bytes out",
            self.id,
            reason,
            self.protocol,
            self.port,
            self.target.device_id,
            self.bytes_in,
            self.bytes_out,
        )
        self._on_closed(self)

    def _shutdown(self) -> None:
        """Close the listener and every connection (subclasses)."""

    async def bind(self, port: int, host: str) -> None:
        """Bind the link's port (subclasses); raises OSError when the port is taken."""
        raise NotImplementedError

    async def open_device(self) -> None:
        """Open the device side if it is opened at creation (UDP) and wait until it is usable;
        raises ConnectionError with the reason when it cannot be."""

    # views ------------------------------------------------------------------------------------
    def public(self, *, with_token: bool, with_key: bool = False) -> dict[str, Any]:
        r = self.request
        out: dict[str, Any] = {
            "id": self.id,
            "deviceIdentifier": self.identifier,
            "deviceId": self.target.device_id,
            "tenantId": self.tenant_id,
            "protocol": self.protocol,
            "devicePort": r.device_port,
            "port": self.port,
            "mode": self.target.mode.value,
            "createdAt": self.created_at,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "connections": self.connections,
            "refused": self.refused,
        }
        if self.protocol == "udp":
            out["dropped"] = self.dropped
        if r.timeout_ms is not None:
            out["timeout"] = r.timeout_ms
        if r.source_host is not None:
            src: dict[str, Any] = {"host": r.source_host}
            if r.source_port is not None:
                src["port"] = r.source_port
            out["source"] = src
        if self.inherited is not None:
            out["inheritedBy"] = self.inherited
        if self.target.gateway_id is not None:
            out["gatewayId"] = self.target.gateway_id
        if r.key_hex is not None:
            out["encrypt"] = (
                {"key": r.key_hex, "initializationVector": r.iv_hex, "mode": r.cipher_mode}
                if with_key
                else {"cipher": "aes-256-ctr", "mode": r.cipher_mode}
            )
        if with_token:
            out["token"] = self.token
        return out

    def log_body(self) -> dict[str, Any]:
        """What the event log keeps of a link (no token, no key)."""
        body = self.public(with_token=False)
        body.pop("tenantId", None)
        body["address"] = self.target.host
        body["addressSource"] = self.target.address_source
        if self.closed:
            body["closedAt"] = int(time.time() * 1000)
            body["reason"] = self.close_reason
        return body
