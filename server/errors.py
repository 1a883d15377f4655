"""The one domain error hierarchy; each edge (REST, Socket.IO) renders it in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 400
    default_message = "Missing or invalid request parameter."

    def __init__(self, message: str | None = None, fields: dict | None = None) -> None:
        if fields:
            super().__init__(message, fields=fields)
        else:
            super().__init__(message)


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    status = 401
    default_message = "Not authenticated."


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    default_message = "Not allowed."


class IdentityRequired(NotAuthenticated):
    """The channel verifies its end users and the request carried no proof."""

    code = "identity_required"
    default_message = "This chat requires a verified user: user_hash or identity_token missing."


class IdentityRefused(Forbidden):
    """The proof of identity does not verify for this external_id."""

    code = "identity_invalid"
    default_message = "The user's identity could not be verified."


class NotFound(DomainError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Conflict(DomainError):
    code = "conflict"
    status = 409
    default_message = "Conflict."


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests; slow down."

    def __init__(self, retry_after_ms: int, message: str | None = None) -> None:
        super().__init__(message, retry_after_ms=int(retry_after_ms))
        self.retry_after_ms = int(retry_after_ms)


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    default_message = "The upload is too large."


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415
    default_message = "This type of file is not accepted."


class Unavailable(DomainError):
    """A service the platform depends on (the database, Redis) does not answer right now.

    Retryable: the request changed nothing, and the same request may succeed after
    `retry_after_ms`. REST renders it as 503 with Retry-After; Socket.IO as the ack
    {"error": {"code": "unavailable", "retry_after_ms"}}.
    """

    code = "unavailable"
    status = 503
    default_message = "The service is temporarily unavailable; retry shortly."

    def __init__(self, retry_after_ms: int = 1000, message: str | None = None) -> None:
        super().__init__(message, retry_after_ms=int(retry_after_ms))
        self.retry_after_ms = int(retry_after_ms)


def infrastructure_error(exc: BaseException) -> Unavailable | None:
    """An Unavailable for an exception that means "the database or Redis is unreachable",
    else None (a real bug stays an internal error).

    Recognised: SQLAlchemy's disconnect-flavoured DBAPI errors and pool time-outs, psycopg's
    OperationalError, redis-py's connection and time-out errors, and OS-level connection
    errors.
    """
    # Imported here: the core's error module stays free of driver imports at load time.
    import psycopg
    import redis.exceptions as redis_exc
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sa_exc.DBAPIError) and cur.connection_invalidated:
            return Unavailable()
        if isinstance(cur, sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return Unavailable()
        if isinstance(cur, sa_exc.OperationalError | psycopg.OperationalError):
            return Unavailable()
        if isinstance(cur, redis_exc.ConnectionError | redis_exc.TimeoutError):
            return Unavailable()
        if isinstance(cur, ConnectionError | TimeoutError):
            return Unavailable()
        if isinstance(cur, OSError) and cur.errno is not None:
            import errno

            if cur.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                             errno.ENETUNREACH, errno.ETIMEDOUT, errno.EPIPE):
                return Unavailable()
        cur = cur.__cause__ or cur.__context__
    return None
