"""Video status as a table folded from ``video.stage-transitions`` (and ``VideoDeleted``).

The log is the durable table: a StatusTable is a ``ReplayedTable`` (see
``streams.replay``): it replays the topics from the beginning and counts as
ready once caught up, so a restarted process rebuilds the same table and
callers (the API, ``framelog status``) never answer from a half-loaded one.

Folding rules, per video and stage (``StatusFold``, no I/O):

* a new ``job_id`` whose event is later than everything of the current job
  starts over; events of an older job are ignored;
* within a stage, an event applies only if it orders after the current one by
  (attempt, terminal-for-the-attempt, event_time, state rank, progress): a lower attempt
  is stale, and a 'started'/'progress' arriving after the same attempt
  'succeeded'/'failed'/'retrying' is stale;
* a stage ``cancelled`` (its request dropped because the video was deleted)
  ends the job; the VideoDeleted that caused it says ``deleted``;
* overall: ``deleted`` once a VideoDeleted was seen (for good: a transition
  of a job still running at deletion changes nothing), else ``failed`` if a
  stage failed (error names the stage and reason), ``ready`` once the
  pipeline's last stage succeeded, else ``processing``.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from framelog.core.config import StreamsConfig
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.replay import ReplayedTable

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "retrying", "cancelled"})      # each ends its attempt
STATE_RANK = {"queued": 1, "started": 2, "progress": 3, "retrying": 4, "succeeded": 5, "failed": 6, "cancelled": 7}


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value or 0)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass
class StageStatus:
    stage: str
    state: str
    attempt: int
    progress: float
    event_time_ms: int
    job_id: str
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    def order_key(self) -> tuple[int, bool, int, int, float]:
        return (self.attempt, self.state in TERMINAL, self.event_time_ms, STATE_RANK.get(self.state, 0), self.progress)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["updated_at"] = _iso(d.pop("event_time_ms"))
        return d


@dataclass
class VideoStatus:
    video_id: str
    job_id: str
    stages: dict[str, StageStatus] = field(default_factory=dict)
    last_event_ms: int = 0
    old_jobs: set[str] = field(default_factory=set)


class StatusFold:
    """The pure fold of StageTransition records into per-video status (not thread-safe by itself)."""

    def __init__(self, stage_names: Sequence[str]):
        self.stage_names = tuple(stage_names)
        self.videos: dict[str, VideoStatus] = {}
        self.deleted: dict[str, int] = {}          # video id -> when it was deleted (epoch ms)
        self.applied = 0
        self.ignored = 0

    def apply(self, record: Mapping[str, Any]) -> bool:
        """Fold one StageTransition; False when it was stale (or unusable) and ignored."""
        state = record.get("state")
        video_id, job_id, stage = record.get("video_id"), record.get("job_id"), record.get("stage")
        if state not in STATE_RANK or not video_id or not stage:
            self.ignored += 1                       # 'unknown' (a newer writer's symbol) carries no usable state
            return False
        t = _millis(record.get("event_time"))
        video = self.videos.get(video_id)
        if video is None:
            video = self.videos[video_id] = VideoStatus(video_id, job_id)
        elif job_id != video.job_id:
            if job_id in video.old_jobs or t <= video.last_event_ms:
                self.ignored += 1                   # a late event of an older job
                return False
            video.old_jobs.add(video.job_id)        # a new job: start over
            video.job_id, video.stages = job_id, {}
        new = StageStatus(stage=stage, state=state, attempt=int(record.get("attempt") or 1),
                          progress=float(record.get("progress") or 0.0), event_time_ms=t, job_id=job_id,
                          error_type=record.get("error_type"), error_message=record.get("error_message"),
                          duration_ms=record.get("duration_ms"), outputs=dict(record.get("outputs") or {}))
        if state == "succeeded":
            new.progress = 1.0
        current = video.stages.get(stage)
        if current is not None:
            if new.order_key() <= current.order_key():
                self.ignored += 1
                return False
            if new.state not in TERMINAL and new.attempt == current.attempt:
                new.progress = max(new.progress, current.progress if current.state == "progress" else 0.0)
        video.stages[stage] = new
        video.last_event_ms = max(video.last_event_ms, t)
        self.applied += 1
        return True

    def delete(self, video_id: str, event_time_ms: int) -> None:
        """Fold a VideoDeleted: the video's status is ``deleted`` from now on (the earliest deletion counts)."""
        self.deleted[video_id] = min(event_time_ms, self.deleted.get(video_id, event_time_ms))

    def _ordered(self, video: VideoStatus) -> list[StageStatus]:
        rank = {name: i for i, name in enumerate(self.stage_names)}
        return sorted(video.stages.values(), key=lambda s: (rank.get(s.stage, len(rank)), s.stage))

    def view(self, video_id: str) -> dict[str, Any] | None:
        """The API's answer for one video, or None if the log never mentioned it."""
        video = self.videos.get(video_id)
        deleted_ms = self.deleted.get(video_id)
        if deleted_ms is not None:
            return {"video_id": video_id, "job_id": video.job_id if video else None, "state": "deleted",
                    "current_stage": None, "progress": 0.0,
                    "stages": {s.stage: s.to_dict() for s in self._ordered(video)} if video else {},
                    "error": None, "updated_at": _iso(deleted_ms), "deleted_at": _iso(deleted_ms)}
        if video is None:
            return None
        stages = self._ordered(video)
        failed = [s for s in stages if s.state == "failed"]
        last = self.stage_names[-1] if self.stage_names else None
        error = None
        if failed:
            f = max(failed, key=lambda s: s.event_time_ms)
            state, current = "failed", f.stage
            error = {"stage": f.stage, "error_type": f.error_type, "error_message": f.error_message,
                     "attempt": f.attempt}
        elif last is not None and last in video.stages and video.stages[last].state == "succeeded":
            state, current = "ready", last
        else:
            state = "processing"
            active = [s for s in stages if s.state != "succeeded"]
            current = (max(active, key=lambda s: s.event_time_ms) if active else stages[-1]).stage
        known = self.stage_names
        done = sum(1 for n in known if n in video.stages and video.stages[n].state == "succeeded")
        partial = sum(video.stages[n].progress for n in known
                      if n in video.stages and video.stages[n].state not in ("succeeded", "failed"))
        progress = 1.0 if state == "ready" else (done + partial) / len(known) if known else 0.0
        return {
            "video_id": video_id,
            "job_id": video.job_id,
            "state": state,
            "current_stage": current,
            "progress": round(min(progress, 1.0), 4),
            "stages": {s.stage: s.to_dict() for s in stages},
            "error": error,
            "updated_at": _iso(video.last_event_ms),
        }


