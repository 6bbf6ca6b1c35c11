"""Faust agents: intake (uploads → first stage) and one agent per pipeline stage."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust

from framelog.core.backoff import OUTAGE_BACKOFF, Backoff
from framelog.core.config import CdnConfig, PriorityConfig, StageConfig
from framelog.pipeline.agents.stage import StageRequest, StageRunner
from framelog.pipeline.jobs import tombstones
from framelog.pipeline.jobs.staging import discard_staging
from framelog.schemas import records
from framelog.schemas.codec import AvroCodec
from framelog.sinks.object_store import STORE_ERRORS, ObjectStore
from framelog.streams import topics
from framelog.streams.app import raw_topic
from framelog.streams.emitter import AsyncEmitter
from framelog.streams.exceptions import DecodeError, DeliveryError, ValidationError

log = logging.getLogger(__name__)

# Job ids are derived from the upload event, so a redelivered upload maps to
# the same job and its stages' completion markers.
JOB_NAMESPACE = uuid.UUID("6f1c8f55-2b0e-4c57-9a8e-1f5d2f0c7a11")


# The log or the store being away must not skip a record. An agent that raises is restarted by
# Faust's supervisor with the record it was handling acknowledged, so its offset is committed past
# and the video's job is lost (found by the fault suite: a broker outage left videos "processing"
# forever with every group's lag at zero). So the handling of a record is retried here, the very
# same record, until it goes through. Handling is idempotent: job ids come from the upload event and
# a stage that already succeeded only re-announces its outcome (its completion marker).
OUTAGES: tuple[type[Exception], ...] = (DeliveryError, *STORE_ERRORS)


async def until_handled(what: str, handle: Callable[[], Awaitable[object]], backoff: Backoff = OUTAGE_BACKOFF) -> int:
    """Await ``handle()`` until it does not fail for an outage of the log or the store; the retries it took."""
    failures = 0
    while True:
        try:
            await handle()
            return failures
        except OUTAGES as exc:
            failures += 1
            delay = backoff.jittered(failures)
            log.warning("%s: %s; the same record again in %.1fs (retry %d)", what, exc, delay, failures)
            await asyncio.sleep(delay)       # backoff while the broker or the store is away


async def _decode_or_dead_letter(codec: AvroCodec, emitter: AsyncEmitter, event: faust.EventT):
    """Decoded (name, record), or None once the record is on the dead-letter topic (retried through an
    outage of the log: the agent must not crash and have the undecodable record acknowledged unparked)."""
    msg = event.message
    try:
        return codec.decode_for_topic(msg.topic, msg.value)
    except (DecodeError, ValidationError) as exc:
        log.warning("dead-lettering %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        failure = exc
    await until_handled(f"dead letter of {msg.topic}[{msg.partition}]@{msg.offset}", lambda: emitter.dead_letter(
        msg.topic, msg.value, key=msg.key, reason=failure.reason, error=str(failure), partition=msg.partition,
        offset=msg.offset))
    return None


def upload_inputs(upload: Mapping[str, Any]) -> dict[str, str]:
    """The first stage's inputs, from an UploadCompleted (``framelog reprocess`` rebuilds them the same way)."""
    return {"object_key": upload["object_key"], "sha256": upload["sha256"],
            "size_bytes": str(upload["size_bytes"]), "content_type": upload["content_type"],
            "owner_id": upload["owner_id"]}


@dataclass(frozen=True)
class IntakeSettings:
    """What the intake agent reads of the configuration; pipeline/worker.py fills it."""

    first_stage: str              # where every upload starts (``config.pipeline.stages[0].name``)
    priorities: PriorityConfig    # that stage's request topic of each level, the default level
    partitions: int               # of video.uploads


