"""The stall watchdog's decision (issue 14 pt 2): a worker exits only for a partition behind whose committed offset
has not moved for the whole limit, as seen on a reachable broker, and only for a partition it owns or, in a
settled group, one of its topics' partitions that no member owns."""
from __future__ import annotations

import dataclasses

from framelog.core.config import get_config
from framelog.ops.groups import GroupReport, Member, PartitionLag
from framelog.pipeline.stall_watch import StallWatch, judged
from framelog.pipeline.worker import groups, stall_limit

EVENTS = "playback.events"
P4 = (EVENTS, 4)
P5 = (EVENTS, 5)


def at(committed: int | None, end: int, tp: tuple[str, int] = P4) -> PartitionLag:
    return PartitionLag(tp[0], tp[1], committed, end)


def test_a_partition_behind_whose_committed_offset_does_not_move_is_stalled_after_the_limit():
    watch = StallWatch(limit=120)
    assert watch.observe(0, {P4: at(100, 806), P5: at(50, 50, P5)}) == []
    assert watch.observe(119.9, {P4: at(100, 806), P5: at(50, 60, P5)}) == []
    assert watch.observe(120, {P4: at(100, 806), P5: at(50, 60, P5)}) == [P4]


def test_progress_catching_up_or_losing_the_partition_starts_the_clock_again():
    watch = StallWatch(limit=10)
    watch.observe(0, {P4: at(100, 200)})
    assert watch.observe(9, {P4: at(101, 200)}) == []        # moved: a slow record, not a stall
    assert watch.observe(18, {P4: at(101, 200)}) == []
    assert watch.observe(19, {P4: at(101, 200)}) == [P4]
    watch.observe(20, {P4: at(200, 200)})                     # caught up: nothing to advance
    assert watch.observe(25, {P4: at(200, 210)}) == []
    assert watch.observe(34, {P4: at(200, 210)}) == []
    watch.observe(35, {})                                     # no longer judged
    assert watch.observe(44, {P4: at(200, 210)}) == []
    assert watch.observe(54, {P4: at(200, 210)}) == [P4]


def test_a_broker_that_cannot_be_asked_never_makes_a_stall_and_restarts_every_clock():
    watch = StallWatch(limit=10)
    watch.observe(0, {P4: at(100, 200)})
    assert watch.observe(9, None) == []
    assert watch.observe(15, {P4: at(100, 200)}) == []        # the whole limit again once the broker is back
    assert watch.observe(24, {P4: at(100, 200)}) == []
    assert watch.observe(25, {P4: at(100, 200)}) == [P4]


def test_nothing_committed_yet_counts_as_behind_by_the_whole_partition():
    watch = StallWatch(limit=5)
    assert watch.observe(0, {P4: at(None, 0)}) == []
    watch.observe(1, {P4: at(None, 10)})
    assert watch.observe(6, {P4: at(None, 10)}) == [P4]


def _report(state: str, members: dict[str, tuple[tuple[str, int], ...]]) -> GroupReport:
    partitions = (at(10, 20, (EVENTS, 0)), at(10, 20, (EVENTS, 1)), at(10, 20, (EVENTS, 2)),
                  at(None, 30, ("framelog-popularity-view_counts-changelog", 0)), at(5, 9, ("old.topic", 0)))
    return GroupReport("framelog-popularity", state,
                       tuple(Member(m, "faust", "/127.0.0.1", tps) for m, tps in members.items()), partitions)


def test_judged_are_the_partitions_owned_and_in_a_settled_group_those_of_its_topics_nobody_owns():
    report = _report("STABLE", {"me": ((EVENTS, 0), ("framelog-popularity-view_counts-changelog", 0)),
                                "other": ((EVENTS, 1),)})
    mine = [(EVENTS, 0), ("framelog-popularity-view_counts-changelog", 0)]
    assert sorted(judged(report, mine, {EVENTS})) == [(EVENTS, 0), (EVENTS, 2)]   # not the other's, no changelog
    # assigned nothing after a broker restart (the topics looked missing): every partition is nobody's
    assert sorted(judged(_report("STABLE", {"me": ()}), [], {EVENTS})) == [(EVENTS, 0), (EVENTS, 1), (EVENTS, 2)]
    # mid-rebalance nobody owns anything for a moment: only what this member holds counts
    assert sorted(judged(_report("PREPARING_REBALANCE", {"me": ()}), [(EVENTS, 1)], {EVENTS})) == [(EVENTS, 1)]


def test_the_limit_outlasts_the_longest_legitimate_record_of_each_group():
    config = get_config()
    config = dataclasses.replace(config, kafka=dataclasses.replace(config.kafka, stall_timeout=60.0))
    stages = {s.name: s for s in config.pipeline.stages}
    grace = 2 * config.pipeline.kill_grace
    for group in groups(config.pipeline):
        limit = stall_limit(config, group)
        assert limit >= 60.0
        if group in stages:
            assert limit == 60.0 + stages[group].timeout + grace
    assert stall_limit(config, "chunks") == stall_limit(config, "transcoding")
    assert stall_limit(config, "popularity") == 60.0
