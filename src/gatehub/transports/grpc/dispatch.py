"""From grpc calls to service methods: who is calling, and errors as gRPC status codes.

Every method of every ``gsdk.*`` service goes through :func:`service_handler`, which

1. finds the client connection (and its verified certificate) the call arrived on
   (:meth:`TlsRelay.lookup`) — a call that did not come through the mTLS listener, or whose
   certificate is blacklisted, is refused with UNAUTHENTICATED;
2. unless the method is public (``Login``, ``LoginAdmin``), reads the JWT from metadata key
   ``token`` and checks it belongs to that connection's certificate (:class:`Call.caller`);
3. runs the method with a :class:`Call`, registering it with the connection so that a
   blacklisting can end it;
4. turns gatehub errors into status codes (the only place this happens).

Handlers are built from the service descriptors of the generated ``*_pb2`` modules, so the
method names, message types and the wire names come from the protos. Responses may be given
pre-serialised (``bytes``): :class:`gatehub.transports.grpc.status.StatusHub` serialises a status
change once for all its subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gatehub.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    GatehubError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    StorageError,
    Unauthenticated,
    Unavailable,
)
from gatehub.pki import TlsContextProvider
from gatehub.services.guard import CredentialGuard
from gatehub.transports.grpc.auth import TokenAuthority, TokenClaims
from gatehub.transports.grpc.relay import ConnInfo, TlsRelay

__all__ = ["Call", "Gate", "abort_with", "service_handler", "status_code_of"]

log = logging.getLogger(__name__)

_CODES: tuple[tuple[type[GatehubError], grpc.StatusCode], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (StorageError, grpc.StatusCode.UNAVAILABLE),
    (DomainError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_code_of(exc: GatehubError) -> Any:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


async def abort_with(context: Any, exc: GatehubError) -> None:
    message = exc.message if not isinstance(exc, StorageError) else "the database could not complete the request"
    await context.abort(status_code_of(exc), message)


@dataclass(slots=True)
class Call:
    """One call: its grpc context, its connection and, for non-public methods, the caller."""

    context: Any
    conn: ConnInfo
    claims: TokenClaims | None

    @property
    def caller(self) -> TokenClaims:
        assert self.claims is not None, "public methods have no caller"
        return self.claims


class Gate:
    """Decides whether a call may run (steps 1-2 of the module docstring)."""

    def __init__(
        self,
        relay: TlsRelay,
        provider: TlsContextProvider,
        tokens: TokenAuthority,
        guard: CredentialGuard | None = None,
    ) -> None:
        self.relay = relay
        self.provider = provider
        self.tokens = tokens
        self.guard = guard if guard is not None else CredentialGuard()

    async def enter(self, context: Any, public: bool) -> Call:
        conn = self.relay.lookup(context.peer())
        if conn is None:
            raise Unauthenticated("connect through the mTLS listener of the master gateway")
        if conn.revoked or self.provider.is_blacklisted(conn.identity.serial):
            raise Unauthenticated("the client certificate of this connection has been blacklisted")
        if public:
            return Call(context, conn, None)
        # the login token is a credential: checked through the guard (back-off, rate-limited logs)
        return await self.guard.check(
            conn.host, "grpc", f"certificate {conn.identity.serial}", lambda: self._verify(context, conn)
        )

    async def _verify(self, context: Any, conn: ConnInfo) -> Call:
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "token":
                token = value if isinstance(value, str) else value.decode("ascii", "replace")
                break
        claims = self.tokens.verify(token)
        if claims.serial != conn.identity.serial:
            raise Unauthenticated("the login token was issued to another client certificate than this connection's")
        return Call(context, conn, claims)

    async def public_refused(self, call: Call, method: str, exc: Unauthenticated) -> None:
        """A Login/LoginAdmin refused (the certificate sent is not the connection's, ...)."""
        await self.guard.refused(
            call.conn.host, "grpc", f"{method} with certificate {call.conn.identity.serial}: {exc.message}", "bad_login"
        )


Unary = Callable[[Any, Call], Awaitable[Message | bytes]]
Streaming = Callable[[Any, Call], Awaitable[None]]


def _serialize(msg: Message | bytes) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


def _unary(gate: Gate, fn: Unary, public: bool, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
    async def behavior(request: Any, context: Any) -> Any:
        call: Call | None = None
        try:
            call = await gate.enter(context, public)
            return await fn(request, call)
        except GatehubError as exc:
            if public and call is not None and isinstance(exc, Unauthenticated):
                await gate.public_refused(call, name, exc)
            elif not isinstance(exc, DomainError):
                log.error("grpc %s failed: %s", name, exc)
            await abort_with(context, exc)
        return None

    return behavior


def _streaming(gate: Gate, fn: Streaming, public: bool) -> Callable[[Any, Any], Awaitable[None]]:
    async def behavior(request: Any, context: Any) -> None:
        try:
            call = await gate.enter(context, public)
            await fn(request, call)
        except GatehubError as exc:
            await abort_with(context, exc)

    return behavior


def service_handler(service: ServiceDescriptor, impl: object, gate: Gate, public: frozenset[str] = frozenset()) -> Any:
    """A grpc generic handler serving ``service`` with the same-named async methods of ``impl``."""
    handlers: dict[str, Any] = {}
    method: MethodDescriptor
    for method in service.methods:
        fn = getattr(impl, method.name, None)
        if fn is None:
            continue  # grpc answers UNIMPLEMENTED
        request_cls = message_factory.GetMessageClass(method.input_type)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _streaming(gate, fn, method.name in public),
                request_deserializer=request_cls.FromString,
                response_serializer=_serialize,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(gate, fn, method.name in public, f"{service.full_name}/{method.name}"),
                request_deserializer=request_cls.FromString,
                response_serializer=_serialize,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