def register_intake(app: faust.App, settings: IntakeSettings, codec: AvroCodec, emitter: AsyncEmitter,
                    store: ObjectStore) -> None:
    """video.uploads → a StageTransition (queued) and a StageRequest for the first stage.

    The upload of a video deleted before intake saw it (its tombstone exists)
    is dropped: its objects (in ``store``) go, the first stage says ``cancelled``.
    """
    first = settings.first_stage
    source = raw_topic(app, topics.UPLOADS, settings.partitions)

    @app.agent(source, name="intake")
    async def intake(stream: faust.StreamT) -> None:
        async for event in stream.events():
            decoded = await _decode_or_dead_letter(codec, emitter, event)
            if decoded is None:
                continue
            name, upload = decoded
            if name != "UploadCompleted":
                continue
            await until_handled(f"intake of video {upload['video_id']}", lambda: admit(upload))  # noqa: B023

    async def admit(upload: Mapping[str, Any]) -> None:
        """One upload: dropped if its video was deleted meanwhile, else queued for the first stage."""
        video_id = upload["video_id"]
        job_id = str(uuid.uuid5(JOB_NAMESPACE, upload["event_id"]))
        if await asyncio.get_running_loop().run_in_executor(None, tombstones.is_deleted, store, video_id):
            await asyncio.get_running_loop().run_in_executor(None, tombstones.purge_video, store, video_id)
            await emitter.emit(topics.STAGE_TRANSITIONS, records.StageTransition(
                video_id=video_id, job_id=job_id, stage=first, state="cancelled", attempt=1,
                error_type="video_deleted", error_message=f"video {video_id} was deleted"))
            log.info("video %s: upload dropped, the video was deleted", video_id)
            return
        inputs = upload_inputs(upload)
        await emitter.emit(topics.STAGE_TRANSITIONS, records.StageTransition(
            video_id=video_id, job_id=job_id, stage=first, state="queued", attempt=1))
        priority = upload.get("priority") or ""
        await emitter.emit(topics.stage_topic(settings.priorities, first, priority), records.StageRequest(
            job_id=job_id, video_id=video_id, stage=first, attempt=1, inputs=inputs, priority=priority))
        log.info("video %s: job %s queued for %s (priority %s)", video_id, job_id, first,
                 priority or settings.priorities.default)


def register_stage(app: faust.App, priorities: PriorityConfig, stage: StageConfig, runner: StageRunner,
                   codec: AvroCodec, emitter: AsyncEmitter, partitions: Mapping[str, int]) -> None:
    """pipeline.<stage>[.<priority>] → StageRunner: one agent per priority topic (a level of ``priorities``,
    with its count in ``partitions``), the runner's priority gate lets parallel_jobs run at once in this
    worker, highest priority first."""
    for priority, name in topics.stage_topics(priorities, stage.name):
        _register_stage_topic(app, priorities, stage, runner, codec, emitter, priority, name, partitions[name])


def _register_stage_topic(app: faust.App, priorities: PriorityConfig, stage: StageConfig, runner: StageRunner,
                          codec: AvroCodec, emitter: AsyncEmitter, priority: str, name: str, partitions: int) -> None:
    source = raw_topic(app, name, partitions)
    agent_name = f"stage-{stage.name}" if priority == priorities.default else f"stage-{stage.name}-{priority}"

    @app.agent(source, name=agent_name, concurrency=stage.parallel_jobs)
    async def run_stage(stream: faust.StreamT) -> None:
        async for event in stream.events():
            decoded = await _decode_or_dead_letter(codec, emitter, event)
            if decoded is None:
                continue
            req, original = StageRequest.from_record(decoded[1]), event.message.value
            await until_handled(f"{stage.name} job {req.job_id}",
                                lambda: runner.handle(req, original=original))  # noqa: B023


def asset_publisher(cdn: CdnConfig, emitter: AsyncEmitter, store: ObjectStore):
    """After the last stage: announce AssetPublished, ask every edge of ``cdn`` to warm the video, and
    discard its staging in ``store`` (framelog.pipeline.jobs.staging) once the announcement is on the log."""

    async def publish(req: StageRequest, outputs: dict[str, str]) -> None:
        asset = json.loads(outputs["asset"])
        warm = json.loads(outputs.get("warm_paths", "[]"))
        if outputs.get("preview_master_key"):   # played while processing: the edges hold the growing playlists
            await emitter.emit(topics.CDN_COMMANDS, records.CacheInvalidate(
                video_id=req.video_id, paths=[p for p in warm if p.endswith(".m3u8")], reason="published"))
        await emitter.emit(topics.ASSETS, records.AssetPublished.from_avro(asset), key=req.video_id)
        await emitter.emit(topics.CDN_COMMANDS, records.CacheWarm(
            video_id=req.video_id, paths=warm, providers=sorted(cdn.providers),
            trigger="video_upload_complete"))
        removed = await asyncio.get_running_loop().run_in_executor(None, discard_staging, store, req.video_id)
        log.info("video %s published (%d renditions); %d staging objects discarded", req.video_id,
                 len(asset["renditions"]), removed)

    return publish
