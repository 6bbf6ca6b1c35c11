"""Webhook events derived from the log, endpoints folded from the log, routing and retry timing (no I/O).

Events (``derive``): one source record gives at most one webhook event:

    video.uploads             UploadCompleted                        -> upload.completed
    video.stage-transitions   first stage 'queued', attempt 1        -> video.processing
                              any stage 'failed'                     -> video.failed
    video.assets              AssetPublished                         -> video.ready
    storage.tier-transitions  TierTransition                         -> tier.changed
    video.uploads             VideoDeleted                           -> video.deleted

The body follows the Standard Webhooks shape ``{"type", "timestamp", "data"}``;
``data`` names the video and the facts an integrator acts on (never object
keys of private storage beyond the playlist path, never secrets).

Endpoints (``EndpointFold``): the latest ``WebhookEndpoint`` per endpoint id.
An endpoint without a workspace gets the events of its owner's videos; one
with a workspace gets those of the videos whose policy names that workspace;
both only for events that happened after it was registered.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from framelog.core.backoff import Backoff

EVENT_TYPES = ("upload.completed", "video.processing", "video.ready", "video.failed", "video.deleted",
               "tier.changed")


def millis(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value or 0)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WebhookEvent:
    type: str
    video_id: str
    occurred_at_ms: int
    source_event_id: str
    data: dict[str, Any]

    def body(self) -> str:
        """The JSON body, compact and key-sorted so a replay signs the very same bytes."""
        return json.dumps({"type": self.type, "timestamp": iso(self.occurred_at_ms), "data": self.data},
                          separators=(",", ":"), sort_keys=True)


def derive(name: str, record: Mapping[str, Any], first_stage: str) -> WebhookEvent | None:
    """The webhook event a source record means, or None."""
    vid = record.get("video_id")
    if not vid:
        return None
    at, source = millis(record.get("event_time")), str(record.get("event_id") or "")

    def event(kind: str, **data: Any) -> WebhookEvent:
        return WebhookEvent(kind, vid, at, source, {"video_id": vid, **data})

    if name == "UploadCompleted":
        return event("upload.completed", size_bytes=record.get("size_bytes"), content_type=record.get("content_type"),
                     sha256=record.get("sha256"), owner=record.get("owner_id"),
                     filename=record.get("original_filename") or None)
    if name == "VideoDeleted":
        return event("video.deleted", reason=record.get("reason") or None)
    if name == "StageTransition":
        state = record.get("state")
        if state == "queued" and record.get("stage") == first_stage and int(record.get("attempt") or 1) == 1:
            return event("video.processing", job_id=record.get("job_id"))
        if state == "failed":
            return event("video.failed", job_id=record.get("job_id"), stage=record.get("stage"),
                         error_type=record.get("error_type"), error_message=record.get("error_message"),
                         attempt=record.get("attempt"))
        return None
    if name == "AssetPublished":
        return event("video.ready", job_id=record.get("job_id") or None,
                     duration_seconds=record.get("duration_seconds"),
                     renditions=[{"name": r.get("name"), "width": r.get("width"), "height": r.get("height"),
                                  "bandwidth": r.get("bandwidth")} for r in record.get("renditions") or []],
                     playback={"stream": f"/v1/stream?video_id={vid}", "player": f"/player/{vid}"})
    if name == "TierTransition":
        return event("tier.changed", rendition=record.get("rendition"), from_tier=record.get("from_tier"),
                     to_tier=record.get("to_tier"), storage_class=record.get("storage_class") or None,
                     rule=record.get("rule"))
    return None


# ------------------------------------------------------------ endpoints

@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    owner_id: str
    workspace_id: str | None
    url: str
    event_types: tuple[str, ...]
    secret_salt: str
    created_at_ms: int
    description: str = ""
    deleted: bool = False

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def view(self) -> dict[str, Any]:
        """What the API shows (never the secret)."""
        return {"id": self.endpoint_id, "url": self.url, "owner": self.owner_id, "workspace": self.workspace_id,
                "event_types": list(self.event_types) or list(EVENT_TYPES), "description": self.description,
                "created_at": iso(self.created_at_ms)}


class EndpointFold:
    """The latest WebhookEndpoint per endpoint id, in log order."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}

    def apply(self, record: Mapping[str, Any]) -> bool:
        eid, action = record.get("endpoint_id"), record.get("action")
        if not eid or action not in ("registered", "deleted"):
            return False
        self.endpoints[eid] = Endpoint(
            eid, record["owner_id"], record.get("workspace_id") or None, record["url"],
            tuple(record.get("event_types") or ()), record.get("secret_salt") or "",
            millis(record.get("created_at")), record.get("description") or "", action == "deleted")
        return True

    def live(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if not e.deleted]


def subscribers(endpoints: Iterable[Endpoint], event: WebhookEvent, owner: str | None,
                workspace: str | None) -> list[Endpoint]:
    """The endpoints that receive ``event`` of a video owned by ``owner`` in ``workspace``."""
    out = []
    for e in endpoints:
        if e.deleted or not e.wants(event.type) or event.occurred_at_ms < e.created_at_ms:
            continue
        if (e.workspace_id is None and owner is not None and e.owner_id == owner) or \
                (e.workspace_id is not None and e.workspace_id == workspace):
            out.append(e)
    return sorted(out, key=lambda e: e.endpoint_id)


# ------------------------------------------------------------ retry timing

def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): initial * 2^(attempt-1), capped, plus jitter."""
    return Backoff(initial, maximum, jitter).jittered(attempt, rng)
