"""The one exception tree of gatehub.

    GatehubError
    ├── ConfigError                  bad settings; raised at startup
    ├── StorageError                 the database failed (wraps driver errors at the store boundary)
    ├── DomainError                  a rule of the model was broken by a request; maps to 4xx
    │   ├── InvalidInput             malformed or out-of-range input           (400)
    │   ├── NotFound                 an id that does not exist for the caller (404)
    │   ├── AlreadyExists            a unique id or name is taken              (409)
    │   ├── Conflict                 state does not allow it now               (409)
    │   ├── Unauthenticated          no or bad credentials                     (401)
    │   ├── PermissionDenied         credentials lack the right                (403)
    │   ├── RateLimited              over a configured rate                    (429)
    │   └── Unavailable              a resource pool is exhausted              (503)
    └── ProtocolError                a wire protocol was broken
        ├── RemoteProtocolError      the peer broke it (answer with its reason code, close it)
        └── LocalProtocolError       we tried to send something invalid (a bug on our side)

Transports convert third-party exceptions into these at their boundary, in one place each, and
convert these into wire errors (HTTP bodies, MQTT reason codes, gRPC status codes).
"""

from __future__ import annotations


class GatehubError(Exception):
    """Base of every error gatehub raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(GatehubError):
    code = "config"


class StorageError(GatehubError):
    code = "storage"


class DomainError(GatehubError):
    code = "domain"
    http_status = 400


class InvalidInput(DomainError):
    code = "invalid_input"
    http_status = 400


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class AlreadyExists(DomainError):
    code = "already_exists"
    http_status = 409


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class Unauthenticated(DomainError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(DomainError):
    code = "permission_denied"
    http_status = 403


class RateLimited(DomainError):
    code = "rate_limited"
    http_status = 429


class Unavailable(DomainError):
    code = "unavailable"
    http_status = 503


class ProtocolError(GatehubError):
    code = "protocol"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids.

    ``reason_code`` is the protocol's own code for the failure (an MQTT reason code, say),
    which the transport sends before closing the connection when the protocol allows it.
    """

    code = "remote_protocol"

    def __init__(self, message: str, *, reason_code: int = 0x81, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reason_code = reason_code


class LocalProtocolError(ProtocolError):
    code = "local_protocol"
