"""The stitch's chunk ledger (processors/chunk_ledger.py): done chunks, retries per chunk, the end."""
from __future__ import annotations

from framelog.processors.chunk_ledger import DONE, FAILED, Entry, fold


def _t(state: str, index: int, *, attempt: int = 1, job: str = "j1", **extra) -> dict:
    return {"job_id": job, "video_id": "v", "chunk_index": index, "chunk_count": 2, "job_count": 3,
            "kind": "audio" if index == 2 else "video", "start_seconds": 60.0 * index,
            "end_seconds": 60.0 * (index + 1), "state": state, "attempt": attempt, "plan_key": "p", **extra}


def _run(records, retries=2):
    entry, actions = Entry(), []
    for r in records:
        entry, acts = fold(Entry.from_dict(entry.to_dict()), r, retry_attempts=retries)   # as the table stores it
        actions += acts
    return entry, actions


def test_every_job_done_stitches_once():
    entry, actions = _run([_t("queued", i) for i in range(3)] + [_t("started", i) for i in range(3)]
                          + [_t("succeeded", i) for i in (1, 0, 2)] + [_t("succeeded", 0)])
    assert entry.state == DONE and entry.encodes == 3
    assert [a.kind for a in actions] == ["progress", "progress", "stitch"]


def test_a_failed_chunk_is_retried_alone_then_fails_the_video_with_its_range():
    records = [_t("queued", i) for i in range(3)] + [_t("succeeded", 0), _t("succeeded", 2)]
    records += [_t("failed", 1, attempt=1, error_type="timeout", error_message="too slow")]
    entry, actions = _run(records)
    assert [(a.kind, a.index, a.attempt) for a in actions if a.kind == "retry"] == [("retry", 1, 2)]
    records += [_t("failed", 1, attempt=2, error_type="timeout", error_message="too slow"),
                _t("failed", 1, attempt=3, error_type="timeout", error_message="too slow")]
    entry, actions = _run(records)
    assert entry.state == FAILED
    fail = actions[-1]
    assert fail.kind == "fail" and fail.error_type == "timeout"
    assert fail.message == "chunk 1 (00:01:00-00:02:00): too slow (after 3 attempts)"


def test_a_corrupt_chunk_fails_at_once_with_the_decode_reason():
    entry, actions = _run([_t("queued", 0), _t("failed", 0, retryable=False, error_type="corrupt",
                                                error_message="corrupt: undecodable frames at 00:00:20-00:00:30")])
    assert entry.state == FAILED and actions[-1].message == "corrupt: undecodable frames at 00:00:20-00:00:30"


def test_a_stale_attempt_and_an_older_job_change_nothing():
    records = [_t("queued", 0), _t("failed", 0, attempt=1, error_type="x"), _t("queued", 0, attempt=2),
               _t("failed", 0, attempt=1, error_type="x"), _t("succeeded", 1, job="old")]
    entry, actions = _run(records)
    assert [a.kind for a in actions] == ["retry"] and entry.done == []


def test_a_new_job_starts_over_and_a_deleted_video_cancels():
    entry, _ = _run([_t("queued", 0), _t("succeeded", 0), _t("queued", 0, job="j2")])
    assert entry.job_id == "j2" and entry.done == []
    entry, actions = _run([_t("queued", 0), _t("cancelled", 1, error_type="video_deleted")])
    assert entry.state == "cancelled" and actions[-1].kind == "cancel"


def test_the_stage_duration_runs_from_the_first_chunk_queued():
    from datetime import UTC, datetime

    queued_at = datetime(2026, 12, 6, 5, 0, 0, tzinfo=UTC)
    entry, _ = _run([_t("queued", 0, event_time=queued_at), _t("queued", 1), _t("succeeded", 0)])
    assert entry.started_ms == int(queued_at.timestamp() * 1000)
    assert entry.duration_ms(entry.started_ms + 504_400) == 504_400
    assert Entry().duration_ms(1) is None
