"""The agent's settings (``agent.toml``; every field and an example in docs/agent.md).

Validated with pydantic; relative paths are taken from the folder of the config file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gatehub.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    access_token: str | None = Field(None, description="the gateway's access token (MQTT user name)")
    cert: Path | None = Field(None, description="gateway certificate issued by the hub CA (mTLS port)")
    key: Path | None = Field(None, description="its private key")
    ca: Path | None = Field(None, description="the hub CA certificate, to verify the hub")
    tls: bool = Field(False, description="TLS without a client certificate (the hub CA in 'ca')")
    client_id: str = Field("", description="MQTT client id (default: gatehub-agent-<token or cert name>)")
    keepalive: int = Field(30, ge=5, le=3600)
    reconnect_min: float = Field(0.5, gt=0)
    reconnect_max: float = Field(30.0, gt=0)
    request_timeout: float = Field(10.0, gt=0, description="seconds to wait for an extension answer")

    @model_validator(mode="after")
    def _credentials(self) -> HubConfig:
        if not self.access_token and not self.cert:
            raise ValueError("hub needs access_token or cert (with key)")
        if self.cert and not self.key:
            raise ValueError("hub.cert needs hub.key")
        return self


class StateConfig(_Strict):
    path: Path = Field(Path("agent-state.db"), description="SQLite file of the lists and the outbox")


class OutboxConfig(_Strict):
    batch_readings: int = Field(1000, ge=1, le=100_000, description="readings per batch at most")
    flush_interval: float = Field(0.2, gt=0, description="seconds a reading may wait in memory")
    window: int = Field(16, ge=1, le=1000, description="batches sent and not yet acknowledged")
    replay_rate: float = Field(100_000.0, ge=0, description="readings/s at most while sending (0 = no limit)")
    progress_interval: float = Field(5.0, gt=0, description="seconds between progress lines of a replay")


class ModelCredentials(_Strict):
    product_key: str = Field(description="the hub product of sub-devices of this model")
    product_secret: str = Field("", description="that product's secret (signs dynamic registration)")
    dynamic_register: bool = Field(False, description="obtain each device secret by dynamic registration")


class DeviceCredentials(_Strict):
    uid: str = Field(description="the sub-device's unique id on the access network")
    name: str | None = Field(None, description="its device name on the hub (default: the uid)")
    product_key: str | None = None
    device_secret: str | None = None


class CredentialsConfig(_Strict):
    models: dict[str, ModelCredentials] = Field(default_factory=dict)
    devices: list[DeviceCredentials] = Field(default_factory=list)


class DriverConfig(BaseModel):
    """One access network: ``type`` picks the driver, the other keys are the driver's own."""

    model_config = ConfigDict(extra="allow")
    type: Literal["simulator", "modbus"] | str
    poll_interval: float = Field(1.0, gt=0, description="seconds between reads of each online sub-device")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DeviceLinkConfig(_Strict):
    """Device links through this gateway (docs/devicelink.md): the hub asks the agent to open
    TCP/UDP connections to its sub-devices and relays a remote client's traffic over them."""

    enabled: bool = Field(True, description="relay device links to this gateway's sub-devices")
    allow_hub_addresses: bool = Field(
        False,
        description="connect to an address the hub names (its operator-set deviceLinkAddress); "
        "off: only to the address the driver found the sub-device at",
    )
    max_channels: int = Field(256, ge=1, le=65535, description="links open through this gateway at once")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to connect to a sub-device")
    streams: bool = Field(
        True,
        description="carry TCP links' data on connections of their own to the hub's stream port "
        "(TLS when the MQTT connection is; off, or when that port is not reachable: framed over MQTT)",
    )


class AgentConfig(_Strict):
    hub: HubConfig
    state: StateConfig = Field(default_factory=StateConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)
    drivers: list[DriverConfig] = Field(default_factory=list)
    devicelink: DeviceLinkConfig = Field(default_factory=DeviceLinkConfig)
    log_level: str = "info"

    def resolve_paths(self, base: Path) -> AgentConfig:
        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        self.state.path = fix(self.state.path) or self.state.path
        self.hub.cert, self.hub.key, self.hub.ca = fix(self.hub.cert), fix(self.hub.key), fix(self.hub.ca)
        return self


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and check an agent.toml; every problem named in one ConfigError."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"agent config {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"agent config {p} is not valid TOML: {exc}") from None
    return agent_config(raw, p.parent)


def agent_config(raw: dict[str, Any], base: Path | None = None) -> AgentConfig:
    try:
        cfg = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid agent config: {problems}") from None
    return cfg.resolve_paths(base) if base is not None else cfg
