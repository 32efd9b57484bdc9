"""Device links and the G-SDK gRPC API: deleting a tenant with ``Tenant.Delete`` closes its links,
exactly as the REST delete does (both go through ``store.accounts.delete_tenant``, which
publishes the tenant-deleted event)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.devicelink_helpers import eventually, link_node, read_exactly, refused, tcp_client, tcp_echo
from tests.integration.gsdk_client import CALL_TIMEOUT, Master


async def test_grpc_tenant_delete_closes_the_tenants_links(tmp_path: Path, db_url: str) -> None:
    async with link_node(tmp_path, db_url, grpc_port=0) as h, tcp_echo() as (dev_port, _rec):
        await h.direct_device("doomed", "plc")
        await h.direct_device("kept", "rtu")
        for dev in ("plc", "rtu"):
            r = await h.api.post(f"/api/v1/devices/{dev}/attributes/server", json={"deviceLinkAddress": "127.0.0.1"})
            assert r.status_code < 300, r.text
        link = await h.create("plc", {"protocol": "tcp", "devicePort": dev_port})
        other = await h.create("rtu", {"protocol": "tcp", "devicePort": dev_port})
        reader, writer = await tcp_client(link["port"])
        writer.write(b"hello")
        assert await read_exactly(reader, 5) == b"hello"  # the link relays before the delete

        m = Master(h.node)
        admin = await m.admin()
        async with m.channel(admin) as ch:
            md = await m.login(ch, admin)
            await m.tenants(ch).Delete(
                m.g.tenant_pb2.DeleteRequest(tenantIDs=["doomed"]), metadata=md, timeout=CALL_TIMEOUT
            )

        # the open client connection is ended by the hub, and the port no longer relays
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await eventually(lambda: all(lk.token != link["token"] for lk in h.links.list(None)))
        assert await refused(link["port"])
        # another tenant's link is untouched
        assert [lk.token for lk in h.links.list(None)] == [other["token"]]
