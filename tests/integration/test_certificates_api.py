"""REST certificates: issuing, history, blacklist, and the CRL served at a URL."""

from __future__ import annotations

import httpx
from cryptography import x509

from gatehub.domain.permissions import Role
from gatehub.pki import parse_certificate
from tests.conftest import RunningHub


async def _tenant_key(hub: RunningHub, tenant: str) -> str:
    assert (await hub.client.post("/api/v1/tenants", json={"id": tenant})).status_code == 201
    assert hub.node.store is not None
    _info, key = await hub.node.store.accounts.create_api_key(f"{tenant} admin", Role.TENANT_ADMIN, tenant)
    return key


async def test_gateway_certificates_blacklist_and_crl(hub: RunningHub) -> None:
    key = await _tenant_key(hub, "acme")
    assert hub.node.pki is not None
    ca = hub.node.pki.ca
    async with hub.as_key(key) as c:
        r = await c.post(
            "/api/v1/gateways/gw-1/certificates",
            json={"subject": {"country": "KR", "commonName": "gw one"}, "expireAfterYears": 3},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        ident = parse_certificate(ca, body["gatewayCert"])
        assert (ident.tenant_id, ident.gateway_id, ident.serial) == ("acme", "gw-1", body["serialNO"])
        assert body["caCert"] == ca.cert_pem and "PRIVATE KEY" in body["gatewayKey"]
        bad = await c.post("/api/v1/gateways/gw-1/certificates", json={"subject": {"country": "Korea"}})
        assert bad.status_code == 400 and "country" in bad.json()["error"]["message"]

        hist = (await c.get("/api/v1/gateways/gw-1/certificates")).json()["items"]
        assert [h["serialNO"] for h in hist] == [ident.serial]
        # the CRL is public and lists nothing yet
        async with httpx.AsyncClient(base_url=hub.url, timeout=10) as anon:
            crl0 = x509.load_pem_x509_crl((await anon.get("/api/v1/certificates/crl")).content)
            assert crl0.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
            assert crl0.get_revoked_certificate_by_serial_number(ident.serial) is None
            assert (await anon.get("/api/v1/certificates/ca")).text == ca.cert_pem

            r = await c.put(f"/api/v1/certificates/{ident.serial}/blacklist")
            assert r.status_code == 200 and r.json()["blacklisted"] is True
            crl_pem = await anon.get("/api/v1/certificates/crl")
            assert crl_pem.headers["content-type"].startswith("application/x-pem-file")
            crl1 = x509.load_pem_x509_crl(crl_pem.content)
            der = await anon.get("/api/v1/certificates/crl.der")
            crl1d = x509.load_der_x509_crl(der.content)
            for crl in (crl1, crl1d):
                assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
                assert crl.issuer == ca.certificate.subject
                assert crl.get_revoked_certificate_by_serial_number(ident.serial) is not None
            assert crl1.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > (
                crl0.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            )
            assert hub.node.pki.is_blacklisted(ident.serial)
            listed = (await c.get("/api/v1/certificates", params={"blacklisted": "true"})).json()["items"]
            assert [x["serialNO"] for x in listed] == [ident.serial]

            r = await c.delete(f"/api/v1/certificates/{ident.serial}/blacklist")
            assert r.status_code == 200 and r.json()["blacklisted"] is False
            crl2 = x509.load_pem_x509_crl((await anon.get("/api/v1/certificates/crl")).content)
            assert crl2.get_revoked_certificate_by_serial_number(ident.serial) is None
            assert not hub.node.pki.is_blacklisted(ident.serial)

            # batch, all or nothing
            r2 = (await c.post("/api/v1/gateways/gw-2/certificates", json={})).json()
            r = await c.post("/api/v1/certificates/blacklist", json={"serialNOs": [r2["serialNO"], 999]})
            assert r.status_code == 404
            assert not hub.node.pki.is_blacklisted(r2["serialNO"])
            r = await c.post("/api/v1/certificates/blacklist", json={"serialNOs": [r2["serialNO"], ident.serial]})
            assert r.status_code == 200 and all(x["blacklisted"] for x in r.json()["items"])
            assert hub.node.pki.crl.serials == {r2["serialNO"], ident.serial}

        # tenant certificates
        r = await c.post("/api/v1/certificates/tenant", json={"subject": {"organization": "Acme"}})
        assert r.status_code == 201
        tident = parse_certificate(ca, r.json()["tenantCert"])
        assert (tident.kind.value, tident.tenant_id) == ("tenant", "acme")


async def test_certificates_are_tenant_scoped(hub: RunningHub) -> None:
    a = await _tenant_key(hub, "ta")
    b = await _tenant_key(hub, "tb")
    async with hub.as_key(a) as ca_, hub.as_key(b) as cb:
        assert (await cb.post("/api/v1/gateways", json={"name": "x", "productId": "nope"})).status_code in (400, 404)
        r = await cb.post("/api/v1/gateways/b-gw/certificates", json={})
        serial = r.json()["serialNO"]
        # A cannot see, read or blacklist B's certificate
        assert (await ca_.get(f"/api/v1/certificates/{serial}")).status_code == 404
        assert (await ca_.put(f"/api/v1/certificates/{serial}/blacklist")).status_code == 404
        assert (await ca_.get("/api/v1/certificates")).json()["items"] == []
        assert (await ca_.get("/api/v1/certificates", params={"tenantId": "tb"})).status_code == 404  # not "forbidden"
        assert hub.node.pki is not None and not hub.node.pki.is_blacklisted(serial)
        # nor issue a certificate for B's tenant
        r = await ca_.post("/api/v1/certificates/tenant", json={"tenantId": "tb"})
        assert r.status_code == 404, r.text  # B is not found for A's key
    # the system administrator sees both
    everything = (await hub.client.get("/api/v1/certificates", params={"kind": "gateway"})).json()["items"]
    assert [x["serialNO"] for x in everything] == [serial]
    # the hub's own server certificate is in the history
    servers = (await hub.client.get("/api/v1/certificates", params={"kind": "server"})).json()["items"]
    assert [x["serialNO"] for x in servers] == [hub.node.pki.server_certificate.serial]
