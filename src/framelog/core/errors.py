"""Errors framelog raises on purpose, each naming what went wrong and where."""
from __future__ import annotations


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
