"""Errors framelog raises on purpose, each naming what went wrong and where."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FramelogError(Exception):
    """Base of every deliberate framelog error."""


class ConfigError(FramelogError):
    """A configuration key is missing or has a bad value; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class InvalidIdError(FramelogError, ValueError):
    """An id from outside failed validation before touching a path, key or query."""


# the machine-readable code of an ApiError raised without one, by HTTP status
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 412: "unsupported_version", 413: "too_large",
                415: "unsupported_media_type", 422: "invalid_request", 423: "locked", 429: "rate_limited",
                460: "checksum_mismatch", 500: "internal_error", 503: "unavailable"}


class ApiError(FramelogError):
    """A request answered with something other than success: the API's one error type.

    ``status`` is the HTTP status, ``code`` a stable machine-readable word
    (``session_expired``, ``invalid_field``...; by default derived from the
    status), ``message`` the sentence for people, ``headers`` go on the
    response (``Retry-After``, ``WWW-Authenticate``, tus headers) and
    ``fields`` are further facts of the refusal (``event_index``, ``field``,
    ``restore_estimate_seconds``...). The API's one exception handler
    (``framelog.api.errors``) renders every one of them as
    ``{"error": {"code", "message", **fields}}``.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, /, *,
                 code: str | None = None, **fields: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or STATUS_CODES.get(status, "error")
        self.headers = dict(headers or {})
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.fields}}
