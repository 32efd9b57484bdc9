"""Typed settings of a gatehub node.

Every setting has a default that makes `gatehub serve` work on one machine with SQLite in
``./var``. Each can be set by an environment variable ``GATEHUB_<NAME>`` (upper case), by a TOML
file (``GATEHUB_CONFIG`` or ``gatehub serve --config FILE``), or on the command line with
``gatehub serve --set name=value``. Precedence: command line > environment > file > default.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gatehub.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEHUB_", extra="forbid", validate_default=True)

    # where things live
    data_dir: Path = Field(Path("var"), description="Folder for the SQLite database, the CA and keys")
    database_url: str = Field("", description="SQLAlchemy URL; empty = sqlite+aiosqlite:///<data_dir>/gatehub.db")
    # listeners (port 0 = pick a free port; -1 = listener off)
    bind_host: str = Field("0.0.0.0", description="Address every listener binds to")
    http_port: int = Field(8080, description="REST API + console (HTTP)")
    iotda_port: int = Field(8443, description="IoTDA-compatible HTTPS device API")
    mqtt_port: int = Field(1883, description="MQTT over TCP")
    mqtts_port: int = Field(8883, description="MQTT over TLS with client certificates")
    mqtt_ws_port: int = Field(-1, description="MQTT over WebSocket (off by default)")
    grpc_port: int = Field(4010, description="gRPC G-SDK master-gateway API (mTLS)")
    devicelink_port_min: int = Field(40000, description="First port for device links")
    devicelink_port_max: int = Field(40999, description="Last port for device links")
    tls_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host names and addresses in the TLS server certificate (SANs)",
    )
    # MQTT
    mqtt_max_packet_size: int = Field(4 * 1024 * 1024, ge=64, description="Largest MQTT packet accepted")
    mqtt_receive_maximum: int = Field(
        1000, ge=1, le=65535, description="QoS 1/2 messages a client may have unacknowledged"
    )
    mqtt_max_queued_messages: int = Field(
        1000, ge=1, description="Messages queued per session for an offline or slow client"
    )
    mqtt_max_queued_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Bytes (payloads and topics) queued per session, at most"
    )
    mqtt_queue_overflow: Literal["disconnect", "drop_oldest", "drop_newest"] = Field(
        "disconnect",
        description="A connected session's queue at a bound: disconnect it (0x97), drop its oldest or the new message",
    )
    mqtt_max_inflight: int = Field(
        20,
        ge=1,
        le=65535,
        description="QoS 1/2 messages in flight to a 3.1.1 client or an MQTT 5 one without Receive Maximum",
    )
    mqtt_max_connect_size: int = Field(
        64 * 1024, ge=1024, description="Largest CONNECT (and any packet before it is accepted)"
    )
    mqtt_preauth_buffer_limit: int = Field(
        16 * 1024 * 1024, ge=64 * 1024, description="Bytes a listener's unauthenticated connections may hold in all"
    )
    mqtt_max_session_expiry: int | None = Field(None, ge=0, description="Cap on a client's session expiry interval (s)")
    mqtt_anonymous_tenant: str | None = Field(
        None, description="Tenant for clients without credentials (off when empty)"
    )
    alink_timestamp_skew: int = Field(
        900, ge=0, description="Alink CONNECT: largest clock difference of a signed timestamp (s); 0 = not checked"
    )
    mqtt_retained_max: int = Field(100000, ge=0, description="Retained messages kept per tenant")
    # ingest pipeline
    ingest_queue_size: int = Field(1024, ge=1, description="Pending write batches before callers wait")
    ingest_batch_rows: int = Field(50000, ge=1, description="Rows per group-commit transaction (at most)")
    ingest_connections: int = Field(
        2, ge=1, le=32, description="PostgreSQL connections the ingest writer commits on at once (SQLite: always 1)"
    )
    telemetry_compact_interval: float = Field(
        3600.0,
        ge=0,
        description="PostgreSQL: seconds between merges of small telemetry chunks (0 = off)",
    )
    telemetry_compact_points: int = Field(
        32, ge=2, description="PostgreSQL: merge the chunks of a series that average fewer points than this"
    )
    # HTTP API
    http_max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body of the REST API")
    http_page_limit: int = Field(1000, ge=1, description="Largest page size of list endpoints")
    # request limits of the REST and IoTDA listeners (README.md "HTTP limits", docs/iotda.md)
    http_max_head_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request head (request line + headers) of the REST and IoTDA listeners; 431 beyond",
    )
    http_max_headers: int = Field(
        100, ge=8, le=10_000, description="Most header fields in one request (REST and IoTDA); 431 beyond"
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a REST/IoTDA connection may take to send a complete request head, "
        "from its accept or a later request's first byte; then it is closed",
    )
    sse_queue_size: int = Field(1000, ge=1, description="Events buffered per live-stream client")
    # G-SDK master gateway (gRPC) and certificates (docs/master-gateway.md)
    grpc_token_ttl: int = Field(86400, ge=60, description="Lifetime of a G-SDK login token (JWT), seconds")
    grpc_status_queue_size: int = Field(
        1000, ge=1, le=100_000, description="SubscribeStatus queue of a client that sends queueSize 0"
    )
    pki_blacklist_poll: float = Field(
        1.0, ge=0, description="Seconds between checks for blacklist changes made by the CLI or other nodes (0 = off)"
    )
    # IoTDA HTTPS device API (docs/iotda.md)
    iotda_token_ttl: int = Field(86399, ge=1, description="IoTDA access token lifetime, seconds (expires_in)")
    iotda_token_overlap: float = Field(30.0, ge=0, description="Seconds an IoTDA token stays valid once superseded")
    iotda_clock_skew_hours: int = Field(1, ge=0, le=24, description="sign_type 1: hours the timestamp may be off")
    iotda_rate_per_device: float = Field(100.0, ge=0, description="IoTDA requests/s per device (burst 2x); 0 = off")
    iotda_rate_per_tenant: float = Field(10000.0, ge=0, description="IoTDA requests/s per tenant (burst 2x); 0 = off")
    iotda_max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest IoTDA request body (IOTDA.021105)")
    iotda_max_children: int = Field(50, ge=1, description="Most children in one IoTDA gateway batch (IOTDA.021103)")
    iotda_cache_seconds: float = Field(60.0, ge=0, description="How long IoTDA caches tokens and thing models")
    # ThingsBoard gateway and device MQTT API, RPC and claiming (docs/thingsboard.md)
    tb_claim_duration_ms: int = Field(86_400_000, ge=1000, description="Claim window when a device sends no durationMs")
    tb_rate_per_device: float = Field(
        10_000.0,
        ge=0,
        description="Data points/s per device over the ThingsBoard API (burst: tb_rate_burst s); 0 = off",
    )
    tb_rate_per_tenant: float = Field(
        1_000_000.0, ge=0, description="Data points/s per tenant over the ThingsBoard API; 0 = off"
    )
    tb_rate_burst: float = Field(2.0, gt=0, description="Seconds of rate a token bucket holds (its burst)")
    subdevice_takeover: Literal["when_parent_offline", "allow"] = Field(
        "when_parent_offline",
        description="Whether a gateway may take over another gateway's sub-device (ThingsBoard connect or data, "
        "the topology/add extension, Alink topo/add): when_parent_offline = only while that gateway has no "
        "session; allow = always (ThingsBoard's behaviour). Every takeover is logged and published",
    )
    rpc_default_timeout_ms: int = Field(10_000, ge=100, le=600_000, description="RPC reply timeout when none is given")
    rpc_default_expiration_ms: int = Field(
        86_400_000,
        ge=1000,
        description="How long a persistent RPC waits for its device when no expirationTime is given",
    )
    rpc_persistent_retries: int = Field(
        2, ge=0, le=100, description="Times a delivered persistent RPC without a reply is sent again before TIMEOUT"
    )
    rpc_sweep_interval: float = Field(1.0, gt=0, description="Seconds between sweeps that expire persistent RPCs")
    # device links (docs/devicelink.md); devicelink_port_min -1 = off, 0 with max 0 = any free port
    devicelink_bind_host: str = Field("", description="Address device-link ports bind to (empty = bind_host)")
    devicelink_default_device_port: int | None = Field(
        None, ge=1, le=65535, description="Device port of a link whose request names none (none = required)"
    )
    devicelink_udp_timeout: int | None = Field(
        None, ge=0, description="ms without traffic after which a UDP link closes, when the request sets none"
    )
    devicelink_max_per_device: int = Field(4, ge=1, description="Open links per device at most")
    devicelink_max_per_tenant: int = Field(100, ge=1, description="Open links per tenant at most")
    devicelink_connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to reach the device (TCP connect, or a gateway's answer to OPEN)"
    )
    devicelink_tunnel_window: int = Field(
        1_048_576, ge=4096, le=64 * 1024 * 1024, description="Credit window per tunnel channel and direction (bytes)"
    )
    devicelink_stream_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="Port gateway agents open stream channels of via-gateway TCP links to "
        "(0 = any free port, told to agents in HELLO; -1 = off: all data framed over MQTT)",
    )
    devicelink_stream_tls_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="The same over TLS, for agents on the MQTT TLS listener (needs mqtts_port; "
        "0 = any free port; -1 = off: their links are framed over MQTT)",
    )
    # credential-failure guard (brute force; docs/design.md "Credential failures")
    guard_backoff_after: int = Field(
        5, ge=0, description="Credential failures of one source before its attempts are delayed"
    )
    guard_backoff_base: float = Field(
        0.1, ge=0, le=60, description="First back-off delay (s), doubled per further failure; 0 = no back-off"
    )
    guard_backoff_max: float = Field(5.0, ge=0, le=300, description="Longest back-off delay of one attempt (s)")
    guard_decay_half_life: float = Field(
        60.0, gt=0, description="Seconds in which a source's failure count halves (how back-off is forgiven)"
    )
    guard_lockout_after: int = Field(
        0, ge=0, description="Failures after which a source is refused unchecked for guard_lockout_minutes (0 = off)"
    )
    guard_lockout_minutes: float = Field(10.0, gt=0, le=10_080, description="Length of a lock-out (minutes)")
    guard_max_sources: int = Field(100_000, ge=16, description="Sources the guard tracks at most (LRU)")
    guard_ipv4_prefix: int = Field(32, ge=8, le=32, description="IPv4 prefix length that makes one source")
    guard_ipv6_prefix: int = Field(64, ge=16, le=128, description="IPv6 prefix length that makes one source")
    guard_exempt_networks: list[str] = Field(
        default_factory=list, description="Networks (CIDR) never backed off or locked out, e.g. a fleet's NAT"
    )
    guard_log_per_source: int = Field(
        5, ge=0, description="Refusals logged per source and interval; the rest are summed in one line"
    )
    guard_log_interval: float = Field(60.0, gt=0, description="Seconds of one refusal-log interval")
    # first start
    admin_key_file: str = Field("admin.key", description="System admin API key file, inside data_dir")
    log_level: str = Field("info", description="debug, info, warning, error")

    @field_validator(
        "http_port",
        "iotda_port",
        "mqtt_port",
        "mqtts_port",
        "mqtt_ws_port",
        "grpc_port",
        "devicelink_port_min",
        "devicelink_port_max",
    )
    @classmethod
    def _port(cls, v: int) -> int:
        if not -1 <= v <= 65535:
            raise ValueError("a port is 0-65535 (0 = any free port, -1 = off)")
        return v

    @model_validator(mode="after")
    def _link_ports(self) -> Settings:
        lo, hi = self.devicelink_port_min, self.devicelink_port_max
        if lo > 0 and not lo <= hi:
            raise ValueError("devicelink_port_min must not be above devicelink_port_max")
        if lo == 0 and hi != 0:
            raise ValueError("devicelink_port_min 0 (any free port) needs devicelink_port_max 0")
        return self

    @field_validator("guard_exempt_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network (CIDR): {exc}") from None
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level is one of debug, info, warning, error")
        return v

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gatehub.db').as_posix()}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / self.admin_key_file


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from a TOML file, the environment and explicit overrides.

    Raises ConfigError with every problem named, never a bare ValidationError.
    """
    file_values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        file_values = dict(raw.get("gatehub", raw))
    try:
        env_only = Settings()
        explicit_env = env_only.model_fields_set
        values = {**file_values}
        for name in explicit_env:
            values[name] = getattr(env_only, name)
        values.update(overrides or {})
        return Settings.model_validate(values) if values else env_only
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, environment variable, default, description) of every setting, for --help."""
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append((name, f"GATEHUB_{name.upper()}", repr(field.default), field.description or ""))
    return rows
