"""`framelog reprocess VIDEO [--from STAGE]`: run a video's pipeline again, from any stage.

After a fix to a stage (a new profile, a better tone mapping, a failed video
whose cause is gone), an operator re-runs the video from that stage without
re-uploading it. The inputs of a stage are everything its predecessors handed
on: the upload's own fields plus the outputs of each earlier stage's
``succeeded`` transition, as the stage runner accumulates them. All of that is
on the log, so the request is rebuilt from ``video.uploads`` and
``video.stage-transitions`` alone.

The new run gets a fresh job id: completion markers belong to a job, so a new
job redoes its stages instead of re-emitting the old outcomes. A deleted video
is refused, and so is a stage whose predecessors never succeeded.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from framelog.core import object_keys
from framelog.core.config import PipelineConfig, StreamsConfig
from framelog.core.ids import validate_video_id
from framelog.pipeline.agents.pipeline import upload_inputs
from framelog.schemas import records
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.producer import EventProducer
from framelog.streams.replay import ReplayedTable


class ReprocessError(Exception):
    """The video cannot be reprocessed from that stage; the message says why."""


@dataclass
class VideoHistory:
    """What the log holds about one video's uploads and stages."""
    upload: dict[str, Any] | None = None
    deleted: bool = False
    # job id -> stage -> outputs of its latest succeeded transition, in log order of jobs
    succeeded: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


class _HistoryTable(ReplayedTable):
    def __init__(self, streams: StreamsConfig, video_id: str):
        super().__init__(streams, (topics.UPLOADS, topics.STAGE_TRANSITIONS), group_prefix="framelog-reprocess")
        self.video_id = video_id
        self.history = VideoHistory()

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if not isinstance(record, DecodedRecord) or record.key != self.video_id:
            return
        h, v = self.history, record.value
        if record.name == "UploadCompleted":
            h.upload, h.deleted = v, False
        elif record.name == "VideoDeleted":
            h.deleted = True
        elif record.name == "StageTransition" and v["state"] == "succeeded":
            jobs = h.succeeded.pop(v["job_id"], {})
            jobs[v["stage"]] = dict(v.get("outputs") or {})
            h.succeeded[v["job_id"]] = jobs          # re-inserted: the latest job ends last


def read_history(streams: StreamsConfig, video_id: str, timeout: float = 60.0) -> VideoHistory:
    """What the log holds about ``video_id`` (``config.streams``)."""
    validate_video_id(video_id)
    with _HistoryTable(streams, video_id) as table:
        if not table.wait_ready(timeout):
            raise TimeoutError(f"the log of {video_id} was not read within {timeout:g}s")
        return table.history


def stage_inputs(pipeline: PipelineConfig, history: VideoHistory, stage: str) -> dict[str, str]:
    """The inputs ``stage`` of ``config.pipeline`` gets in a re-run: the upload's fields plus every earlier
    stage's outputs."""
    names = pipeline.stage_names
    if stage not in names:
        raise ReprocessError(f"unknown stage {stage!r}; stages: {', '.join(names)}")
    if history.deleted:
        raise ReprocessError("the video was deleted")
    if history.upload is None:
        raise ReprocessError("no upload of this video is on the log")
    inputs = upload_inputs(history.upload)
    earlier = names[:names.index(stage)]
    if not earlier:
        return inputs
    # the latest job in which every earlier stage succeeded
    for job_id in reversed(list(history.succeeded)):
        done = history.succeeded[job_id]
        if all(s in done for s in earlier):
            for s in earlier:
                inputs.update(done[s])
            return inputs
    missing = [s for s in earlier if not any(s in d for d in history.succeeded.values())]
    raise ReprocessError(f"no run of this video got past {missing[0] if missing else earlier[-1]}; "
                         f"reprocess from an earlier stage")


def check_inputs_exist(store: ObjectStore, inputs: Mapping[str, str], first_stage: str) -> None:
    """Earlier stages' staging outputs must still be there (they are discarded once a video publishes)."""
    for value in inputs.values():
        if (value.startswith(object_keys.WORK + "/") and store.head(value) is None
                and next(iter(store.keys(value + "/")), None) is None):
            raise ReprocessError(f"an earlier stage's output is gone ({value}): staging is discarded once a video "
                                 f"is published; reprocess from {first_stage}")


def reprocess(streams: StreamsConfig, video_id: str, from_stage: str | None = None, *,
              store: ObjectStore | Callable[[], ObjectStore], producer: EventProducer | None = None,
              timeout: float = 60.0) -> str:
    """Queue a new job for ``video_id`` at ``from_stage`` (the first stage by default), at the upload's
    priority; returns its job id. ``streams``: ``config.streams`` (the log, and the stages of its
    ``topics.pipeline``); ``store``: the object store, or how to open it (only a re-run from a later stage
    looks at the earlier stages' outputs)."""
    pipeline = streams.topics.pipeline
    first = pipeline.stage_names[0]
    stage = from_stage or first
    history = read_history(streams, video_id, timeout)
    inputs = stage_inputs(pipeline, history, stage)
    if stage != first:
        check_inputs_exist(store if isinstance(store, ObjectStore) else store(), inputs, first)
    priority = str((history.upload or {}).get("priority") or "")
    job_id = str(uuid.uuid4())
    own = producer is None
    producer = producer or EventProducer(streams)
    try:
        producer.enqueue(topics.STAGE_TRANSITIONS, records.StageTransition(
            video_id=video_id, job_id=job_id, stage=stage, state="queued", attempt=1))
        producer.enqueue(topics.stage_topic(streams.topics.priorities, stage, priority), records.StageRequest(
            job_id=job_id, video_id=video_id, stage=stage, attempt=1, inputs=inputs, priority=priority))
        producer.flush(timeout)
    finally:
        if own:
            producer.close()
    return job_id
