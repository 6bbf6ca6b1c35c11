"""The fault suite's pure parts: the schedule, the memory verdict, the timeline picture."""
from __future__ import annotations

import pytest

from framelog.ops.faults.checks import memory_flat
from framelog.ops.faults.load import Ledger
from framelog.ops.faults.report import Outage, timeline_svg
from framelog.ops.faults.schedule import build_schedule


def test_every_target_alone_then_pairs_then_a_quiet_tail():
    plan = build_schedule(["broker", "s3", "api", "edge"], 100.0, pairs=2, quiet_fraction=0.2)
    assert [f.targets for f in plan] == [("broker",), ("s3",), ("api",), ("edge",), ("broker", "api"), ("s3", "edge")]
    assert [f.at for f in plan] == sorted(f.at for f in plan)
    assert plan[-1].at < 80.0                       # the last 20% has no fault
    assert all(len(set(f.targets)) == len(f.targets) for f in plan)


def test_more_pairs_than_mixed_ones_come_from_the_other_combinations():
    plan = build_schedule(["a", "b", "c"], 60.0, pairs=3)
    pairs = [f.targets for f in plan if len(f.targets) == 2]
    assert len(pairs) == 3 and len(set(pairs)) == 3


@pytest.mark.parametrize("duration,quiet", [(0, 0.2), (10, 1.0)])
def test_a_schedule_needs_time_to_run(duration, quiet):
    with pytest.raises(ValueError):
        build_schedule(["a"], duration, quiet_fraction=quiet)


def test_memory_is_judged_per_incarnation_and_short_ones_are_not_judged():
    flat = [(t, 1, 100_000_000 + (t % 3) * 1000) for t in range(40)]
    leaking = [(t, 2, 100_000_000 + t * 10_000_000) for t in range(40)]
    restarted = [(t, 3, 500_000_000) for t in range(5)] + [(t, 4, 100_000_000) for t in range(5, 40)]
    short = [(t, 5, t * 10**9) for t in range(4)]
    warming = [(t, 6, min(100, 20 + 10 * t) * 10**6) for t in range(40)]     # doubles, then levels off
    verdict = memory_flat({"flat": flat, "leaking": leaking, "restarted": restarted, "short": short,
                           "warming": warming}, 0.5)
    assert not verdict.ok
    assert set(verdict.figures["growth"]) == {"flat", "leaking", "restarted", "warming"}
    assert "leaking" in verdict.detail
    assert not {"flat", "restarted", "warming"} & set(verdict.detail.split("growing:")[1].replace("'", " ").split())


def test_the_timeline_draws_each_outage_and_the_acknowledgements():
    ledger = Ledger()
    ledger.acks += [(3.0, "upload", 1), (4.0, "events", 10), (12.0, "events", 20)]
    svg = timeline_svg([Outage("broker", 10.0, 25.0), Outage("api", 30.0, None)], ledger, 60.0)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "broker down 10-25s" in svg and "api down 30-60s" in svg
    assert svg.count('stroke="#27a"') == 1          # one upload tick


def test_a_faust_changelog_is_not_work_a_group_has_left():
    from framelog.ops.groups import GroupReport, PartitionLag

    report = GroupReport("framelog-tiering", "STABLE", (), (
        PartitionLag("playback.events", 0, 10, 12),
        PartitionLag("framelog-tiering-renditions-changelog", 0, None, 583)))
    assert report.lag == 2
    assert [p.is_changelog for p in report.partitions] == [False, True]
