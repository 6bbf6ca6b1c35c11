"""Tiering as the worker runs it: folds, decisions at every boundary, restore, replay, crashes."""
import copy
import random
from datetime import UTC, datetime, timedelta

import pytest

from framelog.core.clock import ManualClock
from framelog.pipeline.tiering_fold import fold_event, rendition_row
from framelog.processors import tier_ledger as ledger
from tests.unit.support.tiering_harness import Crash, World

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def record(cfg, age_days=0.0, accesses=0, tier="hot_tier", now=T0):
    created = ledger.to_ms(now - timedelta(days=age_days))
    return ledger.RenditionRecord("vid1", "720p", "hls/vid1/720p/", created, created, tier, access_count=accesses)


def walk(cfg, age_days, accesses):
    """Where a rendition ends up if evaluated every day up to ``age_days`` with ``accesses`` so far."""
    r = record(cfg, age_days, accesses)
    while (move := ledger.next_move(r, T0, cfg.tiering)) is not None:
        r = ledger.on_transition(r, {"event_id": move.event_id, "event_time": T0, "video_id": "vid1",
                                     "rendition": "720p", "from_tier": move.from_tier, "to_tier": move.to_tier,
                                     "rule": move.rule_name, "age_days": move.age_days}, cfg.tiering)[0]
    return r.tier


# ------------------------------------------------------------ decisions at every boundary

@pytest.mark.parametrize("age, accesses, tier, rule", [
    (29, 0, None, None),
    (29.99, 100, None, None),
    (30, 0, "warm_tier", "Moderate usage"),
    (89, 5, "warm_tier", "Moderate usage"),
    (90, 9, "cold_tier", "Low usage"),
    (90, 10, "warm_tier", "default"),
    (100, 50, "warm_tier", "default"),        # 100 days old, 50 accesses: no seed rule; the default keeps it warm
    (364, 9, "cold_tier", "Low usage"),
    (364, 10, "warm_tier", "default"),
    (365, 0, "deep_archive_tier", "Archive"),
    (365, 10_000, "deep_archive_tier", "Archive"),
])
def test_first_move_from_hot_at_the_boundaries(cfg, age, accesses, tier, rule):
    move = ledger.next_move(record(cfg, age, accesses), T0, cfg.tiering)
    if tier is None:
        assert move is None
    else:
        assert (move.to_tier, move.rule_name, move.access_count) == (tier, rule, accesses)
        assert move.age_days == pytest.approx(age)


@pytest.mark.parametrize("age, accesses, final", [
    (29, 0, "hot_tier"), (30, 0, "warm_tier"), (89, 0, "warm_tier"), (90, 0, "cold_tier"),
    (90, 9, "cold_tier"), (90, 10, "warm_tier"), (364, 9, "cold_tier"), (365, 9, "deep_archive_tier"),
])
def test_where_it_settles(cfg, age, accesses, final):
    assert walk(cfg, age, accesses) == final


def test_a_cold_rendition_comes_back_only_through_a_restore(cfg):
    cold = record(cfg, 120, 9, tier="cold_tier")
    popular = ledger.on_access(cold, "s-10", T0)[0]
    assert popular.access_count == 10
    assert ledger.next_move(popular, T0, cfg.tiering) is None            # rules say warm, but Glacier needs a restore
    older = record(cfg, 365, 50, tier="cold_tier")
    assert ledger.next_move(older, T0, cfg.tiering).to_tier == "deep_archive_tier"   # moving further down is fine


def test_renditions_are_decided_independently(cfg):
    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidA", {"2160p": 2, "720p": 2})
    for i in range(12):
        w.play("vidA", "720p", f"s{i}")
    w.play("vidA", "2160p", "s0")
    w.tick()
    clock.advance(days=95)
    w.tick()
    tiers = {k: v["record"]["tier"] for k, v in w.rows.items() if "/" in k}
    assert tiers == {"vidA/2160p": "cold_tier", "vidA/720p": "warm_tier"}


# ------------------------------------------------------------ folds

