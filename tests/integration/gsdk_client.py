"""A G-SDK client generated from proto/gsdk/*.proto the way a G-SDK user generates it, and a
running master gateway (node with the gRPC listener on 127.0.0.1:<free port>) to point it at.

The client code is produced by ``grpc_tools.protoc`` into a temporary folder (top-level
modules ``gateway_pb2``, ``gateway_pb2_grpc``, ...), independently of the checked-in
``gatehub.transports.grpc._generated``, so the tests exercise the wire contract of the protos.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import grpc

from gatehub.app.node import Node
from gatehub.pki import IssuedCertificate, PKIName
from gatehub.services.registry import GatewayRegistry
from tests.conftest import node_settings

ROOT = Path(__file__).resolve().parents[2]
_generated: SimpleNamespace | None = None

CALL_TIMEOUT = 10.0


def gsdk() -> SimpleNamespace:
    """The generated client modules: ``.gateway_pb2``, ``.gateway_pb2_grpc``, ``.login_pb2``, ..."""
    global _generated
    if _generated is not None:
        return _generated
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="gsdk-client-"))
    protos = sorted((ROOT / "proto" / "gsdk").glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'proto' / 'gsdk'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    sys.path.insert(0, str(out))
    mods: dict[str, ModuleType] = {}
    for p in protos:
        for suffix in ("_pb2", "_pb2_grpc"):
            name = p.stem + suffix
            mods[name] = importlib.import_module(name)
    _generated = SimpleNamespace(**mods)
    return _generated


class Master:
    """A running master gateway and helpers to talk to it as G-SDK clients do."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.g = gsdk()

    @property
    def registry(self) -> GatewayRegistry:
        reg = self.node.services.registry  # type: ignore[union-attr]
        assert isinstance(reg, GatewayRegistry)
        return reg

    @property
    def port(self) -> int:
        return self.node.endpoints.extra["grpc"]

    @property
    def ca_pem(self) -> str:
        assert self.node.pki is not None
        return self.node.pki.ca.cert_pem

    async def tenant(self, tenant_id: str) -> IssuedCertificate:
        """Create a tenant and issue a tenant certificate for it."""
        await self.node.store.accounts.create_tenant(tenant_id)  # type: ignore[union-attr]
        return await self.registry.create_tenant_certificate(tenant_id, PKIName(country="KR", organization="t"), 1)

    async def admin(self) -> IssuedCertificate:
        return await self.registry.create_admin_certificate(None, 1)

    def channel(self, cert: IssuedCertificate | None, *, own_connection: bool = True, **opts: Any) -> Any:
        creds = grpc.ssl_channel_credentials(
            self.ca_pem.encode(),
            cert.key_pem.encode() if cert else None,
            cert.cert_pem.encode() if cert else None,
        )
        options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
        options += list(opts.items())
        return grpc.aio.secure_channel(f"127.0.0.1:{self.port}", creds, options=options)

    async def login(self, channel: Any, cert: IssuedCertificate) -> tuple[tuple[str, str], ...]:
        """Login (tenant) or LoginAdmin (admin cert) and return the call metadata with the token."""
        stub = self.g.login_pb2_grpc.LoginStub(channel)
        if cert.tenant_id == "administrator":
            r = await stub.LoginAdmin(
                self.g.login_pb2.LoginAdminRequest(adminTenantCert=cert.cert_pem), timeout=CALL_TIMEOUT
            )
        else:
            r = await stub.Login(self.g.login_pb2.LoginRequest(tenantCert=cert.cert_pem), timeout=CALL_TIMEOUT)
        return (("token", r.jwtToken),)

    def gateway(self, channel: Any) -> Any:
        return self.g.gateway_pb2_grpc.GatewayStub(channel)

    def tenants(self, channel: Any) -> Any:
        return self.g.tenant_pb2_grpc.TenantStub(channel)


@asynccontextmanager
async def running_master(tmp_path: Path, db_url: str, **over: Any) -> AsyncIterator[Master]:
    settings = node_settings(tmp_path, db_url, grpc_port=0, **over)
    async with Node(settings) as node:
        yield Master(node)
