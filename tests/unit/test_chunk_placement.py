"""Chunk jobs dealt over the chunk workers by load (processors/chunk_placement.py, ops/groups.member_loads)."""
from framelog.ops.groups import GroupReport, Member, PartitionLag
from framelog.processors.chunk_placement import MemberLoad, place_jobs

TOPIC = "pipeline.transcoding.chunks"


def test_a_video_is_dealt_evenly_over_two_idle_workers_whatever_their_partitions():
    # Faust's sticky assignment after a second worker joins: 0-2 and 3-5. By index, a video's 10 chunks and its
    # audio (11 jobs) would give the first worker 6 chunks; dealt, each gets 5 or 6 jobs of which one is the audio.
    first, second = MemberLoad({0: 0, 1: 0, 2: 0}), MemberLoad({3: 0, 4: 0, 5: 0})
    placed = place_jobs(11, [first, second], 6)
    assert placed == [0, 3] * 5 + [0]
    assert sorted(i % 6 for i in range(11)) != sorted(placed)      # not what index placement gives


def test_a_busy_worker_gets_new_jobs_only_when_the_other_has_as_many_queued():
    busy, idle = MemberLoad({0: 3, 1: 1}), MemberLoad({2: 0})
    assert place_jobs(6, [busy, idle], 3) == [2, 2, 2, 2, 1, 2]


def test_each_worker_gets_its_share_on_its_emptiest_partition_in_order():
    assert MemberLoad({4: 2, 1: 0, 3: 0}).emptiest_partition == 1
    assert place_jobs(3, [MemberLoad({4: 2, 1: 0, 3: 0})], 6) == [1, 1, 1]


def test_no_worker_in_the_group_falls_back_to_the_index():
    assert place_jobs(4, [], 6, first_index=4) == [4, 5, 0, 1]
    assert place_jobs(2, [MemberLoad({})], 3) == [0, 1]


def test_member_loads_read_from_a_group_report():
    report = GroupReport("framelog-chunks", "STABLE", (
        Member("m2", "c2", "h", ((TOPIC, 3), (TOPIC, 4), ("framelog-chunks-x-changelog", 0))),
        Member("m1", "c1", "h", ((TOPIC, 0), (TOPIC, 1))),
        Member("m3", "c3", "h", ())),
        (PartitionLag(TOPIC, 0, 5, 7), PartitionLag(TOPIC, 3, None, 2), PartitionLag(TOPIC, 4, 9, 9)))
    assert report.member_loads(TOPIC) == [MemberLoad({0: 2, 1: 0}), MemberLoad({3: 2, 4: 0})]
