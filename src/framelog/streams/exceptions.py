"""Errors of the event log layer; each carries a machine-readable ``reason``.

The reason is what lands in a DeadLetter record, so operators can group
failures without parsing messages.
"""
from __future__ import annotations

from framelog.core.errors import FramelogError


class StreamError(FramelogError):
    """Base of the log layer's errors."""

    reason: str = "error"

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DecodeError(StreamError, ValueError):
    """Bytes that are not a decodable framelog event (bad marker, unknown schema, truncated, ...)."""


class ValidationError(StreamError, ValueError):
    """A well-formed record that breaks a semantic rule; ``field`` names the offending field if any."""

    def __init__(self, reason: str, message: str, field: str | None = None):
        super().__init__(reason, message)
        self.field = field


class EncodeError(StreamError, ValueError):
    """A record that cannot be written with its schema (missing field, wrong type, unknown record)."""


class TopicSchemaError(ValidationError):
    """A record type that is not registered for the topic (topics.TopicSpec.schemas)."""


class DeliveryError(StreamError):
    """The broker did not acknowledge one or more produced records."""

    def __init__(self, reason: str, message: str, failures: list[str] | None = None):
        super().__init__(reason, message)
        self.failures = failures or []


class CommitError(StreamError):
    """Offsets could not be committed."""
