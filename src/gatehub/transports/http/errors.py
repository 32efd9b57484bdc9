"""The one place where exceptions become HTTP error bodies.

Every error body is ``{"error": {"code": "...", "message": "...", "details": [...]?}}``.
Validation errors name the field (``devicePort``, ``source.port``) and the reason, with the value
given when its JSON type is wrong; a body that is not JSON gives the parser's reason with line,
column and character position.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatehub.errors import DomainError, GatehubError, StorageError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """One problem of a request: the field (``devicePort``, ``source.port``, ``body``) and why."""

    model_config = ConfigDict(extra="allow")

    field: str = Field(description="The field, dotted for nested ones; 'body' for the body as a whole")
    message: str
    line: int | None = Field(None, ge=1, le=2**31 - 1, description="Malformed JSON: the line (1-based)")
    column: int | None = Field(None, ge=1, le=2**31 - 1, description="Malformed JSON: the column (1-based)")
    position: int | None = Field(None, ge=0, le=2**31 - 1, description="Malformed JSON: the position (0-based)")


class ErrorInfo(BaseModel):
    code: str = Field(description="A stable, machine-readable code: invalid_input, not_found, already_exists, ...")
    message: str = Field(description="What went wrong, for a person")
    details: list[ErrorDetail] | None = Field(None, description="Validation errors: one entry per problem")


class ErrorBody(BaseModel):
    """The body of every error answer of the REST API."""

    error: ErrorInfo


#: what each error status means on this API (the OpenAPI description of every route says which it answers)
ERROR_STATUS: dict[int, str] = {
    400: "Invalid input (code `invalid_input` and the field, or a rule the request breaks)",
    401: "No API key, or one that is unknown or deleted (`unauthenticated`)",
    403: "The API key lacks the right for this action (`permission_denied`)",
    404: "Not found, or not visible to this API key (`not_found`; another tenant's objects are not found)",
    409: "Conflict: the id or name is taken hub-wide (`already_exists`), or the state does not allow it now",
    413: "The request body is larger than http_max_body_bytes (`payload_too_large`)",
    429: "Too many wrong credentials from this address: wait and retry (`rate_limited`; guard_* settings)",
    502: "The device answered with an error (RPC `rpc_failed`, thing model `thing_model`)",
    503: "The database, or a transport this needs, is unavailable here (`unavailable`, `storage_unavailable`)",
    504: "The device did not answer within the timeout (`rpc_timeout`, `rpc_expired`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for these error statuses, each with the error body schema."""
    return {s: {"model": ErrorBody, "description": ERROR_STATUS[s]} for s in statuses}


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response(orjson.dumps({"error": body}), status_code=status, media_type="application/json")


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def _describe(value: Any) -> str:
    """A JSON value as a user wrote it, with its JSON type (what a type error got instead)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value!r} (a number with a fraction or exponent)"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{orjson.dumps(text).decode()} (a string)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _reason(e: Any) -> str:
    """Pydantic's message, plus what was given when the JSON type is wrong (strict models do not
    coerce: ``"devicePort": true`` says it got a boolean, not just that it wants an integer)."""
    msg = str(e.get("msg", "invalid"))
    kind = str(e.get("type", ""))
    if kind == "missing" and tuple(e.get("loc", ())) == ("body",):
        return "a JSON object is required, the request has no body"
    if (kind.endswith("_type") or kind == "literal_error") and "input" in e:
        return f"{msg}, got {_describe(e['input'])}"
    return msg


def _json_invalid(e: Any, doc: Any) -> Response:
    """Malformed JSON: the parser's reason with line, column and character position (1-based line
    and column, 0-based position, as Python's json module counts them)."""
    loc = e.get("loc", ())
    pos = loc[-1] if loc and isinstance(loc[-1], int) else 0
    reason = str((e.get("ctx") or {}).get("error") or "invalid JSON")
    text = doc if isinstance(doc, str) else ""
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    message = f"request body is not valid JSON: {reason} at line {line}, column {column} (char {pos})"
    detail = {"field": "body", "message": message, "line": line, "column": column, "position": pos}
    return error_response(400, "invalid_input", message, [detail])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_r: Request, exc: DomainError) -> Response:
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(StorageError)
    async def _storage(_r: Request, exc: StorageError) -> Response:
        log.error("storage error: %s", exc)
        return error_response(503, "storage_unavailable", "the database could not complete the request")

    @app.exception_handler(GatehubError)
    async def _other(_r: Request, exc: GatehubError) -> Response:
        log.error("error: %s", exc)
        return error_response(500, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                return _json_invalid(e, exc.body)
        details = [{"field": _loc(e.get("loc", ())), "message": _reason(e)} for e in errors]
        first = details[0] if details else {"field": "request", "message": "invalid"}
        return error_response(400, "invalid_input", f"{first['field']}: {first['message']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, limit: int, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt and scope["path"].startswith(self.exempt)):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        await self._refuse(scope, receive, send)
                        return
                except ValueError:
                    await error_response(400, "invalid_input", "bad Content-Length")(scope, receive, send)
                    return
        seen = 0
        too_large = started = False

        async def limited() -> Message:
            nonlocal seen, too_large
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _TooLarge()
            return msg

        async def guarded(msg: Message) -> None:
            # the framework may catch _TooLarge and answer 400 itself: that answer is replaced by 413
            nonlocal started
            if too_large and not started:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, guarded)
        except _TooLarge:
            pass
        if too_large and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = error_response(413, "payload_too_large", f"request body is larger than {self.limit} bytes")
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


class JsonByDefault:
    """Read request bodies without a content type, or with curl's default
    ``application/x-www-form-urlencoded``, as JSON: the API takes no form data, and
    ``curl -d '{...}'`` is how people try it. Other declared types are left alone (and refused)."""

    _FORM = b"application/x-www-form-urlencoded"

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            headers = scope.get("headers", [])
            ctype = next((v for k, v in headers if k == b"content-type"), None)
            if ctype is None or ctype.split(b";", 1)[0].strip().lower() == self._FORM:
                kept = [(k, v) for k, v in headers if k != b"content-type"]
                scope = {**scope, "headers": [*kept, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class RefuseNul:
    """Refuse NUL characters in the path, the query and the body of ``/api/`` requests with 400:
    no id, name or value of the API holds one, and PostgreSQL cannot store them (the request
    would end in the database's error, answered 503). A JSON body carries NUL as the escape
    ``\\u0000``; one preceded by an odd number of backslashes is a literal backslash, not a NUL.
    The body is read whole here (BodyLimit, outside, bounds it) and handed on unchanged."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            await _nul(scope, receive, send, "the path or the query")
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away before its body came
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        if _has_nul(body):
            await _nul(scope, receive, send, "the body")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _has_nul(body: bytes) -> bool:
    if b"\x00" in body:
        return True
    at = body.find(b"\\u0000")
    while at >= 0:
        slashes = 0
        while at - slashes - 1 >= 0 and body[at - slashes - 1] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return True
        at = body.find(b"\\u0000", at + 1)
    return False


async def _nul(scope: Scope, receive: Receive, send: Send, where: str) -> None:
    msg = f"NUL characters (U+0000) are not accepted in {where}"
    await error_response(400, "invalid_input", msg, [{"field": "request", "message": msg}])(scope, receive, send)
