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