class StatusTable(ReplayedTable):
    """A live, replayed view of ``video.stage-transitions`` (and deletions on ``video.uploads``)."""

    def __init__(self, streams: StreamsConfig, stage_names: Sequence[str], *, topic: str = topics.STAGE_TRANSITIONS,
                 group_id: str | None = None):
        """``streams``: ``config.streams``; ``stage_names``: ``config.pipeline.stage_names``, in order."""
        super().__init__(streams, (topic, topics.UPLOADS), group_prefix="framelog-status", group_id=group_id)
        self.topic = topic
        self._fold_state = StatusFold(stage_names)
        self._watchers: dict[str, list[Callable[[dict[str, Any] | None, dict[str, Any]], None]]] = {}

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if isinstance(record, DecodedRecord):
            if record.name == "VideoDeleted":
                self._fold_state.delete(record.value["video_id"], _millis(record.value.get("event_time")))
                self._notify(record.value["video_id"], None)
                return
            if record.name != "StageTransition":
                return
            record = record.value
        if self._fold_state.apply(record):
            self._notify(record["video_id"], record)

    def _notify(self, video_id: str, transition: Mapping[str, Any] | None) -> None:
        """Tell the video's watchers (called with the lock held, so keep callbacks short)."""
        watchers = self._watchers.get(video_id)
        if not watchers:
            return
        view = copy.deepcopy(self._fold_state.view(video_id)) or {}
        change = None
        if transition is not None:
            change = {k: transition.get(k) for k in ("stage", "state", "attempt", "progress", "job_id",
                                                     "error_type", "error_message", "duration_ms")}
            change["at"] = _iso(_millis(transition.get("event_time")))
        for notify in list(watchers):
            notify(change, view)

    def watch(self, video_id: str, notify: Callable[[dict[str, Any] | None, dict[str, Any]], None]
              ) -> tuple[dict[str, Any] | None, Callable[[], None]]:
        """The video's status now, and from then on ``notify(transition or None, status)`` after every change
        (None: the video was deleted); no change falls between the two. Returns (status, unwatch)."""
        with self._lock:
            view = copy.deepcopy(self._fold_state.view(video_id))
            self._watchers.setdefault(video_id, []).append(notify)

        def unwatch() -> None:
            with self._lock:
                left = [w for w in self._watchers.get(video_id, []) if w is not notify]
                if left:
                    self._watchers[video_id] = left
                else:
                    self._watchers.pop(video_id, None)
        return view, unwatch

    # ------------------------------------------------------------ reads

    def get(self, video_id: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._fold_state.view(video_id))

    def video_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._fold_state.videos)

    def wait_for(self, video_id: str, predicate: Callable[[dict[str, Any] | None], bool],
                 timeout: float) -> dict[str, Any] | None:
        """Wait until ``predicate(view)`` holds for a video (the view may be None); returns the last view."""
        self.wait_until(lambda: predicate(self.get(video_id)), timeout)
        return self.get(video_id)


def read_status(streams: StreamsConfig, stage_names: Sequence[str], video_id: str,
                timeout: float = 30.0) -> dict[str, Any] | None:
    """Replay the log once and return one video's status (``framelog status``); TimeoutError if not caught up."""
    with StatusTable(streams, stage_names) as table:
        if not table.wait_ready(timeout):
            raise TimeoutError(f"the status table did not catch up with {table.topic} within {timeout:g}s"
                               + (f" (last error: {table.last_error})" if table.last_error else ""))
        return table.get(video_id)
