"""The core entities and their rules: tenants, customers, products, devices, presence.

Pure data and validation; nothing here does I/O. The store persists these, the transports
translate wire formats into calls that take and return them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gatehub.errors import InvalidInput

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
NAME_MAX = 255
UINT32_MAX = 0xFFFFFFFF


def check_id(value: str, what: str = "id") -> str:
    """An immutable identifier: 1-128 of A-Za-z0-9_- (tenants, products, devices)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} must be 1-128 characters of letters, digits, '_' and '-': {value!r}")
    return value


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
        raise InvalidInput(f"{what} must be a non-empty string of at most {NAME_MAX} characters")
    if any(ord(c) < 0x20 for c in value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value


def new_token(nbytes: int = 24) -> str:
    """A random URL-safe credential (access tokens, secrets)."""
    return secrets.token_urlsafe(nbytes)


def new_secret() -> str:
    """A device or product secret: 32 hex characters, like the Alink DeviceSecret."""
    return secrets.token_hex(16)


class DeviceKind(StrEnum):
    GATEWAY = "gateway"
    SUBDEVICE = "sub-device"
    DIRECT = "direct"


class NodeType(StrEnum):
    """What devices of a product are: the product's node type."""

    DIRECT = "direct"
    GATEWAY = "gateway"
    SUBDEVICE = "sub-device"


NODE_TO_KIND = {
    NodeType.DIRECT: DeviceKind.DIRECT,
    NodeType.GATEWAY: DeviceKind.GATEWAY,
    NodeType.SUBDEVICE: DeviceKind.SUBDEVICE,
}


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    GATEWAY_OFFLINE = "offline-gateway"  # offline because the serving gateway is offline


class AttributeScope(StrEnum):
    CLIENT = "client"
    SHARED = "shared"
    SERVER = "server"


@dataclass(slots=True)
class Tenant:
    id: str
    name: str
    created_at: int


@dataclass(slots=True)
class Customer:
    id: str
    tenant_id: str
    name: str
    created_at: int


@dataclass(slots=True)
class Product:
    id: str  # the product key
    tenant_id: str
    name: str
    node_type: NodeType
    secret: str
    thing_model: dict[str, Any] = field(default_factory=dict)
    trusted_gateway_add: bool = False
    dynamic_register: bool = False
    created_at: int = 0


@dataclass(slots=True)
class Device:
    id: str
    number: int
    tenant_id: str
    name: str
    product_id: str
    kind: DeviceKind
    parent_id: str | None
    access_token: str | None
    secret: str | None
    secret_delivered: bool
    customer_id: str | None
    topology_version: int
    presence: Presence
    last_seen: int | None
    last_address: str | None
    created_at: int

    def public(self) -> dict[str, Any]:
        """The device as the API shows it (no secret; the token only to those who may read it)."""
        return {
            "id": self.id,
            "number": self.number,
            "tenantId": self.tenant_id,
            "name": self.name,
            "productId": self.product_id,
            "kind": self.kind.value,
            "parentId": self.parent_id,
            "customerId": self.customer_id,
            "topologyVersion": self.topology_version,
            "presence": self.presence.value,
            "lastSeen": self.last_seen,
            "lastAddress": self.last_address,
            "createdAt": self.created_at,
        }


def check_parent(child_kind: DeviceKind, parent: Device | None, tenant_id: str) -> None:
    """Topology rules: only sub-devices have a parent, the parent is a gateway of the same tenant."""
    if parent is None:
        return
    if child_kind is not DeviceKind.SUBDEVICE:
        raise InvalidInput(f"only sub-devices have a gateway; this device is a {child_kind.value}")
    if parent.kind is not DeviceKind.GATEWAY:
        raise InvalidInput(f"device {parent.id} is not a gateway")
    if parent.tenant_id != tenant_id:
        raise InvalidInput(f"gateway {parent.id} belongs to another tenant")
