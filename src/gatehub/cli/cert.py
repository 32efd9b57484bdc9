"""`gatehub cert`: the hub CA and its certificates, like the G-SDK master gateway's options.

==================  ===========  ==============================================================
command             master       does
==================  ===========  ==============================================================
``cert init``       ``-c``       create the CA (if absent) + server certificate + admin certificate
``cert server``     ``-cs``      server + admin certificate from the existing CA
``cert tenant``     ``-ct``      a tenant certificate (G-SDK ``Login``)
``cert gateway``    ``-cg``      a device-gateway certificate
``cert blacklist``               ``add`` / ``remove`` / ``list`` serial numbers
``cert history``                 the issuance history
``cert crl``                     print or write the current CRL
==================  ===========  ==============================================================

Certificates and keys are written as PEM files (``NAME.crt``, ``NAME.key`` with mode 0600, and
``ca.crt``) into ``--out`` (default: the current folder), ready for a gateway or G-SDK client.
The server certificate goes to the CA folder (``{data_dir}/pki/server.crt``), where the hub's
TLS listeners take it from. Every certificate is recorded in the issuance history of the
database named by the settings. A blacklist change made here is written to the database and
then announced to the hub running on the same data folder through its control socket
(``{data_dir}/hub.sock``, see :mod:`gatehub.transports.control`): the command returns after that hub
applied it (revoked sessions closed). A hub it cannot reach, or one on another machine, notices
the change within ``pki_blacklist_poll`` seconds (default 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gatehub.cli.common import ConfigOpt, JsonOpt, console, emit, err_console, opened_store, run, settings_from
from gatehub.errors import ConfigError, InvalidInput

if TYPE_CHECKING:  # the PKI (cryptography) and the store load inside the commands that use them
    from gatehub.config import Settings
    from gatehub.pki import CertificateAuthority, IssuedCertificate, PKIName
    from gatehub.services.registry import GatewayRegistry
    from gatehub.store import Store
    from gatehub.store.certificates import CertRecord

cert_app = typer.Typer(
    help="The hub CA: server, admin, tenant and gateway certificates; blacklist", no_args_is_help=True
)
blacklist_app = typer.Typer(help="Blacklisted certificates: refused at every TLS handshake", no_args_is_help=True)
cert_app.add_typer(blacklist_app, name="blacklist")

OutOpt = typer.Option(Path("."), "--out", "-o", help="Folder for the PEM files")
YearsOpt = typer.Option(1, "--years", "-y", help="Validity in years (1-25)")
CountryOpt = typer.Option("", "--country", help="Subject country, 2 letters (ISO 3166)")
ProvinceOpt = typer.Option("", "--province", help="Subject state or province")
CityOpt = typer.Option("", "--city", help="Subject city")
OrgOpt = typer.Option("", "--org", help="Subject organization")
UnitOpt = typer.Option("", "--unit", help="Subject organizational unit")
CnOpt = typer.Option("", "--cn", help="Subject common name (default: the tenant or gateway id)")


def _subject(country: str, province: str, city: str, org: str, unit: str, cn: str) -> PKIName:
    from gatehub.pki import PKIName

    return PKIName(country, province, city, org, unit, cn).validate()


def _write(out: Path, name: str, issued: IssuedCertificate, ca: CertificateAuthority) -> list[str]:
    from gatehub.pki.ca import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    crt, key, ca_file = out / f"{name}.crt", out / f"{name}.key", out / "ca.crt"
    write_atomic(crt, issued.cert_pem.encode("ascii"), 0o644)
    write_atomic(key, issued.key_pem.encode("ascii"), 0o600)
    write_atomic(ca_file, ca.cert_pem.encode("ascii"), 0o644)
    return [str(crt), str(key), str(ca_file)]


def _summary(issued: IssuedCertificate, files: list[str]) -> dict[str, Any]:
    return {
        "serialNO": issued.serial,
        "kind": issued.kind.value,
        "tenantId": issued.tenant_id,
        "gatewayId": issued.gateway_id,
        "subject": issued.subject.commonName,
        "issueDate": issued.not_before,
        "expiryDate": issued.not_after,
        "files": files,
    }


def _load_ca(settings: Settings) -> CertificateAuthority:
    """The hub CA, or an error that says how to make it."""
    from gatehub.pki import CertificateAuthority

    d = settings.pki_dir
    if not (d / "ca.key").exists() and not (d / "ca.crt").exists():
        raise ConfigError(
            f"there is no hub CA in {d} yet: run `gatehub cert init` first "
            "(it creates the CA, the hub's server certificate and an admin certificate)"
        )
    try:
        return CertificateAuthority.load(d)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message}; restore the CA files or see `gatehub cert init --help`") from None


def _registry(store: Store, ca: CertificateAuthority) -> GatewayRegistry:
    # imported here: the store (SQLAlchemy, Alembic) loads only for commands that open it, not
    # for every start of the CLI (``gatehub agent`` on a gateway among them)
    from gatehub.services.registry import GatewayRegistry

    return GatewayRegistry(store, ca)


async def _server_and_admin(
    settings: Settings, ca: CertificateAuthority, hosts: list[str], years: int, out: Path
) -> list[dict[str, Any]]:
    from gatehub.pki.ca import write_atomic
    from gatehub.pki.tls import SERVER_CERT_FILE, SERVER_KEY_FILE

    async with opened_store(settings) as (store, _):
        reg = _registry(store, ca)
        server = await reg.create_server_certificate(hosts or settings.tls_hosts, years)
        write_atomic(ca.directory / SERVER_KEY_FILE, server.key_pem.encode("ascii"), 0o600)
        write_atomic(ca.directory / SERVER_CERT_FILE, server.cert_pem.encode("ascii"), 0o644)
        admin = await reg.create_admin_certificate(None, years)
    return [
        _summary(server, [str(ca.directory / SERVER_CERT_FILE), str(ca.directory / SERVER_KEY_FILE)]),
        _summary(admin, _write(out, "admin", admin, ca)),
    ]


_COLUMNS = ["serialNO", "kind", "tenantId", "gatewayId", "expiryDate", "files"]


@cert_app.command("init")
def cert_init(
    host: list[str] = typer.Option([], "--host", help="Server host name or IP (repeatable; default tls_hosts)"),
    years: int = YearsOpt,
    out: Path = OutOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Create the CA (if there is none), a server certificate and an admin certificate (-c)."""
    settings = settings_from(config)

    async def go() -> Any:
        from gatehub.pki import CertificateAuthority

        existed = (settings.pki_dir / "ca.key").exists()
        ca = CertificateAuthority.load_or_create(settings.pki_dir)
        if not json:
            console.print(f"{'using the existing' if existed else 'created a new'} CA in {ca.directory}")
        return await _server_and_admin(settings, ca, host, years, out)

    emit(run(go), json, _COLUMNS, title="certificates")