def test_a_session_counts_once_and_redelivery_changes_nothing(cfg):
    r = record(cfg)
    for t in range(5):
        r, _ = ledger.on_access(r, "session-1", T0 + timedelta(seconds=t))
    r, counted = ledger.on_access(r, "session-2", T0)
    assert counted and r.access_count == 2
    assert r.last_access_ms == ledger.to_ms(T0 + timedelta(seconds=4))
    again, counted = ledger.on_access(r, "session-2", T0)
    assert not counted and again == r


def test_duplicate_and_stale_transitions_are_ignored(cfg):
    r = record(cfg, 40)
    move = ledger.next_move(r, T0, cfg.tiering)
    event = {"event_id": move.event_id, "event_time": T0, "video_id": "vid1", "rendition": "720p",
             "from_tier": "hot_tier", "to_tier": "warm_tier", "rule": move.rule_name, "age_days": 40.0}
    moved, applied = ledger.on_transition(r, event, cfg.tiering)
    assert applied and moved.tier == "warm_tier" and moved.transitions == 1
    assert ledger.on_transition(moved, event, cfg.tiering) == (moved, False)
    assert ledger.on_transition(moved, {**event, "event_id": "other"}, cfg.tiering) == (moved, False)


def test_the_same_decision_twice_carries_the_same_event_id(cfg):
    r = record(cfg, 40)
    assert ledger.next_move(r, T0, cfg.tiering).event_id == ledger.next_move(r, T0 + DAY, cfg.tiering).event_id


def test_fold_does_not_depend_on_topic_interleaving(cfg):
    """Replaying three topics from the beginning interleaves them in any order; the rows come out the same."""
    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidA", {"1080p": 2, "480p": 1})
    w.tick()
    for day in range(400):
        clock.advance(days=1)
        if day % 37 == 0:
            w.play("vidA", "480p", f"s{day}")
        w.tick()
    records = [(p, name, r) for p, part in enumerate(w.log) for name, r in part]
    by_topic = {}
    for p, name, r in records:
        by_topic.setdefault("t" if name in ("TierTransition", "RestoreRequest") else name, []).append((p, name, r))
    rng = random.Random(7)
    for _ in range(5):
        queues = [list(q) for q in by_topic.values()]
        rows = {}
        while any(queues):
            q = rng.choice([q for q in queues if q])
            p, name, r = q.pop(0)                  # order kept within a topic, not across topics
            fold_event(rows, name, copy.deepcopy(r), p, cfg.tiering)
        assert rows == w.rows


# ------------------------------------------------------------ restore

def test_restore_waits_for_the_tiers_delay_then_holds(cfg):
    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidR", {"720p": 2, "360p": 1})
    clock.advance(days=100)
    w.tick()
    w.tick()
    assert rendition_row(w.rows, "vidR/720p").tier == "cold_tier"
    w.request_restore("vidR", "720p")
    w.request_restore("vidR", "720p")           # a second request while one runs changes nothing
    w.tick()
    r = rendition_row(w.rows, "vidR/720p")
    assert w.tick() == []
    assert sorted(k for k, _ in w.store.restores) == sorted(
        k for k in w.store.data if k.startswith("hls/vidR/720p/"))            # RestoreObject once per object
    delay = cfg.storage_tiers["cold_tier"].restore_delay
    assert r.restore.ready_at_ms - r.restore.requested_at_ms == delay * 1000
    assert ledger.restore_estimate(r, clock.now()) == delay
    clock.advance(seconds=delay - 1)
    assert w.tick() == []
    clock.advance(seconds=1)
    [move] = w.tick()
    assert (move.from_tier, move.to_tier, move.rule_name) == ("cold_tier", "hot_tier", "restore")
    assert all(o.get("StorageClass") == "STANDARD" for o in w.store.objects("hls/vidR/720p/"))
    assert rendition_row(w.rows, "vidR/360p").tier == "cold_tier"    # only the asked-for rendition
    # held by the restore hold and by the restore tier's retention period, whichever is longer
    hold = max(cfg.tiering_restore_hold, cfg.storage_tiers["hot_tier"].retention_period)
    clock.advance(seconds=hold - 1)
    assert w.tick() == []
    clock.advance(seconds=1)
    [move] = w.tick()
    assert (move.to_tier, move.rule_name) == ("cold_tier", "Low usage")


