"""Operator tools against the real stack: group lag, dead-letter replay after a fix, reprocess from a stage.

One story: an upload whose object is not in S3 yet runs out of validation
retries and is dead-lettered; the operator sees it (`dlq list`), puts the
object in place (the fix), replays the dead letter, and the video publishes.
Replaying again sends nothing. Then the video is reprocessed from a later
stage, which runs only the stages from there on, under a new job id.
"""
from __future__ import annotations

import hashlib

import pytest

from framelog.core import object_keys
from framelog.core.ids import new_video_id
from framelog.core.object_keys import video_prefixes
from framelog.ops import dlq
from framelog.ops.groups import describe_groups
from framelog.ops.reprocess import ReprocessError, read_history, reprocess, stage_inputs
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.uploads import announce_upload
from framelog.stack.services import WorkerService
from framelog.streams import topics
from tests.integration.support import TopicRecorder, running, wait_for
from tests.media.support import clips

pytestmark = pytest.mark.integration

VALIDATION_DLQ = topics.dead_letter_topic(topics.pipeline_topic("validation"))


@pytest.fixture(scope="module")
def worker(stack, config):
    with running(WorkerService(config), timeout=300) as service:
        yield service


@pytest.fixture(scope="module")
def recorder(stack, config):
    table = TopicRecorder(config, (topics.STAGE_TRANSITIONS, topics.ASSETS, VALIDATION_DLQ,
                                   topics.pipeline_topic("validation")),
                          group_prefix="it-ops").start()
    assert table.wait_ready(60)
    yield table
    table.stop()


def _pending(config) -> int:
    return next(s.pending for s in dlq.summarize(config.streams) if s.topic == VALIDATION_DLQ)


def test_dead_letter_replayed_after_the_fix_publishes_once_and_reprocess_reruns_later_stages(
        config, worker, recorder, tmp_path):
    data = clips.video(tmp_path / "late.mp4", width=320, height=180, duration=3).read_bytes()
    video_id = new_video_id()
    key = object_keys.raw_upload(video_id)
    announce_upload(config.streams, config.priorities, video_id=video_id, object_key=key, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), content_type="video/mp4", owner_id="tests")

    # out of retries: failed, dead-lettered
    recorder.wait(video_id, "StageTransition", lambda t: t["stage"] == "validation" and t["state"] == "failed", 180)
    recorder.wait(video_id, "DeadLetter", timeout=60)
    assert _pending(config) >= 1

    ObjectStore(config.object_storage, config.stack.state_dir).put_bytes(key, data, "video/mp4")          # the fix
    # (other tests' dead letters on this topic are replayed too: they fail again and come back)
    report = dlq.replay(config.streams, VALIDATION_DLQ)
    assert report.replayed.get(topics.pipeline_topic("validation"), 0) >= 1 and not report.skipped
    published = recorder.wait(video_id, "AssetPublished", timeout=300)
    assert {r["name"] for r in published["renditions"]}

    assert recorder.wait_caught_up(60)
    requests = len(recorder.of(video_id, "StageRequest"))
    dlq.replay(config.streams, VALIDATION_DLQ)                               # idempotent: this one is not sent again
    assert recorder.wait_caught_up(60)
    assert len(recorder.of(video_id, "StageRequest")) == requests

    # the validation group is visible with its members, and caught up on the partition of this video
    with recorder._lock:
        partition = next(r.partition for r in recorder.by_video[video_id] if r.name == "StageRequest")

    def caught_up():
        report = next((r for r in describe_groups(config.kafka, config.stack)
                       if r.group_id == "framelog-validation"), None)
        if report is None or not report.members:
            return None
        lag = {p.partition: p.lag for p in report.partitions if p.topic == topics.pipeline_topic("validation")}
        return report if lag.get(partition) == 0 else None
    report = wait_for(caught_up, "framelog-validation caught up with members", 60)
    assert topics.pipeline_topic("validation") in {p.topic for p in report.partitions}
    assert any(partition in {p for _, p in m.partitions} for m in report.members)

    # once published, the staging is gone but for the completion markers: source + published files remain
    store = ObjectStore(config.object_storage, config.stack.state_dir)

    def staging_left() -> list[str]:
        return [k for k in store.keys(object_keys.staging_root(video_id)) if not k.endswith("/_SUCCESS.json")]
    wait_for(lambda: not staging_left(), "the staging to be discarded", 60)
    kinds = {k.split("/")[0] for p in video_prefixes(video_id) for k in store.keys(p)}
    assert kinds == {"uploads", "work", "hls", "thumbnails", "keys", "meta"}
    assert store.head(published["metadata"]["source_key"]) is not None                 # the MP4

    # a later stage cannot be rerun without its predecessors' staging; from the first stage it can
    with pytest.raises(ReprocessError, match="staging is discarded"):
        reprocess(config.streams, video_id, "thumbnail_generation", store=store)
    first_jobs = {t["job_id"] for t in recorder.of(video_id, "StageTransition")}
    publications = len(recorder.of(video_id, "AssetPublished"))    # a redelivered request re-announces: >= 1
    job_id = reprocess(config.streams, video_id, store=store)
    assert job_id not in first_jobs
    recorder.wait(video_id, "StageTransition",
                  lambda t: t["job_id"] == job_id and t["stage"] == "cdn_upload" and t["state"] == "succeeded", 300)
    ran = {t["stage"] for t in recorder.of(video_id, "StageTransition") if t["job_id"] == job_id}
    assert ran == set(config.pipeline.stage_names)
    wait_for(lambda: len(recorder.of(video_id, "AssetPublished")) > publications, "the reprocessed publication", 60)
    wait_for(lambda: not staging_left(), "the staging of the second job to be discarded", 60)


def test_reprocess_refuses_what_it_cannot_rebuild(config, stack):
    with pytest.raises(ReprocessError, match="no upload"):
        reprocess(config.streams, new_video_id(),
                  store=lambda: ObjectStore(config.object_storage, config.stack.state_dir))
    with pytest.raises(ReprocessError, match="unknown stage"):
        stage_inputs(config.pipeline, read_history(config.streams, new_video_id()), "mastering")
