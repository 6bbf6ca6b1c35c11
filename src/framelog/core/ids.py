"""Identifiers from outside are validated here before they touch a path, key or query."""
from __future__ import annotations

import re
import uuid

from framelog.core.errors import InvalidIdError

# Video ids are opaque: letters, digits, '-' and '_', 1..64 characters. No dots
# or slashes, so an id can never climb out of an S3 prefix or a directory.
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_video_id() -> str:
    return uuid.uuid4().hex


def new_event_id() -> str:
    return str(uuid.uuid4())


def validate_video_id(value: object) -> str:
    if not isinstance(value, str) or not _VIDEO_ID.fullmatch(value):
        raise InvalidIdError(f"invalid video id {value!r}: expected 1-64 characters of [A-Za-z0-9_-]")
    return value
