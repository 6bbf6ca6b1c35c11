"""Transcoding on the real stack: parallel_jobs at once per worker, and long work without a rebalance.

Both read the truth from the log: the ``started``/``succeeded`` StageTransitions
of the transcoding stage (when each job ran) and the broker's group
coordinator (whether the transcoding group rebalanced while a job ran).
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from framelog.streams import topics
from tests.integration.support.pipeline import PIPELINE_TIMEOUT, finished, process_clip, read_topic, upload
from tests.media.support import clips

pytestmark = pytest.mark.integration

STAGE = "transcoding"


def _ms(value) -> int:
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    return int(value)


def _transcoding_transitions(config, video_id: str) -> list[dict]:
    return [t for name, t in read_topic(config, topics.STAGE_TRANSITIONS, video_id)
            if name == "StageTransition" and t["stage"] == STAGE]


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The largest number of [start, end] intervals open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])   # an end sorts before a start
    open_now = peak = 0
    for _, delta in edges:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def test_max_overlap_counts_intervals_open_together():
    assert max_overlap([(0, 10), (5, 15), (20, 30)]) == 2
    assert max_overlap([(0, 10), (10, 20)]) == 1           # touching is not overlapping


def test_up_to_parallel_jobs_transcodes_run_at_once(config, worker, status, tmp_path):
    """Several clips uploaded together: their transcodes overlap, never more than parallel_jobs at once."""
    limit = config.pipeline.stage(STAGE).parallel_jobs
    assert limit > 1, "parallel_jobs must allow concurrency for this test to mean anything"
    sources = [clips.video(tmp_path / f"c{i}.mp4", width=960, height=540, duration=8, audio=False)
               for i in range(limit + 1)]
    ids = [upload(config, src) for src in sources]
    for video_id in ids:
        view = status.wait_for(video_id, lambda v: v is not None and
                               (v["stages"].get(STAGE) or {}).get("state") in ("succeeded", "failed"), PIPELINE_TIMEOUT)
        assert (view["stages"].get(STAGE) or {}).get("state") == "succeeded", view
    if config.media.transcoding.chunked:
        # parallel_jobs bounds the planning jobs; the encodes are chunk jobs, one at a time per chunk worker
        per_worker: dict[str, list[tuple[int, int]]] = {}
        for video_id in ids:
            trs = [t for name, t in read_topic(config, topics.CHUNK_TRANSITIONS, video_id) if name == "ChunkTransition"]
            starts = {(t["chunk_index"], t["attempt"]): t for t in trs if t["state"] == "started"}
            for t in trs:
                if t["state"] == "succeeded" and (t["chunk_index"], t["attempt"]) in starts:
                    s = starts[(t["chunk_index"], t["attempt"])]
                    per_worker.setdefault(s["worker"], []).append((_ms(s["event_time"]), _ms(t["event_time"])))
        assert per_worker and all(max_overlap(iv) == 1 for iv in per_worker.values()), per_worker
        for video_id in ids:
            assert finished(status.wait_for(video_id, finished, PIPELINE_TIMEOUT))
        return
    intervals = []
    for video_id in ids:
        trs = _transcoding_transitions(config, video_id)
        started = [_ms(t["event_time"]) for t in trs if t["state"] == "started"]
        succeeded = [_ms(t["event_time"]) for t in trs if t["state"] == "succeeded"]
        assert len(started) == 1 and len(succeeded) == 1, trs
        intervals.append((started[0], succeeded[0]))
    peak = max_overlap(intervals)
    assert 1 < peak <= limit, (peak, intervals)
    for video_id in ids:                                   # leave nothing running for the next test
        assert finished(status.wait_for(video_id, finished, PIPELINE_TIMEOUT))


def test_pipeline_metrics_after_the_transcodes(config, worker, status, tmp_path):
    """processing_duration from the transcoding worker (with profile and source resolution labels)
    and processing_queue_size (consumer lag) per stage from the broker. Runs after the test above
    (pytest keeps file order), whose transcodes this worker observed."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from framelog.pipeline.agents.metrics import QueueSizeCollector
    from framelog.pipeline.worker import groups

    port = config.stack.worker_metrics_port + groups(config.pipeline).index(STAGE)
    text = httpx.get(f"http://{config.stack.host}:{port}/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) if f.name == "processing_duration" for s in f.samples]
    counts = [s for s in samples if s.name == "processing_duration_count" and s.labels["stage"] == STAGE]
    assert counts and sum(s.value for s in counts) >= config.pipeline.stage(STAGE).parallel_jobs + 1, counts
    assert any(s.labels["resolution"] == "960x540" and "360p" in s.labels["profile"] for s in counts), counts
    queue = {m.labels["stage"]: m.value for f in QueueSizeCollector(config.streams).collect() for m in f.samples}
    assert set(queue) == set(config.pipeline.stage_names), queue
    assert all(v >= 0 for v in queue.values())

    process_clip(config, status, clips.text_file(tmp_path / "not-a-video.mp4"))      # validation fails: not_media
    port = config.stack.worker_metrics_port + groups(config.pipeline).index("validation")
    text = httpx.get(f"http://{config.stack.host}:{port}/metrics", timeout=10).text
    errors = [s for f in text_string_to_metric_families(text) if f.name == "processing_errors" for s in f.samples
              if s.name == "processing_errors_total" and s.labels == {"stage": "validation", "error_type": "not_media"}]
    assert errors and errors[0].value >= 1, errors


def _rebalances(log_path: Path, group: str, since: int) -> list[str]:
    """Broker log lines (after byte ``since``) where the coordinator rebalanced or dropped a member of ``group``."""
    with log_path.open("rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    needles = (f"Preparing to rebalance group {group}", f"group {group} ")
    return [line for line in text.splitlines()
            if needles[0] in line or (needles[1] in line and ("failed" in line or "removing" in line.lower()))]


def test_transcode_longer_than_the_session_timeout_causes_no_rebalance(config, worker, status, tmp_path):
    """A transcode several times the consumer session timeout: one attempt, one 'started', no rebalance."""
    from framelog.streams.app import SESSION_TIMEOUT

    broker_log = config.stack.state_dir / "kafka" / "kafka.log"
    assert broker_log.exists()
    src = clips.video(tmp_path / "long1080.mp4", width=1920, height=1080, duration=40)   # ~30 s on 2 idle cores
    mark = broker_log.stat().st_size
    video_id = upload(config, src)
    view = status.wait_for(video_id, lambda v: v is not None and
                           (v["stages"].get(STAGE) or {}).get("state") in ("succeeded", "failed", "retrying"),
                           PIPELINE_TIMEOUT)
    stage = view["stages"].get(STAGE) or {}
    assert stage.get("state") == "succeeded" and stage["attempt"] == 1, view
    trs = _transcoding_transitions(config, video_id)
    started = [t for t in trs if t["state"] == "started"]
    succeeded = [t for t in trs if t["state"] == "succeeded"]
    assert len(started) == 1 and len(succeeded) == 1, [(t["state"], t["attempt"]) for t in trs]
    assert {t["attempt"] for t in trs} == {1}
    ran = (_ms(succeeded[0]["event_time"]) - _ms(started[0]["event_time"])) / 1000
    assert ran > 2 * SESSION_TIMEOUT, f"the transcode took {ran:.1f}s: too short to prove anything"
    assert any(t["state"] == "progress" for t in trs)
    assert _rebalances(broker_log, f"framelog-{STAGE}", mark) == []
    if config.media.transcoding.chunked:             # the long work is the chunk jobs': their group holds too
        assert _rebalances(broker_log, "framelog-chunks", mark) == []
    view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
    assert view["state"] == "ready", view
    assert len(read_topic(config, topics.ASSETS, video_id)) == 1
