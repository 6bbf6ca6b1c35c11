"""The chunk plan (processors/media/chunking.py): segment-aligned, contiguous, the tail folded."""
from __future__ import annotations

import pytest

from framelog.processors.media.chunking import check_chunk_seconds, plan_chunks


def _contiguous(plan) -> bool:
    return all(a.end == b.start for a, b in zip(plan.chunks, plan.chunks[1:], strict=False))


def test_ten_minutes_in_one_minute_chunks():
    plan = plan_chunks(600.0, 60, 10)
    assert plan.count == 10
    assert [c.start for c in plan.chunks] == [i * 60.0 for i in range(10)]
    assert plan.chunks[-1].end == 600.0 and _contiguous(plan)
    assert [c.first_segment for c in plan.chunks] == [i * 6 for i in range(10)]
    assert plan.segment_count == 60


def test_every_boundary_is_on_the_segment_grid_and_the_last_chunk_ends_at_the_duration():
    plan = plan_chunks(125.4, 30, 10)
    assert [(c.start, c.end) for c in plan.chunks] == [(0, 30), (30, 60), (60, 90), (90, 125.4)]
    assert all(c.start % 10 == 0 for c in plan.chunks)
    assert plan.chunks[-1].segment_count == 4        # 90-100, 100-110, 110-120, 120-125.4
    assert plan.segment_count == 13 and _contiguous(plan)


def test_a_tail_shorter_than_a_segment_joins_the_chunk_before_it():
    plan = plan_chunks(61.0, 60, 10)
    assert plan.count == 1 and plan.chunks[0].end == 61.0 and plan.chunks[0].segment_count == 7
    kept = plan_chunks(61.0, 60, 10, min_tail=0)
    assert kept.count == 2 and kept.chunks[1].start == 60.0


def test_a_short_video_is_one_chunk():
    plan = plan_chunks(4.2, 60, 10)
    assert plan.count == 1 and plan.chunks[0].segment_count == 1 and plan.chunks[0].end == 4.2


def test_exact_multiple_has_no_empty_tail():
    plan = plan_chunks(120.0000004, 60, 10)
    assert plan.count == 2 and plan.chunks[-1].end == pytest.approx(120.0)


def test_chunk_at_maps_media_time_to_its_chunk():
    plan = plan_chunks(100.0, 20, 10)
    assert plan.chunk_at(0).index == 0 and plan.chunk_at(19.99).index == 0
    assert plan.chunk_at(20).index == 1 and plan.chunk_at(99.9).index == 4 and plan.chunk_at(500).index == 4


@pytest.mark.parametrize("seconds", [0, 15, 7.5, -10])
def test_chunk_length_must_be_a_multiple_of_the_segment(seconds):
    with pytest.raises(ValueError, match="multiple of the 10s HLS segment"):
        check_chunk_seconds(seconds, 10)


@pytest.mark.parametrize("duration", [0, -1, float("nan"), float("inf")])
def test_no_plan_without_a_duration(duration):
    with pytest.raises(ValueError):
        plan_chunks(duration, 60, 10)
