"""Runs one pipeline stage for each StageRequest: timeout, retries, transitions.

The runner is the only place that knows the stage protocol:

* ``started`` → the job runs in a worker thread (so a 30-minute transcode never
  blocks the consumer's poll loop or heartbeats) → ``progress`` while it runs →
  ``succeeded`` with its outputs, then a StageRequest for the next stage.
* A transient failure (anything but PermanentJobError, a timeout included)
  emits ``retrying`` and re-queues the request with ``attempt + 1`` and a
  ``not_before`` after exponential backoff; the retry goes through the log, so
  a worker crash between attempts loses nothing.
* When attempts run out, or the error is permanent, ``failed`` with the error
  type and a readable reason, and the request goes to the stage's dead-letter
  topic.
* A deleted video (its tombstone, ``framelog.pipeline.jobs.tombstones``) wins: checked
  before the job runs, while it reports progress (which stops its ffmpeg) and
  again after it ended (its writes landed), it ends the request with
  ``cancelled`` (error_type ``video_deleted``; no retry, no dead letter, no
  next stage) after removing the video's objects.

Total attempts are ``1 + retry_attempts`` from the configuration.

A timeout is hard: the job's child processes (each in its own process group,
framelog.core.child_processes) get SIGTERM, then SIGKILL after
``processing_pipeline.kill_grace``; the job's scratch directory is removed and
its thread freed (or abandoned), whether or not the job cooperates.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from framelog.core import child_processes
from framelog.core.backoff import Backoff
from framelog.core.child_processes import ChildGroup
from framelog.core.config import PipelineConfig, PriorityConfig, StageConfig
from framelog.pipeline.agents import metrics
from framelog.pipeline.agents.priority_gate import PriorityGate
from framelog.pipeline.jobs.base import (
    JobCancelled,
    JobContext,
    JobHandler,
    JobTimedOut,
    PermanentJobError,
    public_reason,
)
from framelog.schemas import records
from framelog.schemas.records import StageState
from framelog.streams import topics
from framelog.streams.emitter import AsyncEmitter

log = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL = 2.0     # seconds between progress transitions of one job
PROGRESS_MIN_STEP = 0.05        # ... unless progress moved this much


class ResultStore(Protocol):
    """Where completion markers live (object storage in production)."""

    def get_marker(self, key: str) -> dict[str, str] | None: ...

    def put_marker(self, key: str, outputs: Mapping[str, str]) -> None: ...

    def video_deleted(self, video_id: str) -> bool: ...

    def discard_video(self, video_id: str, stage_values: Mapping[str, str]) -> dict[str, int]: ...


@dataclass(frozen=True)
class StageRequest:
    job_id: str
    video_id: str
    stage: str
    attempt: int
    inputs: dict[str, str]
    not_before: int          # epoch milliseconds; 0 = now
    priority: str = ""       # processing_priorities level; "" = the default

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StageRequest:
        return cls(record["job_id"], record["video_id"], record["stage"], int(record["attempt"]),
                   dict(record.get("inputs") or {}), int(record.get("not_before") or 0),
                   str(record.get("priority") or ""))


@dataclass(frozen=True)
class StageSettings:
    """What a stage runner reads of the configuration; pipeline/worker.py fills it."""

    pipeline: PipelineConfig      # the retries' backoff, the kill grace, the stage after each (``config.pipeline``)
    priorities: PriorityConfig    # the slots' ranks and each level's request topic (``config.priorities``)


def backoff_seconds(attempt: int, pipeline: PipelineConfig) -> float:
    """Exponential backoff before ``attempt`` (2, 3, ...), capped by configuration (``config.pipeline``)."""
    return Backoff(pipeline.retry_backoff_initial, pipeline.retry_backoff_max).delay(attempt - 1)


def next_stage(pipeline: PipelineConfig, stage: str) -> str | None:
    names = pipeline.stage_names
    i = names.index(stage)
    return names[i + 1] if i + 1 < len(names) else None


class StageRunner:
    def __init__(self, settings: StageSettings, stage: StageConfig, handler: JobHandler,
                 emitter: AsyncEmitter, store: ResultStore, scratch_root: Path | None = None,
                 on_complete: Callable[[StageRequest, dict[str, str]], Awaitable[None]] | None = None,
                 fan_out: Callable[[StageRequest, dict[str, str]], Awaitable[None]] | None = None):
        """``on_complete`` runs after the last stage succeeded (it announces the published asset).

        With ``fan_out`` the job only plans the stage's work: its outputs go to ``fan_out``
        (chunked transcoding puts one chunk job per chunk on the log) instead of ending the
        stage; whoever finishes the fanned-out work (the stitch) emits ``succeeded``.
        """
        self.settings = settings
        self.on_complete = on_complete
        self.fan_out = fan_out
        self.stage = stage
        self.handler = handler
        self.emitter = emitter
        self.store = store
        self.scratch_root = scratch_root
        self.executor = ThreadPoolExecutor(max_workers=stage.parallel_jobs,
                                           thread_name_prefix=f"stage-{stage.name}")
        self.gate = PriorityGate(stage.parallel_jobs)   # the stage's slots, highest priority first

    # ------------------------------------------------------------ events

    async def transition(self, req: StageRequest, state: StageState, *, stage: str | None = None,
                         progress: float = 0.0, duration_ms: int | None = None,
                         error_type: str | None = None, error_message: str | None = None,
                         outputs: Mapping[str, str] | None = None, attempt: int | None = None) -> None:
        await self.emitter.emit(topics.STAGE_TRANSITIONS, records.StageTransition(
            video_id=req.video_id, job_id=req.job_id, stage=stage or self.stage.name, state=state,
            attempt=attempt if attempt is not None else req.attempt, progress=progress, duration_ms=duration_ms,
            error_type=error_type, error_message=error_message, outputs=dict(outputs or {})))

    async def request(self, stage: str, req: StageRequest, *, attempt: int, inputs: Mapping[str, str],
                      not_before: int = 0) -> None:
        await self.emitter.emit(topics.stage_topic(self.settings.priorities, stage, req.priority), records.StageRequest(
            job_id=req.job_id, video_id=req.video_id, stage=stage, attempt=attempt, inputs=dict(inputs),
            not_before=not_before, priority=req.priority))

    # ------------------------------------------------------------ the protocol

    async def handle(self, req: StageRequest, original: bytes | None = None) -> None:
        delay = req.not_before / 1000 - time.time()
        if delay > 0:                       # a scheduled retry: honour its backoff
            await asyncio.sleep(delay)
        if await self._dropped_if_deleted(req):
            return

        marker_key = JobContext(req.video_id, req.job_id, self.stage.name, req.attempt, req.inputs,
                                Path(".")).marker_key
        done = await asyncio.get_running_loop().run_in_executor(self.executor, self.store.get_marker, marker_key)
        if done is not None:                # redelivered after success: re-announce, never redo
            log.info("%s job %s already succeeded; re-emitting its outcome", self.stage.name, req.job_id)
            await self._succeeded(req, done, duration_ms=None)
            return
        async with self.gate.slot(self.settings.priorities.rank(req.priority)):
            await self._attempt(req, original)

    async def _attempt(self, req: StageRequest, original: bytes | None) -> None:
        """One attempt in a slot: started, the job, then succeeded, retrying or failed."""
        if await self._dropped_if_deleted(req):     # deleted while it waited for its slot
            return
        marker_key = JobContext(req.video_id, req.job_id, self.stage.name, req.attempt, req.inputs,
                                Path(".")).marker_key
        await self.transition(req, "started")
        started = time.monotonic()
        try:
            outputs = await self._run_job(req)
        except PermanentJobError as exc:
            if await self._dropped_if_deleted(req):     # e.g. its input vanished with the video
                return
            metrics.observe_error(self.stage.name, exc.error_type)
            await self._fail(req, exc.error_type, exc.message, original, started, detail=exc.detail)
            return
        except Exception as exc:           # transient: retry while attempts remain
            if await self._dropped_if_deleted(req):
                return
            error_type = "timeout" if isinstance(exc, (asyncio.TimeoutError, JobCancelled)) else type(exc).__name__
            public, detail = public_reason(exc)     # no server path or tool output for the uploader
            message = (str(exc) if isinstance(exc, JobTimedOut) else
                       f"{self.stage.name} exceeded its {self.stage.timeout:g}s timeout"
                       if error_type == "timeout" else public)
            metrics.observe_error(self.stage.name, error_type)
            if req.attempt < 1 + self.stage.retry_attempts:
                wait = backoff_seconds(req.attempt + 1, self.settings.pipeline)
                log.warning("%s job %s attempt %d failed (%s: %s); retrying in %.1fs%s",
                            self.stage.name, req.job_id, req.attempt, error_type, message, wait,
                            f"\n{detail}" if detail else "")
                await self.transition(req, "retrying", error_type=error_type, error_message=message,
                                      duration_ms=int((time.monotonic() - started) * 1000))
                await self.request(self.stage.name, req, attempt=req.attempt + 1, inputs=req.inputs,
                                   not_before=int((time.time() + wait) * 1000))
            else:
                await self._fail(req, error_type, f"{message} (after {req.attempt} attempts)", original, started,
                                 detail=detail)
            return
        await asyncio.get_running_loop().run_in_executor(self.executor, self.store.put_marker, marker_key, outputs)
        if await self._dropped_if_deleted(req, outputs):   # check after write: deleted while the job ran
            return
        metrics.observe_stage(self.stage.name, time.monotonic() - started, outputs, req.inputs)
        await self._succeeded(req, outputs, duration_ms=int((time.monotonic() - started) * 1000))

    async def _dropped_if_deleted(self, req: StageRequest, outputs: Mapping[str, str] | None = None) -> bool:
        """If the video was deleted: remove its objects (this job's writes too), emit ``cancelled``, True."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self.executor, self.store.video_deleted, req.video_id):
            return False
        removed = await loop.run_in_executor(self.executor, self.store.discard_video, req.video_id,
                                             {**req.inputs, **(outputs or {})})
        log.info("%s job %s dropped: video %s was deleted (removed %s)", self.stage.name, req.job_id,
                 req.video_id, {k: n for k, n in removed.items() if n})
        await self.transition(req, "cancelled", error_type="video_deleted",
                              error_message=f"video {req.video_id} was deleted")
        return True

    def _deleted_meanwhile(self, req: StageRequest) -> bool:
        """The tombstone check of a running job (its thread); a storage hiccup here never fails the job."""
        try:
            return self.store.video_deleted(req.video_id)
        except Exception as exc:  # noqa: BLE001 - the checks before and after the job still hold
            log.warning("%s job %s: deletion check failed: %s", self.stage.name, req.job_id, exc)
            return False

    async def _run_job(self, req: StageRequest) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        workdir = Path(tempfile.mkdtemp(prefix=f"framelog-{self.stage.name}-", dir=self.scratch_root))
        last = {"t": 0.0, "p": 0.0}
        pending: set[asyncio.Future[Any]] = set()

        def progress(fraction: float) -> None:   # called from the job's thread
            if ctx.cancelled.is_set():            # raising here stops the job's ffmpeg
                raise JobCancelled(f"{self.stage.name} job {req.job_id} cancelled after its timeout")
            now = time.monotonic()
            if now - last["t"] < PROGRESS_MIN_INTERVAL and fraction - last["p"] < PROGRESS_MIN_STEP:
                return
            last.update(t=now, p=fraction)
            if self._deleted_meanwhile(req):        # deletion stops a long job's ffmpeg too
                ctx.cancelled.set()
                raise JobCancelled(f"{self.stage.name} job {req.job_id} stopped: video {req.video_id} was deleted")
            fut = asyncio.run_coroutine_threadsafe(
                self.transition(req, "progress", progress=round(min(max(fraction, 0.0), 1.0), 4)), loop)
            pending.add(asyncio.wrap_future(fut, loop=loop))

        ctx = JobContext(req.video_id, req.job_id, self.stage.name, req.attempt, req.inputs, workdir, progress)
        children = ChildGroup(f"{self.stage.name} job {req.job_id}")
        executor = self.executor
        job = loop.run_in_executor(executor, self._run_tracked, ctx, children)
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=self.stage.timeout)
        except TimeoutError:
            ctx.cancelled.set()              # a cooperative job stops at its next progress call ...
            raise await self._hard_stop(req, job, children, executor) from None   # ... a hung one is killed
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_tracked(self, ctx: JobContext, children: ChildGroup) -> dict[str, str]:
        """The handler, in a stage thread, with every child process it starts recorded in ``children``."""
        with child_processes.tracking(children):
            return self.handler.run(ctx)

    async def _hard_stop(self, req: StageRequest, job: asyncio.Future[Any], children: ChildGroup,
                         executor: ThreadPoolExecutor) -> JobTimedOut:
        """Kill the timed-out job's process groups (SIGTERM, SIGKILL after kill_grace) and free its thread.

        The kill runs on the loop's default executor: the stage's own threads may
        all be taken by hung jobs. A job thread that has not returned kill_grace
        after the kill (stuck outside any child process) is abandoned with its
        executor, so the stage's parallel_jobs slots are free for the next request.
        """
        loop = asyncio.get_running_loop()
        grace = self.settings.pipeline.kill_grace
        killed = await loop.run_in_executor(None, children.kill, grace)
        message = (f"{self.stage.name} exceeded its {self.stage.timeout:g}s timeout; "
                   f"killed {len(killed)} child process group(s)")
        try:
            await asyncio.wait_for(asyncio.shield(job), timeout=grace)
        except TimeoutError:
            if self.executor is executor:
                self.executor = ThreadPoolExecutor(max_workers=self.stage.parallel_jobs,
                                                   thread_name_prefix=f"stage-{self.stage.name}")
                executor.shutdown(wait=False)
            message += f"; its thread did not return within {grace:g}s and was abandoned"
        except Exception:  # noqa: BLE001 - the killed job's own error (ffmpeg exit -9, ...) is expected
            pass
        log.warning("%s job %s: %s (pids %s)", self.stage.name, req.job_id, message, killed)
        return JobTimedOut(message)

    async def _succeeded(self, req: StageRequest, outputs: Mapping[str, str], duration_ms: int | None) -> None:
        if self.fan_out is not None:             # planned, not done: the fanned-out jobs end the stage
            await self.fan_out(req, dict(outputs))
            return
        await self.transition(req, "succeeded", progress=1.0, outputs=outputs, duration_ms=duration_ms)
        following = next_stage(self.settings.pipeline, self.stage.name)
        if following:
            inputs = {**req.inputs, **outputs}
            await self.transition(req, "queued", stage=following, attempt=1)
            await self.request(following, req, attempt=1, inputs=inputs)
        elif self.on_complete is not None:
            await self.on_complete(req, {**req.inputs, **outputs})

    async def _fail(self, req: StageRequest, error_type: str, message: str, original: bytes | None,
                    started: float, detail: str = "") -> None:
        """``message`` is shown to the uploader; ``detail`` (tool output) only to operators: the log and
        the dead letter's ``error``."""
        log.error("%s job %s failed: %s: %s%s", self.stage.name, req.job_id, error_type, message,
                  f"\n{detail}" if detail else "")
        await self.transition(req, "failed", error_type=error_type, error_message=message,
                              duration_ms=int((time.monotonic() - started) * 1000))
        if original is not None:
            topic = topics.stage_topic(self.settings.priorities, self.stage.name, req.priority)
            await self.emitter.dead_letter(topic, original, key=req.video_id, reason=f"stage_failed:{error_type}",
                                           error=f"{message}\n{detail}" if detail else message)
