"""StageRunner.handle and a deleted video: the request ends 'cancelled', never 'failed', no retry, no next stage.

The store and emitter are in-memory stand-ins for one function's collaborators
(the real stack runs the same path in tests/integration/test_api_deletion.py).
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from framelog.core.config import get_config
from framelog.pipeline.agents.stage import StageRequest, StageRunner, StageSettings
from framelog.pipeline.jobs.base import JobContext, PermanentJobError
from tests.unit.support.stage_fakes import VID, Emitter, Handler, Store


def run(work: Callable[[JobContext], dict[str, str]], store: Store, tmp_path) -> tuple[Emitter, Handler]:
    config = get_config()
    stage = dataclasses.replace(config.pipeline.stage("transcoding"), retry_attempts=2)
    handler, emitter = Handler(work), Emitter()
    runner = StageRunner(StageSettings(config.pipeline, config.priorities), stage, handler, emitter, store,
                         scratch_root=tmp_path)
    req = StageRequest("job-1", VID, "transcoding", 1, {"object_key": f"uploads/{VID}/x",
                                                        "source_key": f"videos/2026/12/720p/{VID}.mp4"}, 0)
    asyncio.run(runner.handle(req, original=b"request"))
    return emitter, handler


def test_a_request_for_a_deleted_video_does_not_run(tmp_path):
    store = Store()
    store.deleted = True
    emitter, handler = run(lambda ctx: {"hls_prefix": "x"}, store, tmp_path)
    assert handler.runs == 0
    assert emitter.states() == [("transcoding", "cancelled")] and emitter.requests() == []
    assert store.discarded and not emitter.dead


def test_deleted_while_running_removes_its_writes_and_stops_the_chain(tmp_path):
    store = Store()

    def work(ctx: JobContext) -> dict[str, str]:
        store.deleted = True                    # the DELETE lands while the job runs
        return {"hls_prefix": f"work/{VID}/job-1/transcoding/attempt-1/hls"}

    emitter, handler = run(work, store, tmp_path)
    assert handler.runs == 1
    assert emitter.states() == [("transcoding", "started"), ("transcoding", "cancelled")]
    assert emitter.requests() == []                                     # no next stage
    [values] = store.discarded
    assert values["hls_prefix"].startswith(f"work/{VID}/") and values["source_key"].endswith(f"/{VID}.mp4")


@pytest.mark.parametrize("error", [PermanentJobError("truncated", "source gone"), FileNotFoundError("source gone")])
def test_a_job_that_fails_because_its_video_was_deleted_is_cancelled_not_failed(error, tmp_path):
    store = Store()

    def work(ctx: JobContext) -> dict[str, str]:
        store.deleted = True
        raise error

    emitter, _ = run(work, store, tmp_path)
    assert emitter.states() == [("transcoding", "started"), ("transcoding", "cancelled")]
    assert emitter.requests() == [] and emitter.dead == []               # no retry, no dead letter


def test_a_live_video_still_fails_and_dead_letters(tmp_path):
    def work(ctx: JobContext) -> dict[str, str]:
        raise PermanentJobError("truncated", "bad upload")

    emitter, _ = run(work, Store(), tmp_path)
    assert emitter.states() == [("transcoding", "started"), ("transcoding", "failed")] and emitter.dead


def test_a_deletion_stops_a_running_job_at_its_next_progress_report(tmp_path, monkeypatch):
    from framelog.pipeline.agents import stage as stage_module

    monkeypatch.setattr(stage_module, "PROGRESS_MIN_INTERVAL", 0.0)
    store = Store()
    reached: list[float] = []

    def work(ctx: JobContext) -> dict[str, str]:
        for i in range(1, 101):
            if i == 30:
                store.deleted = True
            ctx.progress(i / 100)
            reached.append(i / 100)
        return {"hls_prefix": "x"}

    emitter, _ = run(work, store, tmp_path)
    assert reached and max(reached) < 0.5                               # stopped, not run to the end
    assert emitter.states()[0] == ("transcoding", "started") and emitter.states()[-1] == ("transcoding", "cancelled")
    assert not [s for s in emitter.states() if s[1] in ("failed", "retrying", "succeeded")] and emitter.dead == []
