"""``gsdk.gateway.Gateway``: a tenant's device gateways, their certificates, their status.

Every method acts in the tenant of the caller's token (``Login`` with a tenant certificate, or
``LoginAdmin`` naming a tenant). The rules are those of :class:`gatehub.services.registry.GatewayRegistry`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc

from gatehub.errors import Conflict, InvalidInput
from gatehub.pki import ADMIN_TENANT_ID, PKIName
from gatehub.services.registry import GatewayRegistry
from gatehub.store.certificates import CertRecord
from gatehub.transports.grpc._generated import cert_pb2, gateway_pb2
from gatehub.transports.grpc.dispatch import Call
from gatehub.transports.grpc.status import StatusHub, StreamEnd

__all__ = ["GatewayService", "pki_name_from_proto", "pki_name_to_proto"]

MAX_QUEUE = 100_000


def pki_name_from_proto(msg: cert_pb2.PKIName) -> PKIName:
    return PKIName(
        country=msg.country,
        province=msg.province,
        city=msg.city,
        organization=msg.organization,
        organizationUnit=msg.organizationUnit,
        commonName=msg.commonName,
    ).validate()


def pki_name_to_proto(name: PKIName) -> cert_pb2.PKIName:
    return cert_pb2.PKIName(**dataclasses.asdict(name))


def _cert_info(r: CertRecord) -> gateway_pb2.CertificateInfo:
    return gateway_pb2.CertificateInfo(
        gatewayID=r.gateway_id or "",
        subject=pki_name_to_proto(r.subject),
        serialNO=r.serial,
        issueDate=r.not_before,
        expiryDate=r.not_after,
        blacklisted=r.blacklisted,
    )


def tenant_of(call: Call) -> str:
    tenant = call.caller.tenant_id
    if tenant == ADMIN_TENANT_ID:
        raise Conflict("an administrator manages a tenant's gateways after LoginAdmin with that tenantID")
    return tenant


def years_of(value: int) -> int:
    if value <= 0:
        raise InvalidInput(f"expireAfterYears must be at least 1, got {value}")
    return value


class GatewayService:
    def __init__(self, registry: GatewayRegistry, status: StatusHub, default_queue: int) -> None:
        self.registry = registry
        self.status = status
        self.default_queue = default_queue

    async def GetList(self, req: gateway_pb2.GetListRequest, call: Call) -> gateway_pb2.GetListResponse:
        return gateway_pb2.GetListResponse(gatewayIDs=await self.registry.gateway_ids(tenant_of(call)))

    async def Get(self, req: gateway_pb2.GetRequest, call: Call) -> gateway_pb2.GetResponse:
        infos = await self.registry.gateways(tenant_of(call), list(req.gatewayIDs))
        return gateway_pb2.GetResponse(
            gatewayInfos=[
                gateway_pb2.GatewayInfo(gatewayID=i.gateway_id, deviceIDs=i.device_numbers, isConnected=i.connected)
                for i in infos
            ]
        )

    async def Add(self, req: gateway_pb2.AddRequest, call: Call) -> gateway_pb2.AddResponse:
        await self.registry.add_gateways(tenant_of(call), list(req.gatewayIDs))
        return gateway_pb2.AddResponse()

    async def Delete(self, req: gateway_pb2.DeleteRequest, call: Call) -> gateway_pb2.DeleteResponse:
        await self.registry.delete_gateways(tenant_of(call), list(req.gatewayIDs))
        return gateway_pb2.DeleteResponse()

    async def CreateCertificate(
        self, req: gateway_pb2.CreateCertificateRequest, call: Call
    ) -> gateway_pb2.CreateCertificateResponse:
        issued = await self.registry.create_gateway_certificate(
            tenant_of(call), req.gatewayID, pki_name_from_proto(req.subject), years_of(req.expireAfterYears)
        )
        return gateway_pb2.CreateCertificateResponse(gatewayCert=issued.cert_pem, gatewayKey=issued.key_pem)

    async def GetIssuanceHistory(
        self, req: gateway_pb2.GetIssuanceHistoryRequest, call: Call
    ) -> gateway_pb2.GetIssuanceHistoryResponse:
        records = await self.registry.gateway_certificates(tenant_of(call), list(req.gatewayIDs))
        return gateway_pb2.GetIssuanceHistoryResponse(certInfos=[_cert_info(r) for r in records])

    async def GetCertificateBlacklist(
        self, req: gateway_pb2.GetCertificateBlacklistRequest, call: Call
    ) -> gateway_pb2.GetCertificateBlacklistResponse:
        records = await self.registry.gateway_certificates(tenant_of(call), list(req.gatewayIDs), blacklisted_only=True)
        return gateway_pb2.GetCertificateBlacklistResponse(certInfos=[_cert_info(r) for r in records])

    async def AddCertificateBlacklist(
        self, req: gateway_pb2.AddCertificateBlacklistRequest, call: Call
    ) -> gateway_pb2.AddCertificateBlacklistResponse:
        await self.registry.set_gateway_blacklisted(tenant_of(call), req.gatewayID, list(req.serialNOs), True)
        return gateway_pb2.AddCertificateBlacklistResponse()

    async def DeleteCertificateBlacklist(
        self, req: gateway_pb2.DeleteCertificateBlacklistRequest, call: Call
    ) -> gateway_pb2.DeleteCertificateBlacklistResponse:
        await self.registry.set_gateway_blacklisted(tenant_of(call), req.gatewayID, list(req.serialNOs), False)
        return gateway_pb2.DeleteCertificateBlacklistResponse()

    async def SubscribeStatus(self, req: gateway_pb2.SubscribeStatusRequest, call: Call) -> None:
        tenant = tenant_of(call)
        size = req.queueSize or self.default_queue
        if size < 0:
            raise InvalidInput(f"queueSize must not be negative, got {req.queueSize}")
        size = min(size, MAX_QUEUE)
        stream = self.status.open(tenant, size)
        context: Any = call.context

        def revoke(reason: str) -> None:
            stream.finish(StreamEnd.REVOKED, reason)

        call.conn.calls.add(revoke)
        try:
            await context.send_initial_metadata(())
            while True:
                item = await stream.next()
                if item is None:
                    break
                await context.write(item)
        finally:
            call.conn.calls.discard(revoke)
            stream.close()
        if stream.end is StreamEnd.OVERFLOW:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, stream.reason)
        elif stream.end is StreamEnd.REVOKED:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, stream.reason)
        else:
            await context.abort(grpc.StatusCode.UNAVAILABLE, stream.reason)
