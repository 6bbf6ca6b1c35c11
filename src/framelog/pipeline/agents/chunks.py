"""Chunked transcoding on the log: the fan-out, the chunk workers, the stitch.

* **fan-out** (the transcoding stage's runner, ``StageRunner(fan_out=...)``): its job
  (pipeline/jobs/chunks.ChunkPlanJob) wrote the plan; this puts one ChunkRequest per
  chunk (and one for the audio) on ``pipeline.transcoding.chunks``, each on a partition of
  the least loaded chunk worker (ChunkPlacement), each with a ``queued`` ChunkTransition.
* **chunk workers** (``framelog worker --stage chunks``, the ``framelog-chunks`` consumer
  group; start as many as there are cores or machines): one chunk at a time, under the
  transcoding stage's timeout (hard: the ffmpeg process group is killed), emitting
  started / succeeded / failed / cancelled. A worker killed mid-chunk never committed
  that chunk's offset: after the session timeout the group hands the partition to
  another worker, which redoes that chunk only (done chunks have markers).
* **stitch** (``framelog-stitch``): a Faust table keyed by video (rebuilt from its
  changelog on restart) folds the transitions (processors/chunk_ledger.py); it
  re-requests a failed or timed-out chunk alone after the stage's backoff, grows
  one EVENT playlist per rung from its leading chunks done (a rung joins the master
  with its first chunk), and when every job is in writes the
  per-rung VOD playlists and the master, then ends the transcoding stage
  (``succeeded`` + the next stage's request) or fails it with the chunk's time range.

An agent builds no ffmpeg command and touches no file: the jobs do (in threads).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from framelog.core import child_processes
from framelog.core.child_processes import ChildGroup
from framelog.core.config import CdnConfig, HlsConfig, MediaConfig, PipelineConfig, PriorityConfig
from framelog.pipeline.agents import metrics
from framelog.pipeline.agents.pipeline import OUTAGES, _decode_or_dead_letter, until_handled
from framelog.pipeline.agents.stage import StageRequest, backoff_seconds, next_stage
from framelog.pipeline.jobs import chunks as jobs
from framelog.pipeline.jobs.base import (
    JobCancelled,
    JobContext,
    JobSettings,
    JobTimedOut,
    PermanentJobError,
    public_reason,
)
from framelog.pipeline.jobs.store import S3ResultStore
from framelog.processors import chunk_ledger as ledger
from framelog.processors.chunk_placement import MemberLoad, place_jobs
from framelog.processors.preview import preview_paths
from framelog.schemas import records
from framelog.sinks.object_store import ObjectStore
from framelog.streams import topics
from framelog.streams.app import raw_topic
from framelog.streams.emitter import AsyncEmitter
from framelog.streams.topics import TopicSpec

log = logging.getLogger(__name__)

STAGE = jobs.STAGE
CHUNKS_GROUP = "chunks"
STITCH_GROUP = "stitch"
STITCH_TABLE = "chunk_jobs"
DELETION_CHECK_INTERVAL = 5.0     # seconds between tombstone checks of a running chunk
CHANGELOG_COMPACTION = {"segment.ms": str(3_600_000), "min.cleanable.dirty.ratio": "0.1"}


def stitch_changelog(partitions: int) -> TopicSpec:
    """The stitch table's changelog (Faust names it ``<app id>-<table>-changelog``): co-partitioned with
    video.chunk-transitions (``partitions``: that topic's), compacted to one record per video. The composition
    root creates it (the apps never declare topics themselves)."""
    return TopicSpec(f"framelog-{STITCH_GROUP}-{STITCH_TABLE}-changelog", (), compacted=True,
                     partitions=partitions, extra_config=CHANGELOG_COMPACTION,
                     description="chunk jobs per video (done, attempts, state), the stitch group's table")


def _kind(kind: str) -> records.ChunkKind:
    return "audio" if kind == jobs.AUDIO else "video"


def _transition(plan: jobs.Plan, spec: jobs.ChunkJobSpec, state: Any, attempt: int,
                **fields: Any) -> records.ChunkTransition:
    return records.ChunkTransition(video_id=plan.video_id, job_id=plan.job_id, chunk_index=spec.index,
                     chunk_count=plan.chunk_count, job_count=len(plan.chunks), kind=_kind(spec.kind),
                     start_seconds=spec.start, end_seconds=spec.end, state=state, attempt=attempt,
                     plan_key=jobs.plan_key(plan.video_id, plan.job_id), **fields)


class ChunkPlacement:
    """Where new chunk jobs go on pipeline.transcoding.chunks (of ``partitions``): the least loaded chunk worker's
    partition (processors/chunk_placement.py), from the workers' group as the broker describes it when the jobs
    are queued (``group_loads``; None, or a group that cannot be read: by index)."""

    def __init__(self, partitions: int, group_loads: Callable[[], list[MemberLoad]] | None = None):
        self.partitions = partitions
        self.group_loads = group_loads

    async def partitions_for(self, count: int, *, first_index: int = 0) -> list[int]:
        members: list[MemberLoad] = []
        if self.group_loads is not None:
            try:
                members = await asyncio.to_thread(self.group_loads)
            except Exception as exc:        # placement is an optimisation: the jobs go out regardless
                log.warning("chunk workers' group unreadable (%s: %s): chunk jobs placed by index",
                            type(exc).__name__, exc)
        return place_jobs(count, members, self.partitions, first_index=first_index)


async def request_chunk(partition: int, emitter: AsyncEmitter, plan: jobs.Plan, spec: jobs.ChunkJobSpec, *,
                        attempt: int, not_before: int = 0) -> None:
    """``queued``, then the ChunkRequest on ``partition`` of pipeline.transcoding.chunks (ChunkPlacement's)."""
    await emitter.emit(topics.CHUNK_TRANSITIONS, _transition(plan, spec, "queued", attempt))
    rungs = [] if spec.kind == jobs.AUDIO else [
        records.ChunkRung(name=r.name, width=r.width, height=r.height, video_bitrate=r.video_bitrate,
                          maxrate=r.maxrate, bufsize=r.bufsize, codec=r.codec) for r in plan.rungs]
    record = records.ChunkRequest(video_id=plan.video_id, job_id=plan.job_id, chunk_index=spec.index,
                       chunk_count=plan.chunk_count, job_count=len(plan.chunks), kind=_kind(spec.kind),
                       start_seconds=spec.start, end_seconds=spec.end, attempt=attempt,
                       first_segment=spec.first_segment, source_key=plan.source_key,
                       plan_key=jobs.plan_key(plan.video_id, plan.job_id), rungs=rungs,
                       not_before=not_before, priority=plan.priority)
    await emitter.emit(topics.CHUNK_REQUESTS, record, key=f"{plan.video_id}/{spec.index}", partition=partition)


def chunk_fan_out(placement: ChunkPlacement, emitter: AsyncEmitter, store: ObjectStore):
    """The transcoding runner's ``fan_out``: one ChunkRequest per job of the plan its job wrote, dealt over the
    chunk workers by ``placement``."""

    async def fan_out(req: StageRequest, outputs: dict[str, str]) -> None:
        plan = await asyncio.to_thread(jobs.load_plan, store, outputs["chunk_plan_key"])
        specs = sorted(plan.chunks, key=lambda c: c.kind != jobs.AUDIO)   # the audio first: a few seconds, and
        placed = await placement.partitions_for(len(specs))                 # the first chunk needs it to play
        for spec, partition in zip(specs, placed, strict=True):
            await request_chunk(partition, emitter, plan, spec, attempt=1)
        await emitter.emit(topics.STAGE_TRANSITIONS, records.StageTransition(
            video_id=req.video_id, job_id=req.job_id, stage=STAGE, state="progress", attempt=req.attempt,
            progress=0.0, outputs=outputs))
        log.info("video %s: %d chunk(s) of %gs%s queued on partitions %s", req.video_id, plan.chunk_count,
                 plan.chunk_seconds, " and the audio" if plan.has_audio else "", placed)

    return fan_out


# ---------------------------------------------------------------- the chunk workers

class ChunkRunner:
    """Runs one ChunkRequest: deletion and marker checks, the job under a hard timeout, its transitions."""

    def __init__(self, settings: JobSettings, emitter: AsyncEmitter, store: S3ResultStore,
                 scratch_root: Path | None = None):
        """``settings``: the jobs' sections; the transcoding stage's timeout and the kill grace come from its
        ``pipeline``."""
        self.pipeline = settings.pipeline
        self.emitter = emitter
        self.store = store
        self.handler = jobs.ChunkJob(settings, self.store.objects)
        self.stage = settings.pipeline.stage(STAGE)
        self.scratch_root = scratch_root
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    async def emit(self, record: dict[str, Any], state: Any, **fields: Any) -> None:
        event = records.ChunkTransition(video_id=record["video_id"], job_id=record["job_id"],
                          chunk_index=record["chunk_index"], chunk_count=record["chunk_count"],
                          job_count=record.get("job_count") or 0, kind=record["kind"],
                          start_seconds=record["start_seconds"], end_seconds=record["end_seconds"], state=state,
                          attempt=record["attempt"], plan_key=record["plan_key"], worker=self.worker, **fields)
        await self.emitter.emit(topics.CHUNK_TRANSITIONS, event)

    async def handle(self, record: dict[str, Any]) -> None:
        delay = int(record.get("not_before") or 0) / 1000 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        video_id, index = record["video_id"], int(record["chunk_index"])
        if await self._cancelled_if_deleted(record):
            return
        marker = jobs.chunk_marker_key(video_id, record["job_id"], index)
        done = await asyncio.to_thread(self.store.get_marker, marker)
        if done is not None:                   # redelivered after success (a crash before the commit)
            await self.emit(record, "succeeded", outputs=done)
            return
        await self.emit(record, "started")
        started = time.monotonic()
        try:
            outputs = await self._run(record)
        except PermanentJobError as exc:
            metrics.observe_error(CHUNKS_GROUP, exc.error_type)
            log.error("video %s chunk %d failed: %s\n%s", video_id, index, exc.message, exc.detail)
            await self.emit(record, "failed", retryable=False, error_type=exc.error_type, error_message=exc.message,
                            duration_ms=int((time.monotonic() - started) * 1000))
            return
        except JobCancelled as exc:
            if await self._cancelled_if_deleted(record):
                return
            await self._failed(record, "timeout", str(exc), "", started)
            return
        except Exception as exc:  # noqa: BLE001 - transient: the stitch decides on a retry
            public, detail = public_reason(exc)
            await self._failed(record, type(exc).__name__, public, detail, started)
            return
        await asyncio.to_thread(self.store.put_marker, marker, outputs)
        if await self._cancelled_if_deleted(record, outputs):   # deleted while the chunk ran
            return
        metrics.observe_stage(CHUNKS_GROUP, time.monotonic() - started,
                              {"renditions": ",".join(r["name"] for r in record.get("rungs") or []) or record["kind"]})
        await self.emit(record, "succeeded", outputs=outputs, duration_ms=int((time.monotonic() - started) * 1000))

    async def _cancelled_if_deleted(self, record: dict[str, Any], outputs: dict[str, str] | None = None) -> bool:
        """If the video was deleted: remove its objects when the chunk wrote ``outputs``, emit ``cancelled``,
        True (the stage runner's ``_dropped_if_deleted`` for a chunk)."""
        video_id = record["video_id"]
        if not await asyncio.to_thread(self.store.video_deleted, video_id):
            return False
        if outputs is not None:
            removed = await asyncio.to_thread(self.store.discard_video, video_id, outputs)
            log.info("video %s chunk %s dropped: the video was deleted (removed %s)", video_id,
                     record["chunk_index"], {k: n for k, n in removed.items() if n})
        await self.emit(record, "cancelled", error_type="video_deleted", error_message=f"video {video_id} was deleted")
        return True

    async def _failed(self, record: dict[str, Any], error_type: str, message: str, detail: str,
                      started: float) -> None:
        metrics.observe_error(CHUNKS_GROUP, error_type)
        log.warning("video %s chunk %s attempt %s failed (%s: %s)%s", record["video_id"], record["chunk_index"],
                    record["attempt"], error_type, message, f"\n{detail}" if detail else "")
        await self.emit(record, "failed", retryable=True, error_type=error_type, error_message=message,
                        duration_ms=int((time.monotonic() - started) * 1000))

    async def _run(self, record: dict[str, Any]) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        workdir = Path(tempfile.mkdtemp(prefix="framelog-chunk-", dir=self.scratch_root))
        checked = {"t": time.monotonic()}

        def progress(fraction: float) -> None:          # the job's thread: cancellation points
            if ctx.cancelled.is_set():
                raise JobCancelled(f"chunk {record['chunk_index']} of video {record['video_id']} was stopped")
            if time.monotonic() - checked["t"] >= DELETION_CHECK_INTERVAL:
                checked["t"] = time.monotonic()
                if self.store.video_deleted(record["video_id"]):
                    ctx.cancelled.set()
                    raise JobCancelled(f"video {record['video_id']} was deleted")

        inputs = {"plan_key": record["plan_key"], "chunk_index": str(record["chunk_index"])}
        ctx = JobContext(record["video_id"], record["job_id"], CHUNKS_GROUP, int(record["attempt"]), inputs,
                         workdir, progress)
        children = ChildGroup(f"chunk {record['chunk_index']} of {record['video_id']}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk")

        def tracked() -> dict[str, str]:
            with child_processes.tracking(children):
                return self.handler.run(ctx)

        job = loop.run_in_executor(executor, tracked)
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=self.stage.timeout)
        except TimeoutError:
            ctx.cancelled.set()
            grace = self.pipeline.kill_grace
            killed = await loop.run_in_executor(None, children.kill, grace)
            try:
                await asyncio.wait_for(asyncio.shield(job), timeout=grace)
            except Exception:  # noqa: BLE001 - the killed job's own error is expected
                pass
            raise JobTimedOut(f"chunk exceeded the {STAGE} timeout of {self.stage.timeout:g}s; "
                              f"killed {len(killed)} child process group(s)") from None
        finally:
            executor.shutdown(wait=False)
            await asyncio.to_thread(_remove, workdir)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def register_chunk_worker(app: faust.App, runner: ChunkRunner, partitions: int, codec: Any,
                          emitter: AsyncEmitter) -> None:
    """pipeline.transcoding.chunks (of ``partitions``) → ``runner``, one chunk at a time per worker process."""
    source = raw_topic(app, topics.CHUNK_REQUESTS, partitions)

    @app.agent(source, name="chunk-worker", concurrency=1)
    async def chunk_worker(stream: faust.StreamT) -> None:
        async for event in stream.events():
            decoded = await _decode_or_dead_letter(codec, emitter, event)
            if decoded is None or decoded[0] != "ChunkRequest":
                continue
            record = decoded[1]
            await until_handled(f"chunk {record['chunk_index']} of video {record['video_id']}",
                                lambda: runner.handle(record))  # noqa: B023


# ---------------------------------------------------------------- the stitch

@dataclass(frozen=True)
class StitchSettings:
    """What the stitch reads of the configuration; pipeline/worker.py fills it."""

    pipeline: PipelineConfig        # transcoding's retries and their backoff, the stage after it
    priorities: PriorityConfig      # that stage's request topic of each level
    media: MediaConfig              # whether a video plays while processing
    hls: HlsConfig                  # the stitched playlists' type
    cdn: CdnConfig                  # the published preview's caching rules
    transition_partitions: int      # of video.chunk-transitions, the stitch table's changelog's too


class Stitcher:
    """Does what the ledger decides: retries, growing playlists, the final stitch, the stage's end."""

    def __init__(self, settings: StitchSettings, emitter: AsyncEmitter, store: ObjectStore,
                 placement: ChunkPlacement):
        self.settings = settings
        self.emitter = emitter
        self.store = store
        self.placement = placement
        self.stage = settings.pipeline.stage(STAGE)

    async def stage_transition(self, record: dict[str, Any], state: Any, *, stage: str = STAGE,
                               **fields: Any) -> None:
        await self.emitter.emit(topics.STAGE_TRANSITIONS, records.StageTransition(
            video_id=record["video_id"], job_id=record["job_id"], stage=stage, state=state, attempt=1, **fields))

    async def act(self, entry: ledger.Entry, record: dict[str, Any], action: ledger.Action) -> None:
        video_id = record["video_id"]
        if action.kind == "progress":
            await self._preview(entry, record)
            await self.stage_transition(record, "progress", progress=min(action.progress, 0.99),
                                        outputs=entry.preview)
        elif action.kind == "retry":
            plan = await asyncio.to_thread(jobs.load_plan, self.store, entry.plan_key)
            spec = plan.job(action.index)
            wait = backoff_seconds(action.attempt, self.settings.pipeline)
            await self.emitter.emit(topics.CHUNK_TRANSITIONS, _transition(
                plan, spec, "retrying", action.attempt - 1, error_type=action.error_type,
                error_message=action.message))
            [partition] = await self.placement.partitions_for(1, first_index=spec.index)
            await request_chunk(partition, self.emitter, plan, spec, attempt=action.attempt,
                                not_before=int((time.time() + wait) * 1000))
            log.warning("video %s: chunk %d failed (%s: %s); attempt %d in %.1fs", video_id, action.index,
                        action.error_type, action.message, action.attempt, wait)
        elif action.kind == "fail":
            log.error("video %s: transcoding failed: %s", video_id, action.message)
            await self.stage_transition(record, "failed", error_type=action.error_type, error_message=action.message)
        elif action.kind == "cancel":
            await self.stage_transition(record, "cancelled", error_type=action.error_type,
                                        error_message=action.message)
        elif action.kind == "stitch":
            await self._finish(entry, record)

    async def _preview(self, entry: ledger.Entry, record: dict[str, Any]) -> None:
        """Publish every rung's leading chunks for playback while processing (issue 13 pt 4), a rung joining the
        master with its first chunk; the edges cache playlists for an hour, so each growth purges the master
        and the playlists that grew (cdn.commands)."""
        if not self.settings.media.transcoding.playable_while_processing:
            return
        plan = await asyncio.to_thread(jobs.load_plan, self.store, entry.plan_key)
        before = dict(entry.previewed_rungs)
        published, outputs = await asyncio.to_thread(jobs.publish_preview, self.store, self.settings.cdn, plan,
                                                     set(entry.done), before)
        if outputs and published != before:
            entry.previewed_rungs, entry.preview = published, outputs
            entry.previewed = int(outputs["preview_chunks"])
            await self.emitter.emit(topics.CDN_COMMANDS, records.CacheInvalidate(
                video_id=plan.video_id, paths=preview_paths(plan.video_id, outputs, before), reason="preview"))
            log.info("video %s playable while processing: %s of %d chunk(s)", plan.video_id,
                     ", ".join(f"{name} {n}" for name, n in published.items()), plan.chunk_count)

    async def _finish(self, entry: ledger.Entry, record: dict[str, Any]) -> None:
        if entry.preview:                       # the preview stays playable until the publication replaces it
            await self._preview(entry, record)
        plan = await asyncio.to_thread(jobs.load_plan, self.store, entry.plan_key)
        outputs = await asyncio.to_thread(jobs.stitch, self.store, plan, self.settings.hls.playlist_type)
        outputs.update(entry.preview)
        outputs["chunk_encodes"] = str(entry.encodes)
        await self.stage_transition(record, "succeeded", progress=1.0, outputs=outputs,
                                    duration_ms=entry.duration_ms(int(time.time() * 1000)))
        following = next_stage(self.settings.pipeline, STAGE)
        if following:
            req = StageRequest(plan.job_id, plan.video_id, STAGE, 1, plan.stage_inputs, 0, plan.priority)
            await self.stage_transition(record, "queued", stage=following)
            topic = topics.stage_topic(self.settings.priorities, following, req.priority)
            await self.emitter.emit(topic, records.StageRequest(
                job_id=req.job_id, video_id=req.video_id, stage=following, attempt=1,
                inputs={**req.inputs, **outputs}, not_before=0, priority=req.priority))
        log.info("video %s: %d chunk(s) stitched (%d encodes)", plan.video_id, plan.chunk_count, entry.encodes)


def register_stitch(app: faust.App, settings: StitchSettings, codec: Any, emitter: AsyncEmitter,
                    store: ObjectStore, placement: ChunkPlacement) -> None:
    """video.chunk-transitions → the chunk ledger (a Faust table keyed by video) → the Stitcher (its
    objects in ``store``, a retried chunk's partition from ``placement``)."""
    spec = stitch_changelog(settings.transition_partitions)
    table = app.Table(STITCH_TABLE, default=dict, partitions=spec.partitions, key_type=str, value_type=dict,
                      changelog_topic=app.topic(spec.name, partitions=spec.partitions, key_serializer="json",
                                                value_serializer="json", compacting=True))
    stitcher = Stitcher(settings, emitter, store, placement)
    retries = settings.pipeline.stage(STAGE).retry_attempts
    source = raw_topic(app, topics.CHUNK_TRANSITIONS, settings.transition_partitions)

    @app.agent(source, name="stitch")
    async def stitch(stream: faust.StreamT) -> None:
        async for event in stream.events():
            decoded = await _decode_or_dead_letter(codec, emitter, event)
            if decoded is None or decoded[0] != "ChunkTransition":
                continue
            record = decoded[1]
            await until_handled(f"chunk transition of video {record['video_id']}",
                                lambda: handle(record))  # noqa: B023

    async def handle(record: dict[str, Any]) -> None:
        """Fold, act, then write the table: a crash or an outage in between repeats the actions (at least
        once; they are idempotent), never skips them."""
        video_id = record["video_id"]
        entry, actions = ledger.fold(ledger.Entry.from_dict(table[video_id]), record, retry_attempts=retries)
        for action in actions:
            try:
                await stitcher.act(entry, record, action)
            except OUTAGES:
                raise                        # the log or the store is away: the same record again
            except Exception as exc:  # noqa: BLE001 - one video's trouble must not stop the others
                log.exception("video %s: stitch action %s failed", video_id, action.kind)
                if action.kind == "stitch":
                    await stitcher.stage_transition(record, "failed", error_type=type(exc).__name__,
                                                    error_message=public_reason(exc)[0])
        table[video_id] = entry.to_dict()
