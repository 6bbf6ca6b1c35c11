"""A stage timeout kills a hung child on the real stack, then retries and fails by the configuration.

A worker (intake + validation, its own processes) runs with a tiny validation
timeout from a configuration overlay and an ffprobe that hangs while a flag
file exists: it ignores SIGTERM, never writes a byte and leaves a grandchild
that ignores SIGTERM too. The log must show ``retrying`` then ``failed``, both
naming the timeout; every hung process is gone, the job's scratch directory is
removed, and the stage's only slot (parallel_jobs 1) takes the next upload.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from framelog.stack.services import WorkerService
from framelog.streams import topics
from tests.integration.support import StageWorker, overlay_file, running, skip_backlog, wait_for
from tests.integration.support.pipeline import read_topic, upload
from tests.media.support import clips

pytestmark = pytest.mark.integration

STAGE = "validation"
TIMEOUT = 15             # seconds: a healthy 2 s clip validates within it even at load average 30 on 2 cores
GRACE = "1s"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def hanging(config, stack, tmp_path):
    """(flag file, pids file, scratch dir) of a running TimeoutWorker."""
    if WorkerService(config).is_running():
        pytest.skip("a full worker is running on this stack: its validation group would take the uploads")
    flag, pids, scratch = tmp_path / "hang", tmp_path / "pids", tmp_path / "scratch"
    scratch.mkdir()
    fake = tmp_path / "ffprobe"
    fake.write_text(f"""#!/bin/bash
if [ -e {flag} ]; then
  trap '' TERM            # ignores the polite stop
  echo $$ >> {pids}
  sleep 3600 &            # a grandchild in the same process group, ignoring TERM too
  echo $! >> {pids}
  wait
fi
exec {shutil.which('ffprobe')} "$@"
""")
    fake.chmod(0o755)
    overlay = overlay_file(config, tmp_path, STAGE, {"timeout": f"{TIMEOUT}s", "retry_attempts": 1, "parallel_jobs": 1},
                           {"retry_backoff_initial": "1s", "kill_grace": GRACE})
    env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(overlay), "FRAMELOG_FFPROBE": str(fake),
           "TMPDIR": str(scratch)}
    # uploads earlier tests left queued would each hang for two timeouts ahead of this test's own
    skip_backlog(config, "framelog-intake", (topics.UPLOADS,))
    skip_backlog(config, f"framelog-{STAGE}", tuple(t for _, t in topics.stage_topics(config.priorities, STAGE)))
    flag.touch()
    with running(StageWorker(config, env, STAGE), timeout=180):
        yield flag, pids, scratch


def _transitions(config, video_id: str) -> list[dict]:
    return [t for name, t in read_topic(config, topics.STAGE_TRANSITIONS, video_id)
            if name == "StageTransition" and t["stage"] == STAGE and t["state"] not in ("queued", "progress")]


def test_a_hung_child_is_killed_retried_then_failed(config, hanging, status, tmp_path):  # noqa: F811
    flag, pids, scratch = hanging
    video_id = upload(config, clips.video(tmp_path / "a.mp4", duration=2))
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get(STAGE) or {}).get("state") == "failed", 180)
    assert (view["stages"].get(STAGE) or {}).get("state") == "failed", view
    trs = _transitions(config, video_id)
    assert [(t["state"], t["attempt"]) for t in trs] == [
        ("started", 1), ("retrying", 1), ("started", 2), ("failed", 2)], trs
    retrying, failed = trs[1], trs[3]
    assert retrying["error_type"] == failed["error_type"] == "timeout"
    assert retrying["error_message"] == f"{STAGE} exceeded its {TIMEOUT}s timeout; killed 1 child process group(s)"
    assert failed["error_message"].startswith(f"{STAGE} exceeded its {TIMEOUT}s timeout") and "(after 2 attempts)" in \
        failed["error_message"]
    hung = [int(p) for p in pids.read_text().split()]
    assert len(hung) == 4                                   # two attempts, a shell and its sleep each
    wait_for(lambda: not any(alive(p) for p in hung), "the hung processes to be gone", 10)
    assert [p.name for p in scratch.iterdir() if p.name.startswith(f"framelog-{STAGE}-")] == []

    flag.unlink()                                           # ffprobe behaves again: the slot must be free
    healthy = upload(config, clips.video(tmp_path / "b.mp4", duration=2))
    view = status.wait_for(healthy, lambda v: v is not None and
                           (v["stages"].get(STAGE) or {}).get("state") in ("succeeded", "failed"), 120)
    assert (view["stages"].get(STAGE) or {}).get("state") == "succeeded", view
    assert [t["state"] for t in _transitions(config, healthy)][-2:] == ["started", "succeeded"]