def test_restore_of_a_warm_rendition_is_not_needed(cfg):
    r = record(cfg, 40, tier="warm_tier")
    request = {"event_id": "x", "event_time": T0, "to_tier": "hot_tier"}
    assert ledger.on_restore_request(r, request, cfg.tiering) == (r, False)


# ------------------------------------------------------------ the worker's loop: replay and restarts

def run_year(cfg, crash_plan=None):
    """Two videos through 400 days; ``crash_plan(world, day)`` may arm a crash before a tick."""
    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidA", {"1080p": 4, "480p": 2})
    w.publish("vidB", {"720p": 3})
    for i in range(15):
        w.play("vidA", "480p", f"a{i}")
    crashes = 0
    for day in range(401):
        if crash_plan:
            crash_plan(w, day)
        try:
            w.tick()
        except Crash:  # a kill: nothing in the worker catches it
            crashes += 1
            w.store.crash_after_copies = None
            w.crash_on_emit = None
            w.restart()
            w.tick()
        clock.advance(days=1)
    return w, crashes


def summary(w):
    return [(t["video_id"], t["rendition"], t["from_tier"], t["to_tier"], t["rule"], t["object_count"])
            for t in sorted(w.transitions(), key=lambda t: (t["video_id"], t["rendition"], t["event_time"]))]


def test_a_year_of_decisions(cfg):
    w, _ = run_year(cfg)
    # each tier's retention period holds a rendition there: warm from day 30 until day 120 (not 90),
    # cold from day 120 until day 485, past the year (so no Archive of the cold ones)
    assert summary(w) == [
        ("vidA", "1080p", "hot_tier", "warm_tier", "Moderate usage", 5),
        ("vidA", "1080p", "warm_tier", "cold_tier", "Low usage", 5),
        ("vidA", "480p", "hot_tier", "warm_tier", "Moderate usage", 3),
        ("vidA", "480p", "warm_tier", "deep_archive_tier", "Archive", 3),
        ("vidB", "720p", "hot_tier", "warm_tier", "Moderate usage", 4),
        ("vidB", "720p", "warm_tier", "cold_tier", "Low usage", 4),
    ]
    by_key = {(t["video_id"], t["rendition"], t["to_tier"]): t for t in w.transitions()}
    assert by_key[("vidA", "1080p", "warm_tier")]["age_days"] == 30
    assert by_key[("vidA", "1080p", "cold_tier")]["age_days"] == 120
    assert by_key[("vidA", "480p", "deep_archive_tier")]["age_days"] == 365
    assert by_key[("vidA", "480p", "deep_archive_tier")]["access_count"] == 15
    classes = {o["Key"].split("/")[2]: o["StorageClass"] for o in w.store.objects("hls/")}
    assert classes == {"1080p": "GLACIER", "480p": "DEEP_ARCHIVE", "720p": "GLACIER"}


def test_replay_from_the_log_gives_the_same_decisions(cfg):
    """Rebuild the rows from the log alone and decide again at each decision's time: same moves, same ids."""
    w, _ = run_year(cfg)
    rows = {}
    for p, part in enumerate(w.log):
        for name, r in part:
            if name == "TierTransition":
                before = rendition_row(rows, ledger.rendition_key(r["video_id"], r["rendition"]))
                again = ledger.next_move(before, r["event_time"], cfg.tiering)
                assert (again.event_id, again.from_tier, again.to_tier, again.rule_name, again.access_count) == (
                    r["event_id"], r["from_tier"], r["to_tier"], r["rule"], r["access_count"])
                assert again.age_days == pytest.approx(r["age_days"])
            fold_event(rows, name, r, p, cfg.tiering)
    assert rows == w.rows


@pytest.mark.parametrize("copies_before_kill", [0, 1, 3])
def test_killed_mid_move_neither_skips_nor_repeats(cfg, copies_before_kill):
    def plan(w, day):
        if day == 90:                       # vidA/1080p and vidB/720p go warm -> cold today
            w.store.copies = 0
            w.store.crash_after_copies = copies_before_kill
    clean, _ = run_year(cfg)
    crashed, crashes = run_year(cfg, plan)
    assert crashes == 1
    assert summary(crashed) == summary(clean)
    assert len(crashed.transitions()) == len(clean.transitions())
    assert crashed.store.copies_per_key == clean.store.copies_per_key
    assert len({t["event_id"] for t in crashed.transitions()}) == len(crashed.transitions())
    assert crashed.store.data.keys() == clean.store.data.keys()
    assert crashed.store.copies_per_key == clean.store.copies_per_key     # no object copied twice


