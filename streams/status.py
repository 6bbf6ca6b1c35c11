"""Video status as a table folded from ``video.stage-transitions``.

The log is the durable table: a StatusTable replays the topic from the
beginning in a consumer group of its own (unique per instance) and never
commits, so a restarted process rebuilds exactly the same table. It counts as
*ready* once it has consumed up to the end offsets that existed when it
started; callers (the API, ``framelog status``) wait for that with a deadline
instead of answering from a half-loaded table.

Folding rules, per video and stage (``StatusFold``, no I/O):

* a new ``job_id`` whose event is later than everything of the current job
  starts over; events of an older job are ignored;
* within a stage, an event applies only if it orders after the current one by
  (attempt, terminal-for-the-attempt, event_time, state rank, progress): a lower attempt
  is stale, and a 'started'/'progress' arriving after the same attempt
  'succeeded'/'failed'/'retrying' is stale;
* overall: ``failed`` if a stage failed (error names the stage and reason),
  ``ready`` once the pipeline's last stage succeeded, else ``processing``.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from confluent_kafka import OFFSET_INVALID, TopicPartition

from framelog.config import Config
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord, EventConsumer

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "retrying"})      # each ends its attempt
STATE_RANK = {"queued": 1, "started": 2, "progress": 3, "retrying": 4, "succeeded": 5, "failed": 6}


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    return int(value or 0)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


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

    def _ordered(self, video: VideoStatus) -> list[StageStatus]:
        rank = {name: i for i, name in enumerate(self.stage_names)}
        return sorted(video.stages.values(), key=lambda s: (rank.get(s.stage, len(rank)), s.stage))

    def view(self, video_id: str) -> dict[str, Any] | None:
        """The API's answer for one video, or None if the log never mentioned it."""
        video = self.videos.get(video_id)
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


class _ReplayConsumer(EventConsumer):
    """An EventConsumer that also reports where it stands against the partitions' end offsets.

    Positions come from librdkafka (not from the records returned), so
    tombstones and dead-lettered records count as consumed too.
    """

    def partitions(self, topic: str, timeout: float) -> list[int]:
        meta = self._consumer.list_topics(topic, timeout=timeout)
        t = meta.topics.get(topic)
        if t is None or t.error is not None:
            raise RuntimeError(f"topic {topic}: {t.error if t is not None else 'not found'}")
        return sorted(t.partitions)

    def watermarks(self, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
        return {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                for p in self.partitions(topic, timeout)}

    def positions(self) -> dict[tuple[str, int], int]:
        assigned = self._consumer.assignment()
        if not assigned:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(assigned)}


class StatusTable:
    """A live, replayed view of ``video.stage-transitions``; thread-safe reads."""

    def __init__(self, config: Config, *, topic: str = topics.STAGE_TRANSITIONS, group_id: str | None = None):
        self.config = config
        self.topic = topic
        self.group_id = group_id or f"framelog-status-{uuid.uuid4().hex[:12]}"
        self._fold = StatusFold(config.pipeline.stage_names)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets: dict[int, tuple[int, int]] | None = None    # partition -> (low, high) at start
        self._progress_cond = threading.Condition()
        self.last_error: str | None = None
        self.records = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "StatusTable":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"status-table-{self.group_id}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "StatusTable":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """True once the table has caught up with the log as it was at start; False at the deadline."""
        return self._ready.wait(timeout)

    # ------------------------------------------------------------ reads

    def get(self, video_id: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._fold.view(video_id))

    def video_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._fold.videos)

    def wait_for(self, video_id: str, predicate: Callable[[dict[str, Any] | None], bool],
                 timeout: float) -> dict[str, Any] | None:
        """Wait until ``predicate(view)`` holds for a video (the view may be None); returns the last view."""
        deadline = time.monotonic() + timeout
        view = self.get(video_id)
        while not predicate(view):
            left = deadline - time.monotonic()
            if left <= 0:
                return view
            with self._progress_cond:
                self._progress_cond.wait(min(left, 0.5))
            view = self.get(video_id)
        return view

    def apply(self, records: Iterable[DecodedRecord | Mapping[str, Any]]) -> None:
        """Fold records (DecodedRecords of StageTransition, or plain dicts); used by the thread and tests."""
        with self._lock:
            for r in records:
                if isinstance(r, DecodedRecord):
                    if r.name != "StageTransition":
                        continue
                    r = r.value
                self._fold.apply(r)
                self.records += 1
        with self._progress_cond:
            self._progress_cond.notify_all()

    # ------------------------------------------------------------ the consuming thread

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = _ReplayConsumer(self.config, self.group_id, [self.topic],
                                           **{"auto.offset.reset": "earliest"})
                if self._targets is None:
                    self._targets = consumer.watermarks(self.topic, timeout=10.0)
                    log.info("status table %s: replaying %s up to %s", self.group_id, self.topic, self._targets)
                backoff = 0.5
                while not self._stop.is_set():
                    self.apply(consumer.poll_batch(1000, 0.2))
                    if not self._ready.is_set() and self._caught_up(consumer):
                        log.info("status table %s: caught up (%d records)", self.group_id, self.records)
                        self.last_error = None
                        self._ready.set()
            except Exception as exc:  # noqa: BLE001 - keep replaying through broker trouble
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("status table %s: %s; retrying in %.1fs", self.group_id, self.last_error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                # a replacement consumer replays from the beginning again: the fold is idempotent
                # (an event never orders after itself), so the table stays as it is meanwhile

    def _caught_up(self, consumer: _ReplayConsumer) -> bool:
        targets = self._targets or {}
        pending = {p: hi for p, (lo, hi) in targets.items() if hi > lo}
        if not pending:
            return True
        positions = consumer.positions()
        for p, hi in pending.items():
            pos = positions.get((self.topic, p), OFFSET_INVALID)
            if pos < 0 or pos < hi:
                return False
        return True


def read_status(config: Config, video_id: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """Replay the log once and return one video's status (``framelog status``); TimeoutError if not caught up."""
    with StatusTable(config) as table:
        if not table.wait_ready(timeout):
            raise TimeoutError(f"the status table did not catch up with {table.topic} within {timeout:g}s"
                               + (f" (last error: {table.last_error})" if table.last_error else ""))
        return table.get(video_id)
