"""The OpenAPI 3.0 description of the IoTDA device API, served at ``/v5/openapi.json``.

Written by hand (the device API is a lean ASGI app, not FastAPI) from seed 003; the fuzz tests
load it with schemathesis, so it is also the contract the tests hold the server to.
"""

from __future__ import annotations

from typing import Any

import gatehub
from gatehub.protocols.iotda import ERRORS

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$", "minLength": 1, "maxLength": 128}


def _error(*codes: str) -> dict[str, Any]:
    lines = "; ".join(f"{c}: {ERRORS[c][1]}" for c in codes)
    return {
        "description": lines,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_UNSUPPORTED = {
    "description": "IOTDA.000006: Invalid input data. The Content-Type is not application/json "
    "(a charset parameter is allowed); nothing is stored",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_BODY_NOTE = "Content-Type must be application/json (any case; parameters such as charset=utf-8 allowed), else 415."


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "description": _BODY_NOTE, "content": {"application/json": {"schema": schema}}}


def _responses(statuses: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK: reported and stored"}}
    for status, codes in statuses.items():
        out[str(status)] = _error(*codes)
    out["415"] = _UNSUPPORTED
    return out


_TOKEN_PARAM = {
    "name": "access_token",
    "in": "header",
    "required": True,
    "description": "Access token from /v5/device-auth",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
_DEVICE_PARAM = {"name": "device_id", "in": "path", "required": True, "schema": _ID}
_REPORT_ERRORS = {
    400: ("IOTDA.000006",),
    403: ("IOTDA.000004", "IOTDA.021101", "IOTDA.021102", "IOTDA.021105"),
}


def _post(summary: str, body_schema: dict[str, Any], statuses: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_DEVICE_PARAM, _TOKEN_PARAM],
            "requestBody": _body(body_schema),
            "responses": _responses(statuses),
        }
    }


def openapi() -> dict[str, Any]:
    service = {
        "type": "object",
        "required": ["service_id", "properties"],
        "properties": {
            "service_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "properties": {"type": "object"},
            "event_time": {
                "type": "string",
                "description": "yyyyMMdd'T'HHmmss'Z' or yyyy-MM-dd'T'HH:mm:ss.SSS'Z' (UTC); else the receive time",
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gatehub IoTDA-compatible device API",
            "version": gatehub.__version__,
            "description": "Huawei IoTDA HTTPS device API (seed 003). Errors: "
            '{"error_code": "IOTDA.xxxxxx", "error_msg": "..."}.',
        },
        "paths": {
            "/v5/device-auth": {
                "post": {
                    "summary": "Authenticate a device and get an access token",
                    "requestBody": _body({"$ref": "#/components/schemas/AuthRequest"}),
                    "responses": {
                        "200": {
                            "description": "A new access token",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthResponse"}}},
                        },
                        "400": _error("IOTDA.000006"),
                        "401": _error("IOTDA.000002"),
                        "403": _error("IOTDA.021101", "IOTDA.021102", "IOTDA.021105"),
                        "415": _UNSUPPORTED,
                    },
                }
            },
            "/v5/devices/{device_id}/sys/messages/up": _post(
                "Report a custom message (any body under 1 MB, sent as application/json)",
                {"type": "object", "description": "Any content; JSON is stored as JSON, other bytes as raw/base64"},
                _REPORT_ERRORS,
            ),
            "/v5/devices/{device_id}/sys/properties/report": _post(
                "Report properties",
                {
                    "type": "object",
                    "required": ["services"],
                    "properties": {"services": {"type": "array", "minItems": 1, "items": service}},
                },
                _REPORT_ERRORS,
            ),
            "/v5/devices/{device_id}/sys/gateway/sub-devices/properties/report": _post(
                "A gateway reports properties of up to 50 of its child devices",
                {
                    "type": "object",
                    "required": ["devices"],
                    "properties": {
                        "devices": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 50,
                            "items": {
                                "type": "object",
                                "required": ["device_id", "services"],
                                "properties": {
                                    "device_id": _ID,
                                    "services": {"type": "array", "minItems": 1, "items": service},
                                },
                            },
                        }
                    },
                },
                {
                    400: ("IOTDA.000006", "IOTDA.021104"),
                    403: ("IOTDA.000004", "IOTDA.021101", "IOTDA.021102", "IOTDA.021103", "IOTDA.021105"),
                },
            ),
        },
        "components": {
            "schemas": {
                "AuthRequest": {
                    "type": "object",
                    "required": ["device_id", "sign_type", "timestamp", "password"],
                    "properties": {
                        "device_id": _ID,
                        "sign_type": {"type": "integer", "enum": [0, 1]},
                        "timestamp": {"type": "string", "pattern": "^[0-9]{10}$"},
                        "password": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    },
                },
                "AuthResponse": {
                    "type": "object",
                    "required": ["access_token", "expires_in"],
                    "properties": {
                        "access_token": {"type": "string", "minLength": 32, "maxLength": 256},
                        "expires_in": {"type": "integer"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error_code", "error_msg"],
                    "properties": {"error_code": {"type": "string"}, "error_msg": {"type": "string"}},
                },
            }
        },
    }
