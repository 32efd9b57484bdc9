"""Alink wire shapes, sans I/O: sub-device and product-secret signatures, topics, requests,
the one reply shape, batch limits and property values."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from gatehub.protocols import alink
from gatehub.protocols.alink import AlinkError, Code


def _hmac(secret: str, content: str, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), content.encode(), getattr(hashlib, digest)).hexdigest()


def test_sub_device_signature_covers_the_client_id_as_sent() -> None:
    cid = "a1Sub.dev1|lan=Python,_v=2.2.1,_ss=1|"
    sign = _hmac("s3cret", f"clientId{cid}deviceNamedev1productKeya1Subtimestamp1700000000000")
    (cred,) = alink.login_credentials(
        {
            "signMethod": "hmacSha256",
            "deviceList": [
                {
                    "productKey": "a1Sub",
                    "deviceName": "dev1",
                    "clientId": cid,
                    "timestamp": "1700000000000",
                    "cleanSession": "false",
                    "sign": sign,
                }
            ],
        },
        batch=True,
    )
    assert cred.verify("s3cret") and not cred.clean_session
    assert not cred.verify("other")
    tampered = alink.SubCredentials("a1Sub", "dev1", "a1Sub.dev1", "1700000000000", "hmacSha256", sign)
    assert not tampered.verify("s3cret")
    # the PROTOCOLS.md vector through the same path (hmacsha1, clientId SN1928339)
    vec = alink.SubCredentials(
        "a14Xib5kdYd",
        "light1983432",
        "SN1928339",
        "1539421321846",
        "hmacsha1",
        "b2488041f64f425016b467ee1c94959ebd592ad1",
    )
    assert vec.verify("oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq")
    assert not alink.SubCredentials("a", "b", "c", None, "sha512", "00").verify("x")
    assert not alink.SubCredentials("a", "b", "c", None, "hmacmd5", None).verify("x")


def test_topo_add_entries_and_limits() -> None:
    entry = {
        "productKey": "pk",
        "deviceName": "d",
        "clientId": "pk.d",
        "timestamp": 1,
        "signmethod": "hmacMd5",
        "sign": "x",
    }
    (c,) = alink.sub_credentials([entry], alink.TOPO_MAX)
    assert (c.product_key, c.device_name, c.timestamp, c.sign_method) == ("pk", "d", "1", "hmacMd5")
    with pytest.raises(AlinkError) as exc:
        alink.sub_credentials([entry] * 31, alink.TOPO_MAX)
    assert exc.value.code == Code.PARAM_ERROR and "at most 30" in exc.value.message
    for bad in ([], {}, [1], [{"deviceName": "d"}], [{"productKey": "p", "deviceName": 5.5}]):
        with pytest.raises(AlinkError) as exc:
            alink.sub_credentials(bad, alink.TOPO_MAX)
        assert exc.value.code == Code.PARAM_ERROR
    with pytest.raises(AlinkError, match="at most 50"):
        alink.login_credentials({"deviceList": [entry] * 51}, batch=True)
    assert len(alink.login_credentials({"deviceList": [entry] * 50}, batch=True)) == 50
    assert alink.device_refs([{"productKey": "p", "deviceName": "d"}], 1) == [("p", "d")]


def test_product_secret_registration_signature() -> None:
    sig = _hmac("psecret", "deviceNamefactory-1productKeya1Pkrandomabc123")
    assert alink.verify_register("psecret", "hmacsha256", "factory-1", "a1Pk", "abc123", sig)
    assert alink.verify_register("psecret", "HmacSHA256", "factory-1", "a1Pk", "abc123", sig.upper())
    assert not alink.verify_register("psecret", "hmacsha256", "factory-2", "a1Pk", "abc123", sig)
    assert not alink.verify_register("psecret", "hmacsha256", "factory-1", "a1Pk", "", sig)
    (r,) = alink.product_register_requests(
        {
            "proxieds": [
                {
                    "productKey": "a1Pk",
                    "deviceName": "factory-1",
                    "random": "abc123",
                    "signMethod": "hmacSha256",
                    "sign": sig,
                }
            ]
        }
    )
    assert (r.product_key, r.device_name, r.random, r.sign) == ("a1Pk", "factory-1", "abc123", sig)


def test_topics() -> None:
    t = alink.parse_topic("/sys/a1Pk/dev-1/thing/event/property/post")
    assert t == alink.Topic("sys", "a1Pk", "dev-1", "thing/event/property/post")
    assert alink.parse_topic("/ext/session/a1Pk/gw/combine/batch_login") == alink.Topic(
        "session", "a1Pk", "gw", "combine/batch_login"
    )
    for bad in ("/sys/a1Pk", "/sys//dev/x", "/a1Pk/dev/user/get", "/ext/rrpc/1/x"):
        assert alink.parse_topic(bad) is None
    assert alink.sys_topic("p", "d", "thing/topo/change") == "/sys/p/d/thing/topo/change"


def test_requests_and_the_reply_shape() -> None:
    req = alink.parse_request(b'{"id":"7","version":"1.0","params":{"a":1},"method":"thing.event.property.post"}')
    assert (req.id, req.params, req.method) == ("7", {"a": 1}, "thing.event.property.post")
    assert alink.parse_request(b'{"id":12,"params":[]}').id == "12"
    with pytest.raises(AlinkError) as exc:
        alink.parse_request(b"\xff not json")
    assert exc.value.code == Code.NOT_JSON
    with pytest.raises(AlinkError) as exc:
        alink.parse_request(b"[1]")
    assert exc.value.code == Code.NOT_JSON
    with pytest.raises(AlinkError) as exc:
        alink.parse_request(b'{"params":{}}')
    assert exc.value.code == Code.PARAM_ERROR
    assert alink.request_id_of(b'{"id":"9","params":3}') == "9" and alink.request_id_of(b"nope") == ""
    assert orjson.loads(alink.reply("7", 200)) == {"id": "7", "code": 200, "data": {}, "message": "success"}
    assert orjson.loads(alink.reply("7", Code.PARAM_ERROR, [], "params.a: bad")) == {
        "id": "7",
        "code": 460,
        "data": [],
        "message": "params.a: bad",
    }
    assert orjson.loads(alink.downlink("3", "thing.topo.change", {"status": 0})) == {
        "id": "3",
        "version": "1.0",
        "params": {"status": 0},
        "method": "thing.topo.change",
    }


def test_property_values_with_and_without_time() -> None:
    out = alink.property_values({"a": 1, "b": {"value": "x", "time": 1_700_000_000_000}, "c": {"x": 1}}, 5)
    assert out == [("a", 1, 5), ("b", "x", 1_700_000_000_000), ("c", {"x": 1}, 5)]
    for bad in ({}, [], {"a": {"value": 1, "time": "yesterday"}}):
        with pytest.raises(AlinkError):
            alink.property_values(bad, 5)
