"""Priorities on the real stack: with a stage's slots full, a high-priority upload queued after
low-priority ones starts before them.

A worker (intake + validation) runs with validation's parallel_jobs at 1 (an overlay) and an
ffprobe that takes a few seconds per call, so one validation holds the only slot while the
others queue. The order comes from the log: the ``started`` transitions' event times.
"""
from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime

import pytest

from framelog.stack.services import WorkerService
from framelog.streams import topics
from tests.integration.support import StageWorker, overlay_file, running
from tests.integration.support.pipeline import read_topic, upload
from tests.media.support import clips

pytestmark = pytest.mark.integration

STAGE = "validation"
PROBE_SECONDS = 2        # each ffprobe call of the slow validation


def _ms(value) -> int:
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    return int(value)


@pytest.fixture
def slow_worker(config, stack, tmp_path):
    if WorkerService(config).is_running():
        pytest.skip("a full worker is running on this stack: its validation group would take the uploads")
    fake = tmp_path / "ffprobe"
    fake.write_text(f"#!/bin/bash\nsleep {PROBE_SECONDS}\nexec {shutil.which('ffprobe')} \"$@\"\n")
    fake.chmod(0o755)
    overlay = overlay_file(config, tmp_path, STAGE, {"timeout": "120s", "parallel_jobs": 1})
    env = {**os.environ, "FRAMELOG_CONFIG_OVERLAY": str(overlay), "FRAMELOG_FFPROBE": str(fake)}
    with running(StageWorker(config, env, STAGE), timeout=180) as worker:
        yield worker


def _stage_state(status, video_id: str, states: tuple[str, ...], timeout: float):  # noqa: F811
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get(STAGE) or {}).get("state") in states, timeout)
    assert (view["stages"].get(STAGE) or {}).get("state") in states, view
    return view


def _started_at(config, video_id: str) -> int:
    [started] = [t for name, t in read_topic(config, topics.STAGE_TRANSITIONS, video_id)
                 if name == "StageTransition" and t["stage"] == STAGE and t["state"] == "started"]
    return _ms(started["event_time"])


def test_high_priority_upload_queued_last_starts_first(config, slow_worker, status, tmp_path):  # noqa: F811
    src = clips.video(tmp_path / "clip.mp4", duration=1, audio=False)
    first = upload(config, src, priority="low")
    _stage_state(status, first, ("started", "progress"), 60)               # the only slot is taken
    lows = [upload(config, src, priority="low") for _ in range(2)]
    high = upload(config, src, priority="high")
    for video_id in (first, *lows, high):
        _stage_state(status, video_id, ("succeeded",), 120)
    order = sorted((first, *lows, high), key=lambda v: _started_at(config, v))
    assert order[:2] == [first, high], {v: _started_at(config, v) for v in order}
    assert set(order[2:]) == set(lows)
    requests = {t: read_topic(config, t, high) for _, t in topics.stage_topics(config.priorities, STAGE)}
    assert [t for t, recs in requests.items() if recs] == ["pipeline.validation.high"]
    assert read_topic(config, "pipeline.validation.high", high)[0][1]["priority"] == "high"


def test_queue_size_metric_has_a_series_per_priority(config, stack):
    from framelog.pipeline.agents.metrics import QueueSizeCollector

    samples = [m for f in QueueSizeCollector(config.streams).collect() for m in f.samples]
    assert {(m.labels["priority"], m.labels["stage"]) for m in samples} == {
        (p, s) for s in config.pipeline.stage_names for p in config.priorities.levels}


def test_the_api_takes_the_priority_from_the_request_or_the_workspace(config, stack, tmp_path):
    """POST /videos: ``priority`` in Upload-Metadata, else the workspace's level; an unknown one is a 400."""
    import dataclasses

    from framelog.processors.identity import Keyring, mint_token
    from framelog_client.upload import ResumableUploader, UploadError
    from tests.integration.support.upload_api import LiveApi, upload_records

    cfg = dataclasses.replace(config, priorities=dataclasses.replace(config.priorities,
                                                                      workspaces={"newsroom": "high"}))
    src = tmp_path / "small.bin"
    src.write_bytes(b"x" * 1024)
    tok = mint_token(cfg.auth, Keyring(cfg.auth, cfg.stack.state_dir),
                     "it-prio", workspaces=["newsroom"], scopes=("videos:write",))
    with LiveApi(cfg) as api, ResumableUploader(api.url, token=tok) as up:
        low = up.upload(src, priority="low").video_id
        by_workspace = up.upload(src, workspace="newsroom").video_id
        plain = up.upload(src).video_id
        with pytest.raises(UploadError) as err:
            up.upload(src, priority="urgent")
    assert err.value.status == 400 and "unknown priority 'urgent'" in str(err.value)
    assert [r["priority"] for r in upload_records(config, low)] == ["low"]
    assert [r["priority"] for r in upload_records(config, by_workspace)] == ["high"]
    assert [r["priority"] for r in upload_records(config, plain)] == ["normal"]
