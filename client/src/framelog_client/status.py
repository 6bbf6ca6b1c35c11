"""A video's live status: ``GET /videos/{id}/events``, server-sent events until the video is done.

The API first replays each stage's latest transition, then follows the log:

    event: transition   {"stage", "state", "attempt", "progress", "at", "error_type", ...}
    event: status       the video's status (as GET /videos/{id}) after the change
    event: end          the final status (ready, failed or deleted); then the stream closes

``follow`` yields them as ``StatusEvent``s and ends after ``end``. A dropped
stream is reopened (up to ``reconnects`` times, with backoff): the API replays
the stages so far, so nothing is lost, though a transition may come twice
(``replayed`` tells them apart).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

import httpx

from framelog_client.backoff import Backoff

__all__ = ["StatusEvent", "FollowError", "sse_events", "follow", "FINAL_STATES"]

FINAL_STATES = ("ready", "failed", "deleted")
RECONNECT_BACKOFF = Backoff(1.0, 10.0)   # 1 s, 2 s, 4 s, ... at most 10 s between reconnects


class FollowError(Exception):
    """The stream was refused (``status``: the HTTP status) or ended before the video did."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StatusEvent:
    event: str                       # transition, status or end
    data: Dict[str, Any]
    id: Optional[str] = None

    @property
    def final(self) -> bool:
        return self.event == "end"


def sse_events(lines: Iterable[str]) -> Iterator[StatusEvent]:
    """The events of a text/event-stream (its lines); comments (keep-alives) skipped, data parsed as JSON."""
    event: str = "message"
    data: List[str] = []
    event_id: Optional[str] = None
    for line in lines:
        if line == "":
            if data:
                yield StatusEvent(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith("id:"):
            event_id = line[3:].strip()


def follow(api_url: str, video_id: str, *, token: Optional[str] = None, headers: Optional[Mapping[str, str]] = None,
           reconnects: int = 5, http: Optional[httpx.Client] = None) -> Iterator[StatusEvent]:
    """Every event of the video's stream until ``end`` (the last one yielded); FollowError when the API
    refuses (401/403/404) or the stream keeps dropping."""
    url = f"{api_url.rstrip('/')}/videos/{video_id}/events"
    sent = {"Accept": "text/event-stream", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    client = http or httpx.Client(timeout=httpx.Timeout(10.0, read=None))
    try:
        for attempt in range(reconnects + 1):
            try:
                with client.stream("GET", url, headers=sent) as response:
                    if response.status_code != 200:
                        response.read()
                        raise FollowError(f"{url}: HTTP {response.status_code}: {response.text[:300]}",
                                          response.status_code)
                    for item in sse_events(response.iter_lines()):
                        yield item
                        if item.final:
                            return
            except httpx.HTTPError as exc:
                if attempt == reconnects:
                    raise FollowError(f"{url}: {exc}") from exc
                time.sleep(RECONNECT_BACKOFF.delay(attempt + 1))   # backoff before reopening the stream
        raise FollowError(f"the event stream of {video_id} ended before the video did")
    finally:
        if http is None:
            client.close()
