"""Thing-model validation: every data type and range rule, access modes, events, services, and
models that are themselves malformed (refused on import, naming the entry)."""

from __future__ import annotations

from typing import Any

import pytest

from gatehub.domain.thingmodel import EMPTY, ThingModelError, compile_thing_model
from gatehub.errors import InvalidInput


def _model(data_type: dict[str, Any], access: str = "rw") -> Any:
    return compile_thing_model({"properties": [{"identifier": "p", "accessMode": access, "dataType": data_type}]})


def _ok(dt: dict[str, Any], *values: Any) -> None:
    m = _model(dt)
    for v in values:
        m.check("p", v)


def _bad(dt: dict[str, Any], value: Any, reason: str) -> None:
    with pytest.raises(ThingModelError) as exc:
        _model(dt).check("p", value, "params.p")
    assert exc.value.field.startswith("params.p"), exc.value.field
    assert reason in exc.value.reason, exc.value.reason


def test_int_is_32_bit_and_ranged() -> None:
    dt = {"type": "int", "specs": {"min": "-10", "max": "10", "unit": "cm", "step": "1"}}
    _ok(dt, -10, 0, 10)
    _bad(dt, 11, "above the maximum 10")
    _bad(dt, -11, "below the minimum -10")
    _bad(dt, 1.5, "expected an integer")
    _bad(dt, "3", "expected an integer")
    _bad(dt, True, "expected an integer")
    _ok({"type": "int"}, 2**31 - 1, -(2**31))
    _bad({"type": "int"}, 2**31, "32-bit")
    assert _model(dt).get("p").data_type.unit == "cm"


def test_float_and_double() -> None:
    dt = {"type": "float", "specs": {"min": "-0.5", "max": "99.5"}}
    _ok(dt, -0.5, 0, 99.5, 3)
    _bad(dt, 99.6, "above the maximum 99.5")
    _bad(dt, -0.6, "below the minimum -0.5")
    _bad(dt, "1.0", "expected a number")
    _bad(dt, None, "null")
    _bad({"type": "float"}, 1e39, "32-bit range of a float")
    _ok({"type": "double"}, 1e39, -1e300)
    _bad({"type": "double"}, float("inf"), "finite")
    _bad({"type": "double"}, float("nan"), "finite")


def test_bool_text_date() -> None:
    _ok({"type": "bool", "specs": {"0": "off", "1": "on"}}, True, False, 0, 1)
    _bad({"type": "bool"}, 2, "expected a boolean")
    _bad({"type": "bool"}, "true", "expected a boolean")
    _ok({"type": "text", "specs": {"length": "4"}}, "", "abcd")
    _bad({"type": "text", "specs": {"length": "4"}}, "abcde", "longer than 4")
    _bad({"type": "text"}, 5, "expected a string")
    _ok({"type": "string"}, "x" * 10_000)
    _ok({"type": "date"}, 1_700_000_000_000, "1700000000000", 0)
    _bad({"type": "date"}, -1, "UTC milliseconds")
    _bad({"type": "date"}, "2024-01-01", "UTC milliseconds")
    _bad({"type": "date"}, 1.5, "UTC milliseconds")


def test_enum() -> None:
    dt = {"type": "enum", "specs": {"0": "off", "1": "on", "2": "auto"}}
    _ok(dt, 0, 2, "1")
    _bad(dt, 3, "expected one of [0, 1, 2]")
    _bad(dt, 1.0, "expected one of")
    _ok({"type": "enum", "specs": ["a", "b"]}, "a")
    _bad({"type": "enum", "specs": ["a", "b"]}, "c", "expected one of [a, b]")


def test_array_size_and_items() -> None:
    dt = {"type": "array", "specs": {"size": "3", "item": {"type": "int", "specs": {"min": "0"}}}}
    _ok(dt, [], [0, 1, 2])
    _bad(dt, [1, 2, 3, 4], "more than 3 elements")
    with pytest.raises(ThingModelError) as exc:
        _model(dt).check("p", [1, -1], "params.p")
    assert exc.value.field == "params.p[1]" and "below the minimum 0" in exc.value.reason
    _bad(dt, {"0": 1}, "expected an array")
    structs = {
        "type": "array",
        "specs": {"size": "2", "item": {"type": "struct", "specs": [{"identifier": "x", "dataType": {"type": "int"}}]}},
    }
    _ok(structs, [{"x": 1}, {"x": 2}])
    with pytest.raises(ThingModelError) as exc:
        _model(structs).check("p", [{"x": 1}, {"x": "a"}], "params.p")
    assert exc.value.field == "params.p[1].x"


def test_struct_members() -> None:
    dt = {
        "type": "struct",
        "specs": [
            {"identifier": "lat", "dataType": {"type": "double", "specs": {"min": "-90", "max": "90"}}},
            {"identifier": "name", "dataType": {"type": "text", "specs": {"length": "3"}}},
        ],
    }
    _ok(dt, {"lat": 1.5, "name": "abc"}, {"lat": 0})
    for value, field in (
        ({"lat": 91}, "params.p.lat"),
        ({"name": "abcd"}, "params.p.name"),
        ({"alt": 1}, "params.p.alt"),
    ):
        with pytest.raises(ThingModelError) as exc:
            _model(dt).check("p", value, "params.p")
        assert exc.value.field == field
    _bad(dt, [1], "expected an object")
    with pytest.raises(ThingModelError):
        _model(dt).check("p", {"lat": None}, "params.p")