@cert_app.command("server")
def cert_server(
    host: list[str] = typer.Option([], "--host", help="Server host name or IP (repeatable; default tls_hosts)"),
    years: int = YearsOpt,
    out: Path = OutOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """A new server certificate and admin certificate from the existing CA (-cs)."""
    settings = settings_from(config)

    async def go() -> Any:
        ca = _load_ca(settings)
        return await _server_and_admin(settings, ca, host, years, out)

    emit(run(go), json, _COLUMNS, title="certificates")


@cert_app.command("tenant")
def cert_tenant(
    tenant_id: str,
    years: int = YearsOpt,
    out: Path = OutOpt,
    country: str = CountryOpt,
    province: str = ProvinceOpt,
    city: str = CityOpt,
    org: str = OrgOpt,
    unit: str = UnitOpt,
    cn: str = CnOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """A tenant certificate for a G-SDK client (-ct): TENANT.crt, TENANT.key, ca.crt."""
    settings = settings_from(config)

    async def go() -> Any:
        subject = _subject(country, province, city, org, unit, cn)
        ca = _load_ca(settings)
        async with opened_store(settings) as (store, _):
            issued = await _registry(store, ca).create_tenant_certificate(tenant_id, subject, years)
        return _summary(issued, _write(out, tenant_id, issued, ca))

    emit(run(go), json, _COLUMNS)


@cert_app.command("gateway")
def cert_gateway(
    gateway_id: str,
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id the gateway belongs to"),
    years: int = YearsOpt,
    out: Path = OutOpt,
    country: str = CountryOpt,
    province: str = ProvinceOpt,
    city: str = CityOpt,
    org: str = OrgOpt,
    unit: str = UnitOpt,
    cn: str = CnOpt,
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """A device-gateway certificate (-cg): GATEWAY.crt, GATEWAY.key, ca.crt."""
    settings = settings_from(config)

    async def go() -> Any:
        subject = _subject(country, province, city, org, unit, cn)
        ca = _load_ca(settings)
        async with opened_store(settings) as (store, _):
            issued = await _registry(store, ca).create_gateway_certificate(tenant, gateway_id, subject, years)
        return _summary(issued, _write(out, gateway_id, issued, ca))

    emit(run(go), json, _COLUMNS)


def _row(r: CertRecord) -> dict[str, Any]:
    out = r.public()
    out["subject"] = r.subject.commonName
    return out


_HISTORY_COLUMNS = ["serialNO", "kind", "tenantId", "gatewayId", "subject", "issueDate", "expiryDate", "blacklisted"]


@cert_app.command("history")
def cert_history(
    tenant: str = typer.Option(None, "--tenant", "-t", help="Only this tenant"),
    gateway: str = typer.Option(None, "--gateway", "-g", help="Only this gateway"),
    kind: str = typer.Option(None, "--kind", help="server, gateway, tenant or admin"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """The issuance history."""
    settings = settings_from(config)

    async def go() -> Any:
        if kind is not None and kind not in {"server", "gateway", "tenant", "admin"}:
            raise InvalidInput("--kind is one of server, gateway, tenant, admin")
        async with opened_store(settings) as (store, _):
            recs = await store.certificates.history(tenant, [gateway] if gateway else None, kind=kind)
        return [_row(r) for r in recs]

    emit(run(go), json, _HISTORY_COLUMNS, title="issued certificates")


def _set_blacklist(serials: list[int], flag: bool, tenant: str | None, config: str | None) -> list[dict[str, Any]]:
    settings = settings_from(config)

    async def go() -> Any:
        ca = _load_ca(settings)
        async with opened_store(settings) as (store, _):
            recs = await _registry(store, ca).set_blacklisted(serials, flag, tenant_id=tenant)
        return [_row(r) for r in recs]

    result: list[dict[str, Any]] = run(go)
    from gatehub.transports.control import notify

    problem = notify(settings.data_dir, "blacklist")
    if problem is not None:
        err_console.print(
            f"[yellow]warning:[/yellow] {problem}; it applies the change within pki_blacklist_poll seconds"
        )
    return result


@blacklist_app.command("add")
def blacklist_add(
    serials: list[int] = typer.Argument(..., help="Serial numbers (decimal, as G-SDK serialNO)"),
    tenant: str = typer.Option(None, "--tenant", "-t", help="Refuse serials of other tenants"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Blacklist certificates: refused at every TLS handshake, live sessions closed."""
    emit(_set_blacklist(serials, True, tenant, config), json, _HISTORY_COLUMNS, title="blacklisted")


@blacklist_app.command("remove")
def blacklist_remove(
    serials: list[int] = typer.Argument(..., help="Serial numbers (decimal, as G-SDK serialNO)"),
    tenant: str = typer.Option(None, "--tenant", "-t", help="Refuse serials of other tenants"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """Take certificates off the blacklist: accepted again from the next handshake."""
    emit(_set_blacklist(serials, False, tenant, config), json, _HISTORY_COLUMNS, title="no longer blacklisted")


@blacklist_app.command("list")
def blacklist_list(
    tenant: str = typer.Option(None, "--tenant", "-t", help="Only this tenant"),
    gateway: str = typer.Option(None, "--gateway", "-g", help="Only this gateway"),
    config: str = ConfigOpt,
    json: bool = JsonOpt,
) -> None:
    """The blacklisted certificates."""
    settings = settings_from(config)

    async def go() -> Any:
        async with opened_store(settings) as (store, _):
            recs = await store.certificates.history(tenant, [gateway] if gateway else None, blacklisted_only=True)
        return [_row(r) for r in recs]

    emit(run(go), json, _HISTORY_COLUMNS, title="blacklist")


@cert_app.command("crl")
def cert_crl(
    out: Path = typer.Option(None, "--out", "-o", help="Write the CRL to this file instead of printing it"),
    der: bool = typer.Option(False, "--der", help="DER instead of PEM"),
    config: str = ConfigOpt,
) -> None:
    """The CRL for the current blacklist, signed by the hub CA (a running hub serves it too)."""
    settings = settings_from(config)
    from gatehub.pki import build_crl
    from gatehub.pki.ca import write_atomic

    async def go() -> Any:
        ca = _load_ca(settings)
        async with opened_store(settings) as (store, _):
            return build_crl(ca, (await store.certificates.blacklist()).items())

    crl = run(go)
    if out is not None:
        write_atomic(out, crl.der if der else crl.pem.encode("ascii"), 0o644)
        console.print(f"wrote {out} ({len(crl.serials)} serials)")
    elif der:
        raise typer.BadParameter("--der needs --out")
    else:
        typer.echo(crl.pem, nl=False)