def test_killed_after_the_event_was_acknowledged_does_not_decide_again(cfg):
    def plan(w, day):
        if day == 30:
            w.crash_on_emit = lambda record: record["to_tier"] == "warm_tier"
    clean, _ = run_year(cfg)
    crashed, crashes = run_year(cfg, plan)
    assert crashes == 1
    assert summary(crashed) == summary(clean)
    assert len(crashed.transitions()) == len(clean.transitions())
    assert crashed.store.copies_per_key == clean.store.copies_per_key


def test_a_restarted_worker_waits_until_it_has_folded_the_log(cfg):
    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidA", {"720p": 2})
    w.tick()
    clock.advance(days=31)
    w.fold_log()
    assert len(w.evaluate()) == 1           # decided, moved, emitted; not folded yet (worker dies now)
    w.restart()
    assert w.evaluate() == []               # the gate: the log holds a TierTransition not folded yet
    w.fold_log()
    assert w.evaluate() == []               # folded: the rendition is warm, nothing to do
    assert len(w.transitions()) == 1
    assert w.store.copies == 3


def test_copies_are_verified(cfg):
    from framelog.sinks.tier_mover import TierMoveError, TierMover
    from tests.unit.support.tiering_harness import FakeStore

    store = FakeStore()
    for i in range(3):
        store.put(f"hls/v/720p/s{i}.ts", b"x" * (i + 1))
    mover = TierMover(store)
    report = mover.move("hls/v/720p/", "GLACIER")
    assert (report.object_count, report.copied, report.size_bytes) == (3, 3, 6)
    assert mover.move("hls/v/720p/", "GLACIER").copied == 0          # idempotent
    original = store.set_storage_class

    def lossy(key, storage_class):
        original(key, storage_class)
        store.data[key]["ETag"] = '"corrupted"'
    store.set_storage_class = lossy
    with pytest.raises(TierMoveError, match="content changed"):
        mover.move("hls/v/720p/", "DEEP_ARCHIVE")


def test_a_record_read_before_waiting_for_the_lock_is_not_used(cfg):
    """Two evaluations queued behind each other: the second sees the first one's folded transition."""
    import asyncio

    clock = ManualClock(T0)
    w = World(cfg, clock)
    w.publish("vidA", {"720p": 2})
    w.fold_log()
    clock.advance(days=31)
    candidates = [(p, "vidA/720p") for p in range(3) if rendition_row(w.rows, "vidA/720p")
                  and w.rows["vidA/720p"]["partition"] == p]

    def load(key):
        w.fold_log()                    # the agent folds whatever was emitted meanwhile
        return rendition_row(w.rows, key)

    async def both():
        return await asyncio.gather(w.evaluator.evaluate(candidates, load), w.evaluator.evaluate(candidates, load))
    first, second = asyncio.run(both())
    assert len(first) + len(second) == 1
    assert len(w.transitions()) == 1


def test_the_gate_waits_for_every_source_topic_at_takeover():
    from framelog.pipeline.tiering_evaluator import LogGate

    gate = LogGate()
    assert not gate.open(0, "v/720p")                      # not owned yet
    gate.start(0, {"video.assets": (3, 4), "playback.events": (10, 25), "storage.tier-transitions": (-1, 0)})
    gate.folded("video.assets", 0, 3)
    assert not gate.open(0, "v/720p")                      # the accesses up to offset 24 are not folded yet
    gate.folded("playback.events", 0, 24)
    assert gate.open(0, "v/720p")
    gate.expect("v/720p", 0, 0)                            # just emitted its TierTransition at offset 0
    assert not gate.open(0, "v/720p") and gate.open(0, "v/480p")
    gate.folded("storage.tier-transitions", 0, 0)
    assert gate.open(0, "v/720p")
    gate.forget(0)
    assert not gate.open(0, "v/480p")