def test_unknown_properties_and_access_mode() -> None:
    m = compile_thing_model(
        {
            "properties": [
                {"identifier": "temp", "accessMode": "r", "dataType": {"type": "float"}},
                {"identifier": "level", "dataType": {"type": "int", "specs": {"max": "5"}}},
            ]
        }
    )
    assert m.strict and m.get("level").writable and not m.get("temp").writable
    with pytest.raises(ThingModelError, match="not a property"):
        m.check("colour", 1)
    m.check_set({"level": 5})
    with pytest.raises(ThingModelError, match="read-only") as exc:
        m.check_set({"level": 1, "temp": 2.0})
    assert exc.value.field == "params.temp"
    with pytest.raises(ThingModelError, match=r"params\.level"):
        m.check_set({"level": 6})
    with pytest.raises(ThingModelError):
        m.check_set({})
    EMPTY.check_set({"anything": 1})  # without a model any property may be set
    with pytest.raises(ThingModelError):
        EMPTY.check_set({"anything": None})


def test_events_and_services() -> None:
    m = compile_thing_model(
        {
            "properties": [],
            "events": [
                {"identifier": "post", "outputData": []},  # the TSL's property post: skipped
                {
                    "identifier": "alarm",
                    "type": "error",
                    "outputData": [{"identifier": "code", "dataType": {"type": "int", "specs": {"min": "1"}}}],
                },
            ],
            "services": [
                {"identifier": "set", "inputData": []},
                {"identifier": "get", "outputData": []},
                {
                    "identifier": "move",
                    "callType": "async",
                    "inputData": [{"identifier": "to", "dataType": {"type": "int", "specs": {"max": "100"}}}],
                    "outputData": [{"identifier": "at", "dataType": {"type": "int"}}],
                },
            ],
        }
    )
    assert not m.strict and set(m.events) == {"alarm"} and set(m.services) == {"move"}
    assert m.check_event("alarm", {"code": 3}).type == "error"  # type: ignore[union-attr]
    with pytest.raises(ThingModelError) as exc:
        m.check_event("alarm", {"code": 0})
    assert exc.value.field == "params.value.code"
    with pytest.raises(ThingModelError, match="not one of the output parameters"):
        m.check_event("alarm", {"other": 1})
    with pytest.raises(ThingModelError, match="not an event"):
        m.check_event("fire", {})
    m.check_service("move", {"to": 5})
    m.check_service("move", {"at": 7}, output=True, where="data")
    assert m.service("move").call_type == "async"  # type: ignore[union-attr]
    with pytest.raises(ThingModelError) as exc:
        m.check_service("move", {"to": 101})
    assert exc.value.field == "params.to"
    with pytest.raises(ThingModelError) as exc:
        m.check_service("move", {"at": "x"}, output=True, where="data")
    assert exc.value.field == "data.at"
    with pytest.raises(ThingModelError, match="not a service"):
        m.check_service("fly", {})
    with pytest.raises(ThingModelError, match="expected an object"):
        m.check_service("move", [1])
    EMPTY.check_service("anything", {"a": 1})
    assert EMPTY.check_event("anything", {"a": 1}) is None


@pytest.mark.parametrize(
    ("model", "where"),
    [
        ({"properties": {}}, "thingModel.properties"),
        ({"properties": [{"dataType": {"type": "int"}}]}, "thingModel.properties[0].identifier"),
        (
            {"properties": [{"identifier": "a", "dataType": {"type": "complex"}}]},
            "thingModel.properties[0].dataType.type",
        ),
        (
            {"properties": [{"identifier": "a", "dataType": {"type": "int", "specs": {"min": "5", "max": "1"}}}]},
            "min 5",
        ),
        ({"properties": [{"identifier": "a", "accessMode": "w", "dataType": {"type": "int"}}]}, "accessMode"),
        ({"properties": [{"identifier": "a", "dataType": {"type": "text", "specs": {"length": "-1"}}}]}, "length"),
        ({"properties": [{"identifier": "a", "dataType": {"type": "struct", "specs": {"x": 1}}}]}, "specs of a struct"),
        ({"events": [{"identifier": "e", "type": "panic"}]}, "thingModel.events[0].type"),
        ({"events": [{"identifier": "e", "outputData": [{"identifier": "x"}]}]}, "outputData[0].dataType"),
        ({"services": [{"identifier": "s", "callType": "later"}]}, "callType"),
        (
            {"services": [{"identifier": "s", "inputData": [{"identifier": "x", "dataType": {"type": "int"}}] * 2}]},
            "twice",
        ),
        ({"services": "reboot"}, "thingModel.services must be a list"),
    ],
)
def test_malformed_models_are_refused(model: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        compile_thing_model(model)
    assert where in exc.value.message, exc.value.message


def test_a_full_alibaba_tsl_compiles() -> None:
    tsl = {
        "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
        "profile": {"productKey": "a1Pk"},
        "properties": [
            {
                "identifier": "Power",
                "name": "power",
                "accessMode": "rw",
                "required": True,
                "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}},
            }
        ],
        "events": [{"identifier": "post", "type": "info", "method": "thing.event.property.post", "outputData": []}],
        "services": [
            {"identifier": "set", "callType": "async", "method": "thing.service.property.set", "inputData": []}
        ],
    }
    m = compile_thing_model(tsl)
    assert m.strict and len(m) == 1 and not m.events and not m.services
    assert compile_thing_model({}) is EMPTY and compile_thing_model({"events": [], "services": []}) is EMPTY
