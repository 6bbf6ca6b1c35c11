"""Injectable time.

Decision code never calls ``datetime.now()`` or ``time.time()`` itself: it is
handed a ``Clock`` (or a ``now`` value read from one), so tests can put a
rendition exactly 30 days old, or a token exactly at its expiry, without
sleeping.

``now()`` is always a timezone-aware UTC ``datetime``; ``time()`` is the same
instant as seconds since the epoch.
"""
from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def time(self) -> float:
        """The current instant in seconds since the epoch."""
        ...


def ensure_utc(value: datetime) -> datetime:
    """Reject naive datetimes (their instant is ambiguous); convert aware ones to UTC."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    return value.astimezone(UTC)


def from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return _time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; for tests and replays."""

    def __init__(self, start: datetime | float | None = None):
        if start is None:
            start = datetime(2025, 1, 1, tzinfo=UTC)
        self._now = from_timestamp(start) if isinstance(start, (int, float)) else ensure_utc(start)

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def set(self, value: datetime | float) -> None:
        self._now = from_timestamp(value) if isinstance(value, (int, float)) else ensure_utc(value)

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0,
                days: float = 0.0) -> datetime:
        """Move forward (never backward) and return the new instant."""
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if delta < timedelta(0):
            raise ValueError(f"a ManualClock only moves forward, got {delta}")
        self._now += delta
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"
