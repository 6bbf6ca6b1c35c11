"""The stitch step's bookkeeping of one video's chunk jobs, as a pure fold over ChunkTransitions.

One entry per video (the stitch group's Faust table, rebuilt from its changelog):
which job it belongs to, how many jobs the plan has, which are done, how many
attempts each took, and whether the video's transcoding is still running, done,
failed or cancelled. :func:`fold` applies one transition and says what the stitch
must do about it (retry a chunk, stitch the video, fail it, ...); the agent does it.

Retries: a chunk job gets the transcoding stage's ``retry_attempts`` (so
``1 + retry_attempts`` attempts), each under the stage's ``timeout`` (enforced by the
chunk worker). A failure the source itself causes (``retryable`` false: a corrupt
stretch) fails the video at once, with the chunk's time range in the reason.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class Action:
    kind: str                    # "retry", "stitch", "fail", "cancel", "progress"
    index: int = -1              # the chunk a retry or failure is about
    attempt: int = 0             # the attempt to request (retry)
    error_type: str = ""
    message: str = ""
    progress: float = 0.0


@dataclass
class Entry:
    job_id: str = ""
    plan_key: str = ""
    jobs: int = 0                # every job of the plan: the video chunks and the audio job
    chunks: int = 0              # video chunks
    done: list[int] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)     # chunk index (str: JSON keys) -> highest attempt
    state: str = RUNNING
    encodes: int = 0             # chunk attempts that started (a crash redoes a chunk: counted twice)
    previewed: int = 0           # leading chunks of the lowest rung published for playback while processing
    previewed_rungs: dict[str, int] = field(default_factory=dict)   # per rung, its leading chunks published
    preview: dict[str, str] = field(default_factory=dict)     # the preview_* outputs once published
    started_ms: int = 0          # epoch ms of the job's first transition (its chunks queued): the stage's duration

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "plan_key": self.plan_key, "jobs": self.jobs, "chunks": self.chunks,
                "done": sorted(self.done), "attempts": dict(self.attempts), "state": self.state,
                "encodes": self.encodes, "previewed": self.previewed,
                "previewed_rungs": dict(self.previewed_rungs), "preview": dict(self.preview),
                "started_ms": self.started_ms}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Entry:
        d = d or {}
        return cls(str(d.get("job_id", "")), str(d.get("plan_key", "")), int(d.get("jobs", 0)),
                   int(d.get("chunks", 0)), [int(i) for i in d.get("done", [])],
                   {str(k): int(v) for k, v in (d.get("attempts") or {}).items()}, str(d.get("state", RUNNING)),
                   int(d.get("encodes", 0)), int(d.get("previewed", 0)),
                   {str(k): int(v) for k, v in (d.get("previewed_rungs") or {}).items()},
                   {str(k): str(v) for k, v in (d.get("preview") or {}).items()}, int(d.get("started_ms", 0)))

    def duration_ms(self, now_ms: int) -> int | None:
        """The chunked transcoding stage's wall time so far (None if its start was never seen)."""
        return max(0, now_ms - self.started_ms) if self.started_ms else None


def _range(record: Mapping[str, Any]) -> str:
    from framelog.processors.media.decode_check import hms

    return f"{hms(float(record['start_seconds']))}-{hms(float(record['end_seconds']))}"


def _epoch_ms(when: datetime | int | None) -> int:
    if isinstance(when, datetime):
        return int(when.timestamp() * 1000)
    return int(when or 0)


def fold(entry: Entry, record: Mapping[str, Any], *, retry_attempts: int) -> tuple[Entry, list[Action]]:
    """Apply one ChunkTransition; returns the new entry and what to do."""
    state = record["state"]
    job_id = record["job_id"]
    if job_id != entry.job_id:
        if state != "queued":
            return entry, []                 # a transition of an older job of this video
        entry = Entry(job_id=job_id, started_ms=_epoch_ms(record.get("event_time")))   # a new job: start over
    entry.chunks = int(record["chunk_count"])
    entry.jobs = max(entry.jobs, int(record.get("job_count") or 0), int(record["chunk_index"]) + 1, entry.chunks)
    entry.plan_key = record.get("plan_key") or entry.plan_key
    if entry.state != RUNNING:
        return entry, []                     # late duplicates after the end change nothing
    index = int(record["chunk_index"])
    attempt = int(record.get("attempt") or 1)
    key = str(index)
    entry.attempts[key] = max(entry.attempts.get(key, 0), attempt)
    if state == "started":
        entry.encodes += 1
        return entry, []
    if state == "succeeded":
        if index in entry.done:
            return entry, []
        entry.done.append(index)
        if len(entry.done) >= entry.jobs:
            entry.state = DONE
            return entry, [Action("stitch")]
        return entry, [Action("progress", index=index, progress=round(len(entry.done) / entry.jobs, 4))]
    if state == "cancelled":
        entry.state = CANCELLED
        return entry, [Action("cancel", index=index, error_type=record.get("error_type") or "video_deleted",
                              message=record.get("error_message") or "the video was deleted")]
    if state == "failed":
        if attempt < entry.attempts[key]:
            return entry, []                 # a stale attempt's failure: a newer one is under way
        error_type = record.get("error_type") or "error"
        reason = record.get("error_message") or error_type
        if record.get("retryable", True) and attempt < 1 + retry_attempts:
            return entry, [Action("retry", index=index, attempt=attempt + 1, error_type=error_type, message=reason)]
        entry.state = FAILED
        what = "the audio" if record.get("kind") == "audio" else f"chunk {index} ({_range(record)})"
        message = reason if error_type == "corrupt" else f"{what}: {reason} (after {attempt} attempts)"
        return entry, [Action("fail", index=index, error_type=error_type, message=message)]
    return entry, []
