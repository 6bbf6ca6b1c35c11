"""StageRunner's timeout kills a job whose child hangs (ignores SIGTERM, never reports progress).

Real child processes, in-memory store and emitter (tests/unit/support/stage_fakes.py);
the real stack runs the same path in tests/integration/test_stage_timeout.py.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time

from framelog.core.config import get_config
from framelog.pipeline.agents.stage import StageRequest, StageRunner, StageSettings
from framelog.pipeline.jobs.base import JobContext
from framelog.processors.media import ffmpeg_commands as fc
from tests.unit.support.stage_fakes import VID, Emitter, Handler, Store


def hang_script(tmp_path) -> tuple[str, object]:
    """A fake ffmpeg (any arguments) that ignores SIGTERM and leaves a grandchild that ignores it too."""
    pids = tmp_path / "pids"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/bash\ntrap '' TERM\necho $$ >> {pids}\nsleep 300 &\necho $! >> {pids}\nwait\n")
    script.chmod(0o755)
    return str(script), pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def runner_for(work, tmp_path, *, retry_attempts: int, timeout: float = 0.5, grace: float = 0.3):
    config = dataclasses.replace(get_config())
    config = dataclasses.replace(config, pipeline=dataclasses.replace(
        config.pipeline, kill_grace=grace, retry_backoff_initial=0.0, retry_backoff_max=0.0))
    stage = dataclasses.replace(config.pipeline.stage("transcoding"), timeout=timeout,
                                retry_attempts=retry_attempts, parallel_jobs=1)
    handler, emitter = Handler(work), Emitter()
    runner = StageRunner(StageSettings(config.pipeline, config.priorities), stage, handler, emitter, Store(),
                         scratch_root=tmp_path)
    return runner, handler, emitter


def request(attempt: int = 1) -> StageRequest:
    return StageRequest("job-1", VID, "transcoding", attempt, {"object_key": f"uploads/{VID}/x"}, 0)


def test_a_hung_child_is_killed_at_the_timeout_and_the_job_retried(tmp_path):
    hang, pids_file = hang_script(tmp_path)
    workdirs = []

    def work(ctx: JobContext) -> dict[str, str]:
        workdirs.append(ctx.workdir)
        (ctx.workdir / "partial.ts").write_bytes(b"x" * 100)
        fc.run_json([hang, "-v", "error", "in.mp4"])              # an ffprobe that never returns by itself
        return {"hls_prefix": "x"}

    runner, handler, emitter = runner_for(work, tmp_path / "scratch", retry_attempts=1)
    (tmp_path / "scratch").mkdir()
    started = time.monotonic()
    asyncio.run(runner.handle(request(), original=b"request"))
    took = time.monotonic() - started
    assert took < 0.5 + 0.3 + 0.3 + 2, took                  # timeout + grace (+ the thread's return), not 300 s
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2 and not any(alive(p) for p in pids), pids
    assert emitter.states() == [("transcoding", "started"), ("transcoding", "retrying")]
    [retrying] = [e for n, e in emitter.sent if n == "StageTransition" and e["state"] == "retrying"]
    assert retrying["error_type"] == "timeout"
    assert retrying["error_message"] == "transcoding exceeded its 0.5s timeout; killed 1 child process group(s)"
    assert emitter.requests() == ["transcoding"]              # the retry, attempt 2
    assert [e["attempt"] for n, e in emitter.sent if n == "StageRequest"] == [2]
    assert workdirs and not workdirs[0].exists() and list((tmp_path / "scratch").iterdir()) == []
    # the only slot (parallel_jobs 1) is free: the next job runs at once
    assert runner.executor.submit(lambda: "free").result(timeout=2) == "free"


def test_the_last_attempt_fails_and_dead_letters(tmp_path):
    hang, pids_file = hang_script(tmp_path)

    def work(ctx: JobContext) -> dict[str, str]:
        fc.run_ffmpeg([hang, "-i", "in.mp4", "out.ts"], duration=10, progress=lambda f: None)  # no progress ever
        return {}

    runner, _, emitter = runner_for(work, tmp_path / "s", retry_attempts=1)
    (tmp_path / "s").mkdir()
    asyncio.run(runner.handle(request(attempt=2), original=b"request"))
    assert emitter.states() == [("transcoding", "started"), ("transcoding", "failed")]
    [failed] = [e for n, e in emitter.sent if n == "StageTransition" and e["state"] == "failed"]
    assert failed["error_type"] == "timeout" and "exceeded its 0.5s timeout" in failed["error_message"]
    assert failed["error_message"].endswith("(after 2 attempts)") and emitter.dead
    assert not any(alive(int(p)) for p in pids_file.read_text().split())


def test_a_thread_stuck_outside_a_child_is_abandoned_and_its_slot_replaced(tmp_path):
    release = __import__("threading").Event()

    def work(ctx: JobContext) -> dict[str, str]:
        release.wait(30)                                       # no child to kill: pure Python hang
        return {}

    runner, _, emitter = runner_for(work, tmp_path, retry_attempts=0, grace=0.2)
    first = runner.executor
    try:
        asyncio.run(runner.handle(request(), original=b"request"))
        [failed] = [e for n, e in emitter.sent if n == "StageTransition" and e["state"] == "failed"]
        assert "was abandoned" in failed["error_message"] and "killed 0 child" in failed["error_message"]
        assert runner.executor is not first
        assert runner.executor.submit(lambda: "free").result(timeout=2) == "free"
    finally:
        release.set()


def test_children_run_in_their_own_process_group():
    from framelog.core import child_processes

    out = child_processes.run(["bash", "-c", "ps -o pgid= -p $$"])
    assert int(out.stdout) != os.getpgrp() and out.returncode == 0
    assert isinstance(out, subprocess.CompletedProcess)


def test_a_cancelled_job_starts_no_further_upload(tmp_path):
    """upload_dir asks before every file: once the job is cancelled, nothing more goes to S3."""
    import pytest

    from framelog.pipeline.jobs.base import JobCancelled
    from framelog.sinks.object_store import ObjectStore

    class Client:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def upload_file(self, path, bucket, key, ExtraArgs=None):  # noqa: N803 - boto3's name
            self.keys.append(key)
            if len(self.keys) == 2:
                ctx.cancelled.set()                 # the stage timed out during the second file

    for i in range(5):
        (tmp_path / "out" / f"segment_{i}.ts").parent.mkdir(exist_ok=True)
        (tmp_path / "out" / f"segment_{i}.ts").write_bytes(b"x")
    ctx = JobContext(VID, "job-1", "transcoding", 1, {}, tmp_path)
    store = ObjectStore.__new__(ObjectStore)
    store.client, store.bucket = Client(), "b"
    with pytest.raises(JobCancelled):
        store.upload_dir(tmp_path / "out", "p", ctx.check_cancelled)
    assert store.client.keys == ["p/segment_0.ts", "p/segment_1.ts"]
