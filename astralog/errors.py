"""The one error tree of Astralog.

Every error carries its HTTP status and a message a person can act on.

Errors defined beside the stage that raises them are named with their module::

    AstralogError (500)
    ├── BadRequest (400)
    │   ├── ValidationFailed (422)
    │   ├── SyntaxErrorAt (400, with a position)
    │   ├── UnsafeEndpoint (400, security.egress: an endpoint refused as a request target)
    │   ├── SsoFailure (400, auth.oidc: a sign-in through an identity provider refused)
    │   ├── WeakPassword (400, auth.passwords: a new password the rules refuse)
    │   └── UsageError (400, cli: a command line that cannot run)
    ├── Unauthenticated (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── MethodNotAllowed (405, with Allow)
    ├── QueryTimeout (408, query.engine: a search over its time budget)
    ├── BodyTimeout (408, api.middleware: a body slower than its deadline)
    ├── Conflict (409)
    ├── Gone (410, with when and why: an org pending deletion or deleted)
    ├── PayloadTooLarge (413)
    │   └── BodyTooLarge (413, api.middleware: a body over the limit as it streams in)
    ├── UnsupportedMediaType (415)
    ├── RateLimited (429, with Retry-After)
    ├── ConnectorError (502, connectors.base: a destination failed, with ``retryable``)
    ├── Unavailable (503, with Retry-After)
    ├── SecretUnavailable (500, security.fieldcrypt: a sealed secret cannot be opened)
    └── ConfigError (raised at start, never served)

Errors of dependencies (sqlite3, botocore, clickhouse-connect, duckdb) are translated at the
boundary with ``raise ... from exc``; the API renders any ``AstralogError`` as an RFC 9457 problem
document (see :mod:`astralog.api.problems`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AstralogError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


class BadRequest(AstralogError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class ValidationFailed(BadRequest):
    status = 422
    title = "Validation failed"
    slug = "validation"


class SyntaxErrorAt(BadRequest):
    title = "Syntax error"
    slug = "syntax"

    def __init__(self, detail: str, position: int, hint: str = "") -> None:
        super().__init__(detail, position=position, hint=hint)
        self.position = position


class Unauthenticated(AstralogError):
    status = 401
    title = "Unauthenticated"
    slug = "unauthenticated"


class Forbidden(AstralogError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(AstralogError):
    status = 404
    title = "Not found"
    slug = "not-found"


class MethodNotAllowed(AstralogError):
    status = 405
    title = "Method not allowed"
    slug = "method-not-allowed"

    def __init__(self, detail: str, allowed: list[str]) -> None:
        super().__init__(detail)
        self.headers = {"Allow": ", ".join(allowed)}


class Conflict(AstralogError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Gone(AstralogError):
    status = 410
    title = "Gone"
    slug = "gone"


class PayloadTooLarge(AstralogError):
    status = 413
    title = "Payload too large"
    slug = "too-large"


class UnsupportedMediaType(AstralogError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class _RetryLater(AstralogError):
    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


class RateLimited(_RetryLater):
    status = 429
    title = "Rate limit exceeded"
    slug = "rate-limited"


class Unavailable(_RetryLater):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"


class ConfigError(AstralogError):
    title = "Configuration error"
    slug = "config"
