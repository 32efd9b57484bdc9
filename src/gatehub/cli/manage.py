"""Management commands: tenant, customer, apikey, product, gateway, device.

They work on the database named by the settings (the same one `gatehub serve` uses), so an
operator on the hub's machine can manage it with or without the server running.
"""

from __future__ import annotations

from typing import Any

import orjson
import typer

from gatehub.cli.common import ConfigOpt, JsonOpt, TenantOpt, emit, opened_store, run, settings_from
from gatehub.domain.model import DeviceKind, NodeType, Presence
from gatehub.domain.permissions import Role
from gatehub.errors import InvalidInput

tenant_app = typer.Typer(help="Tenants: the isolated spaces of a hub", no_args_is_help=True)
customer_app = typer.Typer(help="Customers: owners of devices inside a tenant", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the REST API", no_args_is_help=True)
product_app = typer.Typer(help="Products: kinds of devices with credentials and a thing model", no_args_is_help=True)
gateway_app = typer.Typer(help="Gateways and their sub-devices", no_args_is_help=True)
device_app = typer.Typer(help="Devices: create, list, rename, move, delete", no_args_is_help=True)


def _t(t: Any) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "createdAt": t.created_at}


@tenant_app.command("create")
def tenant_create(
    tenant_id: str,
    name: str = typer.Option(None, help="Display name"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return _t(await st.accounts.create_tenant(tenant_id, name))

    emit(run(go), json)


@tenant_app.command("list")
def tenant_list(config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            items, _total = await st.accounts.list_tenants(0, 100_000)
            return [_t(t) for t in items]

    emit(run(go), json, title="tenants")


@tenant_app.command("delete")
def tenant_delete(
    tenant_id: str, config: str = ConfigOpt, yes: bool = typer.Option(False, "--yes", help="Do not ask")
) -> None:
    if not yes:
        typer.confirm(f"Delete tenant {tenant_id} and everything in it?", abort=True)

    async def go() -> None:
        async with opened_store(settings_from(config)) as (st, _):
            await st.accounts.delete_tenant(tenant_id)

    run(go)
    typer.echo(f"deleted tenant {tenant_id}")


@customer_app.command("create")
def customer_create(
    customer_id: str,
    tenant: str = TenantOpt,
    name: str = typer.Option(None),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            c = await st.accounts.create_customer(tenant, customer_id, name)
            return {"id": c.id, "tenantId": c.tenant_id, "name": c.name}

    emit(run(go), json)


@customer_app.command("list")
def customer_list(tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return [
                {"id": c.id, "tenantId": c.tenant_id, "name": c.name} for c in await st.accounts.list_customers(tenant)
            ]

    emit(run(go), json)


@apikey_app.command("create")
def apikey_create(
    name: str,
    role: Role = typer.Option(Role.VIEWER, help="system-admin, tenant-admin, operator, viewer or custom"),
    tenant: str = typer.Option(None, "--tenant", "-t", help="Tenant (not for system-admin keys)"),
    customer: str = typer.Option(None, help="Limit the key to one customer's devices"),
    permissions: str = typer.Option(None, help='Extra rights as JSON, e.g. \'{"device": ["read"]}\''),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    perms = None
    if permissions:
        try:
            perms = orjson.loads(permissions)
        except orjson.JSONDecodeError:
            raise typer.BadParameter("--permissions must be JSON") from None

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            info, token = await st.accounts.create_api_key(name, role, tenant, customer, perms)
            return {**info, "key": token}

    out = run(go)
    emit(out, json, ["id", "name", "role", "tenantId"], secrets=["key"])
    if not json:
        typer.echo("The key is shown once; store it now.", err=True)


@apikey_app.command("list")
def apikey_list(
    tenant: str = typer.Option(None, "--tenant", "-t"), config: str = ConfigOpt, json: bool = JsonOpt
) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return await st.accounts.list_api_keys(tenant)

    emit(run(go), json, ["id", "name", "role", "tenantId", "customerId"])


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, config: str = ConfigOpt) -> None:
    async def go() -> None:
        async with opened_store(settings_from(config)) as (st, _):
            await st.accounts.delete_api_key(key_id)

    run(go)
    typer.echo(f"revoked API key {key_id}")


def _p(p: Any, secret: bool = False) -> dict[str, Any]:
    out = {
        "id": p.id,
        "tenantId": p.tenant_id,
        "name": p.name,
        "nodeType": p.node_type.value,
        "trustedGatewayAdd": p.trusted_gateway_add,
        "dynamicRegister": p.dynamic_register,
    }
    if secret:
        out["secret"] = p.secret
    return out


@product_app.command("create")
def product_create(
    product_id: str,
    tenant: str = TenantOpt,
    name: str = typer.Option(None),
    node_type: NodeType = typer.Option(NodeType.DIRECT, "--node-type", help="direct, gateway or sub-device"),
    thing_model: typer.FileText = typer.Option(None, "--thing-model", help="Thing model JSON file"),
    trusted_gateway_add: bool = typer.Option(False, help="Gateways may add its devices by name alone"),
    dynamic_register: bool = typer.Option(False, help="Allow dynamic registration of pre-registered names"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    model = None
    if thing_model is not None:
        try:
            model = orjson.loads(thing_model.read())
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"thing model is not JSON: {exc}") from None

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return _p(
                await st.catalog.create_product(
                    tenant, product_id, name, node_type, model, trusted_gateway_add, dynamic_register
                ),
                True,
            )

    emit(run(go), json, secrets=["secret"])


@product_app.command("list")
def product_list(tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            items, _ = await st.catalog.list_products(tenant, 0, 100_000)
            return [_p(p) for p in items]

    emit(run(go), json, title="products")


@product_app.command("delete")
def product_delete(product_id: str, tenant: str = TenantOpt, config: str = ConfigOpt) -> None:
    async def go() -> None:
        async with opened_store(settings_from(config)) as (st, _):
            await st.catalog.delete_product(tenant, product_id)

    run(go)
    typer.echo(f"deleted product {product_id}")


SecretOpt = typer.Option(
    None, "--secret", help="Device secret for IoTDA and Alink sign-in, 8-128 characters (default: random)"
)
DEV_COLS = ["id", "number", "name", "kind", "productId", "parentId", "presence"]


def _create_device(
    tenant: str,
    name: str,
    product: str,
    device_id: str | None,
    parent: str | None,
    token: str | None,
    secret: str | None,
    config: str | None,
    json: bool,
    want_gateway: bool,
) -> None:
    if secret is not None and not 8 <= len(secret) <= 128:
        raise typer.BadParameter("--secret must be 8-128 characters")

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            if want_gateway and (await st.catalog.get_product(tenant, product)).node_type is not NodeType.GATEWAY:
                raise InvalidInput(f"product {product} is not a gateway product")
            d = await st.devices.create(
                tenant, name, product, device_id=device_id, parent_id=parent, access_token=token, secret=secret
            )
            return {**d.public(), "accessToken": d.access_token, "secret": d.secret}

    emit(run(go), json, DEV_COLS, secrets=["accessToken", "secret"])
    if not json and secret is None:
        typer.echo("The generated secret is shown once (gatehub device secret-reset makes a new one).", err=True)


@device_app.command("create")
def device_create(
    name: str,
    tenant: str = TenantOpt,
    product: str = typer.Option(..., "--product", "-p"),
    device_id: str = typer.Option(None, "--id", help="Immutable id (default: {product}_{name})"),
    parent: str = typer.Option(None, "--gateway", "-g", help="Gateway of a sub-device"),
    token: str = typer.Option(None, "--token", help="Access token (default: random)"),
    secret: str = SecretOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Create a device; its access token and secret are printed (the generated secret only now)."""
    _create_device(tenant, name, product, device_id, parent, token, secret, config, json, False)


@gateway_app.command("create")
def gateway_create(
    name: str,
    tenant: str = TenantOpt,
    product: str = typer.Option(..., "--product", "-p"),
    device_id: str = typer.Option(None, "--id"),
    token: str = typer.Option(None, "--token", help="Access token (default: random)"),
    secret: str = SecretOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Create a gateway; its access token and secret are printed (the generated secret only now)."""
    _create_device(tenant, name, product, device_id, None, token, secret, config, json, True)


@device_app.command("list")
def device_list(
    tenant: str = TenantOpt,
    kind: DeviceKind = typer.Option(None),
    product: str = typer.Option(None, "--product", "-p"),
    gateway: str = typer.Option(None, "--gateway", "-g"),
    presence: Presence = typer.Option(None),
    name_prefix: str = typer.Option(None, "--name-prefix"),
    offset: int = typer.Option(0, min=0),
    limit: int = typer.Option(100, min=1),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    async def go() -> Any:
        from gatehub.store import DeviceFilter

        async with opened_store(settings_from(config)) as (st, _):
            items, _ = await st.devices.list_devices(
                tenant,
                DeviceFilter(
                    kind=kind,
                    product_id=product,
                    parent_id=gateway,
                    presence=presence,
                    name_prefix=name_prefix,
                ),
                offset,
                limit,
            )
            return [d.public() for d in items]

    emit(run(go), json, DEV_COLS, title="devices")


@gateway_app.command("list")
def gateway_list(tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        from gatehub.store import DeviceFilter

        async with opened_store(settings_from(config)) as (st, _):
            items, _ = await st.devices.list_devices(tenant, DeviceFilter(kind=DeviceKind.GATEWAY), 0, 100_000)
            return [d.public() for d in items]

    emit(run(go), json, DEV_COLS, title="gateways")


@gateway_app.command("devices")
def gateway_devices(gateway_id: str, tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            gw = await st.devices.get(tenant, gateway_id)
            return [d.public() for d in await st.devices.children(gw.id)]

    emit(run(go), json, DEV_COLS, title=f"sub-devices of {gateway_id}")


@device_app.command("get")
def device_get(device_id: str, tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            d = await st.devices.get(tenant, device_id)
            return {**d.public(), "accessToken": d.access_token}

    emit(run(go), json)


@device_app.command("rename")
def device_rename(
    device_id: str, name: str, tenant: str = TenantOpt, config: str = ConfigOpt, json: bool = JsonOpt
) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return (await st.devices.rename(tenant, device_id, name)).public()

    emit(run(go), json, DEV_COLS)


@device_app.command("move")
def device_move(
    device_id: str,
    gateway: str = typer.Option(None, "--gateway", "-g", help="New gateway; omit to detach"),
    tenant: str = TenantOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            return (await st.devices.set_parent(tenant, device_id, gateway)).public()

    emit(run(go), json, DEV_COLS)


@device_app.command("delete")
def device_delete(device_id: str, tenant: str = TenantOpt, config: str = ConfigOpt) -> None:
    async def go() -> None:
        async with opened_store(settings_from(config)) as (st, _):
            await st.devices.delete(tenant, device_id)

    run(go)
    typer.echo(f"deleted device {device_id}")


@device_app.command("secret-tool")
def device_secret_tool(
    secret: str = typer.Argument(..., help="The device secret"),
    timestamp: str = typer.Option(None, "--timestamp", help="YYYYMMDDHH in UTC (default: the current hour)"),
    json: bool = JsonOpt,
) -> None:
    """IoTDA password of a device secret: HMAC-SHA256 keyed by the timestamp (seed 003's tool)."""
    from gatehub.domain.telemetry import now_ms
    from gatehub.protocols import iotda

    ts = timestamp or iotda.timestamp_for(now_ms())
    try:
        iotda.parse_timestamp(ts)
    except iotda.IotdaError:
        raise typer.BadParameter("--timestamp must be YYYYMMDDHH (UTC), e.g. 2019120219") from None
    emit({"timestamp": ts, "password": iotda.password(secret, ts)}, json, secrets=["password"])


@device_app.command("secret-reset")
def device_secret_reset(
    device_id: str,
    tenant: str = TenantOpt,
    secret: str = typer.Option(None, "--secret", help="The new secret (default: random)"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Give a device a new secret (shown once): dynamic registration may deliver it again, and its
    IoTDA access tokens end."""
    if secret is not None and not 8 <= len(secret) <= 128:
        raise typer.BadParameter("--secret must be 8-128 characters")

    async def go() -> Any:
        async with opened_store(settings_from(config)) as (st, _):
            dev, revoked = await st.provisioning.reset_secret(tenant, device_id, secret)
            return {"id": device_id, "secret": dev.secret, "secretDelivered": False, "tokensRevoked": revoked}

    emit(run(go), json, secrets=["secret"])
