"""``gsdk.tenant.Tenant``: tenants, their gateways and tenant certificates (administrator only)."""

from __future__ import annotations

from gatehub.errors import PermissionDenied
from gatehub.services.registry import GatewayRegistry, TenantInfo
from gatehub.store.certificates import CertRecord
from gatehub.transports.grpc._generated import tenant_pb2
from gatehub.transports.grpc.dispatch import Call
from gatehub.transports.grpc.gateway_service import pki_name_from_proto, pki_name_to_proto, years_of

__all__ = ["TenantService"]


def _admin(call: Call) -> None:
    if not call.caller.admin:
        raise PermissionDenied("the Tenant service is for the administrator (LoginAdmin)")


def _cert_info(r: CertRecord) -> tenant_pb2.CertificateInfo:
    return tenant_pb2.CertificateInfo(
        tenantID=r.tenant_id or "",
        subject=pki_name_to_proto(r.subject),
        serialNO=r.serial,
        issueDate=r.not_before,
        expiryDate=r.not_after,
        blacklisted=r.blacklisted,
    )


class TenantService:
    def __init__(self, registry: GatewayRegistry) -> None:
        self.registry = registry

    async def GetList(self, req: tenant_pb2.GetListRequest, call: Call) -> tenant_pb2.GetListResponse:
        _admin(call)
        return tenant_pb2.GetListResponse(tenantIDs=await self.registry.tenant_ids())

    async def Get(self, req: tenant_pb2.GetRequest, call: Call) -> tenant_pb2.GetResponse:
        _admin(call)
        infos = await self.registry.tenants(list(req.tenantIDs))
        return tenant_pb2.GetResponse(
            tenantInfos=[tenant_pb2.TenantInfo(tenantID=i.tenant_id, gatewayIDs=i.gateway_ids) for i in infos]
        )

    async def Add(self, req: tenant_pb2.AddRequest, call: Call) -> tenant_pb2.AddResponse:
        _admin(call)
        await self.registry.add_tenants([TenantInfo(i.tenantID, list(i.gatewayIDs)) for i in req.tenantInfos])
        return tenant_pb2.AddResponse()

    async def Delete(self, req: tenant_pb2.DeleteRequest, call: Call) -> tenant_pb2.DeleteResponse:
        _admin(call)
        await self.registry.delete_tenants(list(req.tenantIDs))
        return tenant_pb2.DeleteResponse()

    async def AddGateway(self, req: tenant_pb2.AddGatewayRequest, call: Call) -> tenant_pb2.AddGatewayResponse:
        _admin(call)
        await self.registry.add_gateways(req.tenantID, list(req.gatewayIDs))
        return tenant_pb2.AddGatewayResponse()

    async def DeleteGateway(self, req: tenant_pb2.DeleteGatewayRequest, call: Call) -> tenant_pb2.DeleteGatewayResponse:
        _admin(call)
        await self.registry.require_tenant(req.tenantID)
        await self.registry.delete_gateways(req.tenantID, list(req.gatewayIDs))
        return tenant_pb2.DeleteGatewayResponse()

    async def CreateCertificate(
        self, req: tenant_pb2.CreateCertificateRequest, call: Call
    ) -> tenant_pb2.CreateCertificateResponse:
        _admin(call)
        issued = await self.registry.create_tenant_certificate(
            req.tenantID, pki_name_from_proto(req.subject), years_of(req.expireAfterYears)
        )
        return tenant_pb2.CreateCertificateResponse(tenantCert=issued.cert_pem, tenantKey=issued.key_pem)

    async def GetIssuanceHistory(
        self, req: tenant_pb2.GetIssuanceHistoryRequest, call: Call
    ) -> tenant_pb2.GetIssuanceHistoryResponse:
        _admin(call)
        records = await self.registry.tenant_certificates(list(req.tenantIDs))
        return tenant_pb2.GetIssuanceHistoryResponse(certInfos=[_cert_info(r) for r in records])

    async def GetCertificateBlacklist(
        self, req: tenant_pb2.GetCertificateBlacklistRequest, call: Call
    ) -> tenant_pb2.GetCertificateBlacklistResponse:
        _admin(call)
        records = await self.registry.tenant_certificates(list(req.tenantIDs), blacklisted_only=True)
        return tenant_pb2.GetCertificateBlacklistResponse(certInfos=[_cert_info(r) for r in records])

    async def AddCertificateBlacklist(
        self, req: tenant_pb2.AddCertificateBlacklistRequest, call: Call
    ) -> tenant_pb2.AddCertificateBlacklistResponse:
        _admin(call)
        await self.registry.set_tenant_blacklisted(req.tenantID, list(req.serialNOs), True)
        return tenant_pb2.AddCertificateBlacklistResponse()

    async def DeleteCertificateBlacklist(
        self, req: tenant_pb2.DeleteCertificateBlacklistRequest, call: Call
    ) -> tenant_pb2.DeleteCertificateBlacklistResponse:
        _admin(call)
        await self.registry.set_tenant_blacklisted(req.tenantID, list(req.serialNOs), False)
        return tenant_pb2.DeleteCertificateBlacklistResponse()
