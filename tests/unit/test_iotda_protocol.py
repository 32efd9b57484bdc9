"""The sans-I/O IoTDA core and the thing model, with literal values."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from gatehub.cli.main import app
from gatehub.domain.telemetry import Row
from gatehub.domain.thingmodel import EMPTY, ThingModelError, compile_thing_model
from gatehub.errors import InvalidInput
from gatehub.protocols import iotda as p
from gatehub.store.tokens import TokenRecord
from gatehub.transports.http.iotda_rows import flatten_gateway_batch, flatten_services

# reference values from `openssl dgst -sha256 -hmac <timestamp>` over the secret
VECTORS = [
    ("mysecret", "2019120219", "8b0b3f10c5c68710e1e867212232150bf98a88fb45e4d97cb1d9153cccd9738a"),
    ("3f9e2f3c5a0c4ad2b8f1", "2018072417", "fb79539fc12f0f253ad024c529f302cce7c5004cfd7fd460ee3d390f7f0d6cd3"),
]


@pytest.mark.parametrize(("secret", "ts", "expected"), VECTORS)
def test_password_vectors(secret: str, ts: str, expected: str) -> None:
    assert p.password(secret, ts) == expected
    assert p.password_matches(secret, ts, expected.upper())
    assert not p.password_matches(secret, "2019120220", expected)


def test_timestamps() -> None:
    # the seed's example: 2018/7/24 17:56:20 UTC -> 2018072417
    ms = 1532454980000
    assert p.timestamp_for(ms) == "2018072417"
    assert p.parse_timestamp("2018072417") == 1532451600000
    assert p.timestamp_is_current("2018072417", ms, 0)
    assert p.timestamp_is_current("2018072418", ms, 1) and p.timestamp_is_current("2018072416", ms, 1)
    assert not p.timestamp_is_current("2018072419", ms, 1)
    assert p.timestamp_is_current("2018072500", ms + 7 * 3_600_000, 0)  # day rollover
    for bad in ("201807241", "2018072417x", "2018132417", "2018022917", "2018072424", "abcdefghij"):
        with pytest.raises(p.IotdaError) as exc:
            p.parse_timestamp(bad)
        assert exc.value.error_code == "IOTDA.000006" and exc.value.http_status == 400


def test_event_time_formats() -> None:
    assert p.parse_event_time("2021-08-13T10:10:10.555Z") == 1628849410555
    assert p.parse_event_time("20210813T101010Z") == 1628849410000
    assert p.parse_event_time("2021-08-13T10:10:10Z") == 1628849410000
    for bad in (None, 5, "", "2021-08-13 10:10:10", "20210813T101010", "2021-02-30T00:00:00.000Z", "yesterday"):
        assert p.parse_event_time(bad) is None
    assert p.format_event_time(1628849410555) == "2021-08-13T10:10:10.555Z"
    assert p.format_event_time(1628849410555, compact=True) == "20210813T101010Z"


def test_device_ids() -> None:
    assert p.check_device_id("a") == "a"
    assert p.check_device_id("A-z_9" * 25 + "abc") == "A-z_9" * 25 + "abc"  # 128
    assert p.platform_device_id("prod", "node1") == "prod_node1"
    for bad in ("", "x" * 129, "a b", "a/b", "ä", 5, None):
        with pytest.raises(p.IotdaError):
            p.check_device_id(bad)


def test_error_table_is_the_seed() -> None:
    expected = {
        "IOTDA.000002": (401, "Authentication failed."),
        "IOTDA.000004": (403, "Invalid access token."),
        "IOTDA.000006": (400, "Invalid input data."),
        "IOTDA.021101": (403, "Request reached the maximum rate limit."),
        "IOTDA.021102": (403, "The request rate has reached the upper limit of the tenant, limit %s."),
        "IOTDA.021103": (403, "The number of child devices in the request has reached the upper limit (%s)."),
        "IOTDA.021104": (400, "Subdevices in the request does not exist or does not belong to the gateway."),
        "IOTDA.021105": (403, "The content reported in a single request cannot exceed 1 MB."),
    }
    assert expected == p.ERRORS
    e = p.IotdaError(p.TENANT_RATE, 500)
    assert orjson.loads(e.body()) == {
        "error_code": "IOTDA.021102",
        "error_msg": "The request rate has reached the upper limit of the tenant, limit 500.",
    }
    assert p.invalid("x.y: bad.").message == "Invalid input data. x.y: bad."


def test_parse_auth() -> None:
    good = {"device_id": "d1", "sign_type": 1, "timestamp": "2019120219", "password": "a" * 64}
    req = p.parse_auth(orjson.dumps(good))
    assert (req.device_id, req.sign_type, req.timestamp) == ("d1", 1, "2019120219")
    for bad in (
        b"",
        b"[]",
        orjson.dumps({**good, "sign_type": "1"}),
        orjson.dumps({**good, "sign_type": False}),
        orjson.dumps({**good, "password": "g" * 64}),
        orjson.dumps({**good, "timestamp": 2019120219}),
    ):
        with pytest.raises(p.IotdaError):
            p.parse_auth(bad)


def test_flatten_services_keys_types_and_all_or_nothing() -> None:
    out: list[Row] = [("x", "k", 1, "i", 1, None, None)]
    services = [
        {"service_id": "s", "properties": {"i": 1, "f": 1.5, "b": False, "t": "x", "o": {"a": 1}}, "event_time": "bad"},
        {"service_id": "u", "properties": {"big": 2**70}, "event_time": "20210813T101010Z"},
    ]
    flatten_services("d", services, 42, EMPTY, out)
    assert out[1:] == [
        ("d", "s.i", 42, "i", 1, None, None),
        ("d", "s.f", 42, "f", None, 1.5, None),
        ("d", "s.b", 42, "b", 0, None, None),
        ("d", "s.t", 42, "s", None, None, "x"),
        ("d", "s.o", 42, "j", None, None, '{"a":1}'),
        ("d", "u.big", 1628849410000, "f", None, float(2**70), None),
    ]
    before = list(out)
    with pytest.raises(p.IotdaError) as exc:
        flatten_services("d", [*services, {"service_id": "z", "properties": {"n": None}}], 42, EMPTY, out)
    assert "services[2].properties.n" in exc.value.message
    assert out == before


def test_thing_model_checks_and_mapping() -> None:
    model = compile_thing_model(
        {
            "properties": [
                {
                    "identifier": "svc.level",
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "10"}},
                    "key": "lvl",
                },
                {"identifier": "on", "dataType": {"type": "bool"}},
                {"identifier": "mode", "service": "svc", "dataType": {"type": "enum", "specs": {"0": "a", "1": "b"}}},
                {
                    "identifier": "pos",
                    "dataType": {"type": "struct", "specs": [{"identifier": "x", "dataType": {"type": "double"}}]},
                },
                {
                    "identifier": "arr",
                    "dataType": {
                        "type": "array",
                        "specs": {"size": "2", "item": {"type": "text", "specs": {"length": "3"}}},
                    },
                },
                {"identifier": "when", "dataType": {"type": "date"}},
            ]
        }
    )
    assert model.strict and len(model) == 6
    out: list[Row] = []
    props = {"level": 3, "on": 1, "mode": 0, "pos": {"x": 1}, "arr": ["ab"], "when": "1700000000000"}
    flatten_services("d", [{"service_id": "svc", "properties": props}], 5, model, out)
    assert [r[1] for r in out] == ["lvl", "svc.on", "svc.mode", "svc.pos", "svc.arr", "svc.when"]
    bad_cases = {
        "level": 11,
        "on": "yes",
        "pos": {"y": 1},
        "arr": ["a", "b", "c"],
        "when": -1,
        "nope": 1,
    }
    for name, value in bad_cases.items():
        with pytest.raises(p.IotdaError) as exc:
            flatten_services("d", [{"service_id": "svc", "properties": {name: value}}], 5, model, [])
        assert f"services[0].properties.{name}" in exc.value.message, exc.value.message
    with pytest.raises(p.IotdaError):  # "mode" belongs to service "svc" only
        flatten_services("d", [{"service_id": "other", "properties": {"mode": 0}}], 5, model, [])
    with pytest.raises(ThingModelError) as tm:  # the generic API the Alink dialect uses
        model.check("svc.level", True)
    assert tm.value.field == "svc.level"
    assert model.check("on", True).identifier == "on"


def test_thing_model_rejects_malformed_models() -> None:
    assert compile_thing_model({}) is EMPTY and compile_thing_model({"events": []}) is EMPTY
    for bad in (
        {"properties": {}},
        {"properties": [{"dataType": {"type": "int"}}]},
        {"properties": [{"identifier": "a", "dataType": {"type": "complex"}}]},
        {"properties": [{"identifier": "a", "dataType": {"type": "int", "specs": {"min": "low"}}}]},
    ):
        with pytest.raises(InvalidInput):
            compile_thing_model(bad)


def test_gateway_batch_limits() -> None:
    kids = [{"device_id": f"c{i}", "services": [{"service_id": "s", "properties": {"v": i}}]} for i in range(51)]
    with pytest.raises(p.IotdaError) as exc:
        p.parse_children({"devices": kids})
    assert exc.value.error_code == "IOTDA.021103" and exc.value.message.endswith("(50).")
    parsed = p.parse_children({"devices": kids[:50]})
    out: list[Row] = []
    flatten_gateway_batch(parsed, 1, lambda _c: EMPTY, out)
    assert len(out) == 50
    broken = [*parsed[:3], ("c9", [{"service_id": "s"}])]
    with pytest.raises(p.IotdaError) as exc:
        flatten_gateway_batch(broken, 1, lambda _c: EMPTY, out)
    assert "devices[3].services[0].properties" in exc.value.message
    assert len(out) == 50


def test_message_body_forms() -> None:
    assert p.message_body(b'{"a": 1}') == '{"a": 1}'
    assert orjson.loads(p.message_body(b"hello")) == {"raw": "hello"}
    assert orjson.loads(p.message_body(b"\xff")) == {"base64": "/w=="}
    with pytest.raises(p.IotdaError):
        p.message_body(b"")


def test_token_record_validity() -> None:
    rec = TokenRecord("d", "t", "p", "direct", expires_at=100_000, superseded_at=None)
    assert rec.valid_at(99_999, 30_000) and not rec.valid_at(100_000, 30_000)
    old = TokenRecord("d", "t", "p", "direct", expires_at=100_000, superseded_at=10_000)
    assert old.valid_at(39_999, 30_000) and not old.valid_at(40_000, 30_000)


def test_cli_secret_tool() -> None:
    r = CliRunner().invoke(app, ["device", "secret-tool", "mysecret", "--timestamp", "2019120219", "--json"])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.output) == {"timestamp": "2019120219", "password": VECTORS[0][2]}
    r = CliRunner().invoke(app, ["device", "secret-tool", "mysecret", "--timestamp", "2019"])
    assert r.exit_code == 2
