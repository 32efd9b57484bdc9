"""API keys, roles and per-resource permissions.

A principal is what an authenticated caller is: a system administrator (no tenant, every
right), or a member of one tenant (optionally narrowed to one customer) with a set of
(resource, action) rights. Checks are a small chain: the first rule that answers decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gatehub.errors import InvalidInput, NotFound, PermissionDenied


class Action(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


class Resource(StrEnum):
    TENANT = "tenant"
    APIKEY = "apikey"
    CUSTOMER = "customer"
    GATEWAY = "gateway"
    DEVICE = "device"
    PRODUCT = "product"
    CERTIFICATE = "certificate"
    DEVICE_LINK = "deviceLink"
    RPC = "rpc"
    TELEMETRY = "telemetry"
    ATTRIBUTE = "attribute"
    EVENT = "event"


class Role(StrEnum):
    SYSTEM_ADMIN = "system-admin"  # every tenant, every action
    TENANT_ADMIN = "tenant-admin"  # every action inside its tenant
    OPERATOR = "operator"  # read everything, create/update/delete devices, rpc, telemetry, links
    VIEWER = "viewer"  # read only
    CUSTOM = "custom"  # exactly the listed permissions


ALL = frozenset((r, a) for r in Resource for a in Action)
READ_ALL = frozenset((r, Action.READ) for r in Resource)
OPERATOR_WRITES = frozenset(
    (r, a)
    for r in (
        Resource.DEVICE,
        Resource.GATEWAY,
        Resource.RPC,
        Resource.TELEMETRY,
        Resource.ATTRIBUTE,
        Resource.DEVICE_LINK,
    )
    for a in Action
)
ROLE_RIGHTS: dict[Role, frozenset[tuple[Resource, Action]]] = {
    Role.SYSTEM_ADMIN: ALL,
    Role.TENANT_ADMIN: ALL - {(Resource.TENANT, Action.CREATE), (Resource.TENANT, Action.DELETE)},
    Role.OPERATOR: READ_ALL | OPERATOR_WRITES,
    Role.VIEWER: READ_ALL,
    Role.CUSTOM: frozenset(),
}


def parse_permissions(spec: dict[str, list[str]] | None) -> frozenset[tuple[Resource, Action]]:
    """{"device": ["read", "update"], ...} -> rights; unknown names are refused, not ignored."""
    out: set[tuple[Resource, Action]] = set()
    for res, actions in (spec or {}).items():
        try:
            r = Resource(res)
        except ValueError:
            raise InvalidInput(f"unknown resource {res!r}; known: {', '.join(x.value for x in Resource)}") from None
        if not isinstance(actions, list):
            raise InvalidInput(f"permissions of {res!r} must be a list of actions")
        for act in actions:
            try:
                out.add((r, Action(act)))
            except ValueError:
                raise InvalidInput(f"unknown action {act!r}; known: create, read, update, delete") from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role
    tenant_id: str | None  # None only for system administrators
    customer_id: str | None = None
    rights: frozenset[tuple[Resource, Action]] = field(default_factory=frozenset)

    @property
    def is_system(self) -> bool:
        return self.role is Role.SYSTEM_ADMIN

    def can(self, resource: Resource, action: Action) -> bool:
        return (resource, action) in ROLE_RIGHTS[self.role] or (resource, action) in self.rights

    def require(self, resource: Resource, action: Action) -> None:
        if not self.can(resource, action):
            raise PermissionDenied(f"this API key may not {action.value} {resource.value}")

    def require_tenant(self, tenant_id: str) -> None:
        """The caller may act inside ``tenant_id`` at all."""
        if self.is_system:
            return
        if self.tenant_id != tenant_id:
            raise NotFound(f"tenant {tenant_id} not found")

    def scope_tenant(self, requested: str | None) -> str:
        """The tenant a tenant-scoped request acts in: the key's own, or for admins the one asked.
        Any other tenant is not found for a tenant key (the same answer whether it exists or not)."""
        if self.is_system:
            if not requested:
                raise InvalidInput("a system administrator must name the tenant (tenantId)")
            return requested
        assert self.tenant_id is not None
        if requested and requested != self.tenant_id:
            raise NotFound(f"tenant {requested} not found")
        return self.tenant_id
