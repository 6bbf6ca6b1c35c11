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


def test_lead_pairs_come_first_and_a_pair_is_never_repeated():
    plan = build_schedule(["broker", "s3", "api", "sink"], 100.0, pairs=2, lead_pairs=[("sink", "broker")])
    assert [f.targets for f in plan if len(f.targets) == 2] == [("sink", "broker"), ("broker", "api")]
    # the mixed order would pair broker with api first: named first, it is not paired again
    plan = build_schedule(["broker", "s3", "api", "sink"], 100.0, pairs=2, lead_pairs=[("api", "broker")])
    assert [f.targets for f in plan if len(f.targets) == 2] == [("api", "broker"), ("s3", "sink")]
    # a lead pair whose targets are not both scheduled is left out
    plan = build_schedule(["broker", "s3"], 100.0, pairs=1, lead_pairs=[("sink", "broker")])
    assert [f.targets for f in plan if len(f.targets) == 2] == [("broker", "s3")]


def test_the_sink_is_a_target_of_its_own_and_the_api_does_not_host_it(cfg):
    from framelog.ops.faults.targets import all_targets
    from framelog.stack.services import EMBEDDED_SINK_ENV, SinkService

    targets = all_targets(cfg)
    assert isinstance(targets["sink"].component, SinkService)
    assert targets["api"].component.env()[EMBEDDED_SINK_ENV] == "0"


# ------------------------------------------------------------------ every CDN command applied

VID = "a" * 32


def _command(name, at=1000, trigger="video_upload_complete", providers=(), paths=()):
    from framelog.ops.faults.cdn_applied import Command
    return Command(0, 7, name, VID, tuple(paths), tuple(providers), trigger, at)


def test_a_publication_warm_asks_a_purge_of_the_shield_and_every_edge_then_a_warm_of_every_edge():
    from framelog.ops.faults.cdn_applied import expectations
    warm = _command("CacheWarm", paths=(f"/hls/{VID}/360p/playlist.m3u8", "/etc/passwd"))
    asked, skipped = expectations([warm], ["p", "s"], ["video_upload_complete"])
    assert not skipped
    assert [(e.kind, e.cache) for e in asked] == [("purge", "origin-shield"), ("purge", "p"), ("purge", "s"),
                                                  ("warm", "p"), ("warm", "s")]
    assert asked[-1].items == (f"/hls/{VID}/master.m3u8", f"/hls/{VID}/360p/playlist.m3u8")   # unserved paths out


def test_a_regional_warm_names_its_edge_and_an_unconfigured_trigger_is_not_for_the_edges():
    from framelog.ops.faults.cdn_applied import expectations
    regional = _command("CacheWarm", trigger="trending_content", providers=("s", "gone"))
    other = _command("CacheWarm", trigger="not_configured")
    asked, skipped = expectations([regional, other], ["p", "s"], ["trending_content", "video_upload_complete"])
    assert [(e.kind, e.cache) for e in asked] == [("warm", "s")]
    assert skipped == [other]


def test_a_warm_is_applied_once_the_edge_served_every_path_after_the_command():
    from framelog.ops.faults.cdn_applied import EdgeEvidence, Expectation, applied
    e = Expectation(_command("CacheWarm", at=1000), "warm", "p", ("/hls/x/master.m3u8", "/hls/x/a.m3u8"))
    before = EdgeEvidence(served={"p": {"/hls/x/master.m3u8": [999, 1001], "/hls/x/a.m3u8": [999]}})
    after = EdgeEvidence(served={"p": {"/hls/x/master.m3u8": [1001], "/hls/x/a.m3u8": [1000]}})
    assert not applied(e, before)          # a.m3u8 was served before the command only
    assert applied(e, after)
    assert not applied(e, EdgeEvidence())  # an edge that logged nothing


def test_a_purge_is_applied_when_nothing_it_covers_was_stored_before_it():
    from framelog.ops.faults.cdn_applied import EdgeEvidence, Expectation, applied
    e = Expectation(_command("CacheInvalidate", at=1000), "purge", "origin-shield", (f"/hls/{VID}/*",))
    fresh = EdgeEvidence(stored={"origin-shield": [(f"/hls/{VID}/master.m3u8", 1002), ("/hls/other/master.m3u8", 5)]})
    stale = EdgeEvidence(stored={"origin-shield": [(f"/hls/{VID}/master.m3u8", 999)]})
    assert applied(e, fresh)               # another video's old entry is not this purge's
    assert not applied(e, stale)
    assert applied(e, EdgeEvidence())      # nothing cached: nothing left behind


def test_the_access_log_gives_the_seconds_of_each_200(tmp_path):
    from framelog.ops.faults.cdn_applied import served_paths
    log = tmp_path / "access.log"
    log.write_text("\n".join([
        '{"time":"2026-12-05T10:00:01+00:00","path":"/_edge/hls/x/master.m3u8","status":200}',
        '{"time":"2026-12-05T10:00:02+00:00","path":"/_edge/hls/x/a.m3u8","status":502}',
        '{"time":"2026-12-05T10:00:03+00:00","path":"/_purge/hls/x/master.m3u8","status":200}',
        '{"time":"2026-12-05T10:00:04+00:00","path":"/_edge/hls/x/mas',          # cut by kill -9
    ]) + "\n")
    assert served_paths([tmp_path / "missing.log.1", log]) == {"/hls/x/master.m3u8": [1796464801]}


def test_the_store_time_is_read_from_the_nginx_cache_header(tmp_path):
    from framelog.sinks.edges.cache_commands import stored_at
    entry = tmp_path / "entry"
    header = b"".join(v.to_bytes(8, "little") for v in (5, 1796499200, 0, 0, 1796495599, 1796495600))
    entry.write_bytes(header + b"\x00" * 16 + b"\nKEY: /hls/x/master.m3u8\n")
    assert stored_at(entry) == 1796495600
    entry.write_bytes(b"\x04" + header[1:])         # another header version: not read
    assert stored_at(entry) is None
    assert stored_at(tmp_path / "gone") is None


def test_an_api_that_leaves_the_embedded_engine_to_the_sink_process_does_not_open_it(cfg, monkeypatch):
    from framelog.api.analytics_engine import engine_elsewhere, open_engine
    from framelog.api.services import engine_settings
    from framelog.core.errors import ApiError

    assert cfg.clickhouse_dsn.startswith("chdb:")
    monkeypatch.delenv("FRAMELOG_API_EMBEDDED_SINK", raising=False)
    assert not engine_elsewhere(cfg.clickhouse_dsn)      # by default the API hosts the sink and reads the engine
    monkeypatch.setenv("FRAMELOG_API_EMBEDDED_SINK", "0")
    assert engine_elsewhere(cfg.clickhouse_dsn)
    with pytest.raises(ApiError) as refused:
        open_engine(engine_settings(cfg))             # never touches the directory the sink process holds
    assert refused.value.status == 503 and refused.value.code == "analytics_engine_elsewhere"
