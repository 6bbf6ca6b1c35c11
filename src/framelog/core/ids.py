"""Identifiers from outside are validated here before they touch a path, key or query."""
from __future__ import annotations

import re
import uuid
from typing import TypeGuard

from framelog.core.errors import InvalidIdError

# Video ids are opaque: letters, digits, '-' and '_', 1..64 characters. No dots
# or slashes, so an id can never climb out of an S3 prefix or a directory.
# The same alphabet serves every opaque id (videos, tokens, sessions, key ids).
_OPAQUE = re.compile(r"[A-Za-z0-9_-]+")
# Event ids are UUID text, either case.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Viewer ids also carry e-mail-like and namespaced forms (user@host, anon:…, a+b).
_VIEWER = re.compile(r"[A-Za-z0-9_.@:+-]+")
VIDEO_ID_MAX = 64


def new_video_id() -> str:
    return uuid.uuid4().hex


def new_event_id() -> str:
    return str(uuid.uuid4())


def is_opaque_id(value: object, max_len: int = 64) -> TypeGuard[str]:
    """Letters, digits, '-' and '_', 1..max_len characters: safe in a path, key or query."""
    return isinstance(value, str) and 0 < len(value) <= max_len and _OPAQUE.fullmatch(value) is not None


def is_event_id(value: object) -> TypeGuard[str]:
    """Hyphenated UUID text (either case), what every event's event_id holds."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def is_viewer_id(value: object, max_len: int) -> TypeGuard[str]:
    """An opaque id that may also hold '.', '@', ':' and '+', 1..max_len characters."""
    return isinstance(value, str) and 0 < len(value) <= max_len and _VIEWER.fullmatch(value) is not None


def validate_video_id(value: object) -> str:
    if not is_opaque_id(value, VIDEO_ID_MAX):
        raise InvalidIdError(f"invalid video id {value!r}: expected 1-64 characters of [A-Za-z0-9_-]")
    return value
