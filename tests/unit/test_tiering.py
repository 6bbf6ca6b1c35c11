"""Tier policy: the seed's rules, every boundary, restore plans and costs."""
import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from framelog.core.clock import Clock, ManualClock, SystemClock
from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.processors.tiering import (
    BYTES_PER_GB,
    DEFAULT_RULE_NAME,
    RenditionState,
    TierChange,
    TierDecision,
    UnknownTierError,
    decide_tier,
    evaluate,
    evaluate_all,
    monthly_cost,
    monthly_cost_by_tier,
    restore_plan,
    rule_matches,
    storage_class,
    tier_for_storage_class,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def state(created_days_ago=0.0, access_count=0, tier="hot_tier", rendition="1080p", now=T0):
    return RenditionState("vid1", rendition, now - timedelta(days=created_days_ago), access_count, None, tier)


# ------------------------------------------------------------ decide_tier

@pytest.mark.parametrize("age, accesses, tier, rule", [
    (0, 0, "hot_tier", "Recent uploads"),
    (0, 10_000, "hot_tier", "Recent uploads"),
    (29, 0, "hot_tier", "Recent uploads"),
    (29.999, 5, "hot_tier", "Recent uploads"),
    (30, 0, "warm_tier", "Moderate usage"),
    (30, 1_000, "warm_tier", "Moderate usage"),
    (89, 0, "warm_tier", "Moderate usage"),
    (89.999, 0, "warm_tier", "Moderate usage"),
    (90, 9, "cold_tier", "Low usage"),
    (90, 10, "warm_tier", DEFAULT_RULE_NAME),
    (90, 0, "cold_tier", "Low usage"),
    (200, 9, "cold_tier", "Low usage"),
    (200, 10, "warm_tier", DEFAULT_RULE_NAME),
    (100, 50, "warm_tier", DEFAULT_RULE_NAME),   # the case no seed rule covers
    (364, 9, "cold_tier", "Low usage"),
    (364, 10, "warm_tier", DEFAULT_RULE_NAME),
    (364.999, 0, "cold_tier", "Low usage"),
    (365, 0, "deep_archive_tier", "Archive"),
    (365, 1_000_000, "deep_archive_tier", "Archive"),
    (3000, 5, "deep_archive_tier", "Archive"),
])
def test_seed_rules_and_boundaries(cfg, age, accesses, tier, rule):
    assert decide_tier(age, accesses, cfg.tiering) == TierDecision(tier, rule)


def test_rejects_negative_inputs(cfg):
    with pytest.raises(ValueError):
        decide_tier(-1, 0, cfg.tiering)
    with pytest.raises(ValueError):
        decide_tier(1, -1, cfg.tiering)


def _cfg_with(mutate):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw = copy.deepcopy(raw)
    mutate(raw)
    return build_config(raw)


def test_rules_and_default_come_from_config():
    def mutate(raw):
        raw["tiering_rules"] = [
            {"name": "Tiny", "max_age_days": 1, "target_tier": "cold_tier"},
            {"name": "Popular", "min_age_days": 1, "max_access_count": 3, "target_tier": "hot_tier"},
        ]
        raw["tiering_default_tier"] = "deep_archive_tier"
    c = _cfg_with(mutate)
    assert decide_tier(0.5, 0, c.tiering) == TierDecision("cold_tier", "Tiny")
    assert decide_tier(1, 2, c.tiering) == TierDecision("hot_tier", "Popular")
    assert decide_tier(1, 3, c.tiering) == TierDecision("deep_archive_tier", "default")


def test_first_matching_rule_wins_in_file_order():
    def mutate(raw):
        raw["tiering_rules"] = [
            {"name": "A", "min_age_days": 10, "target_tier": "cold_tier"},
            {"name": "B", "min_age_days": 5, "target_tier": "warm_tier"},
        ]
    c = _cfg_with(mutate)
    assert decide_tier(11, 0, c.tiering).rule_name == "A"
    assert decide_tier(7, 0, c.tiering).rule_name == "B"


def test_rule_bounds(cfg):
    low_usage = next(r for r in cfg.tiering_rules if r.name == "Low usage")
    assert rule_matches(low_usage, 90, 9)
    assert not rule_matches(low_usage, 89.99, 0)
    assert not rule_matches(low_usage, 90, 10)


# ------------------------------------------------------------ evaluate

def test_no_change_when_already_in_place(cfg):
    assert evaluate(state(10, tier="hot_tier"), T0, cfg.tiering) is None
    assert evaluate(state(100, 50, tier="warm_tier"), T0, cfg.tiering) is None


def test_change_carries_everything_the_event_needs(cfg):
    change = evaluate(state(45, 3, tier="hot_tier"), T0, cfg.tiering)
    assert change == TierChange("vid1", "1080p", "hot_tier", "warm_tier", "Moderate usage", 45.0, 3, T0)


def test_age_boundary_with_a_manual_clock(cfg):
    clock = ManualClock(T0)
    s = RenditionState("vid1", "720p", clock.now(), 0, None, "hot_tier")
    clock.advance(days=30, seconds=-1)
    assert evaluate(s, clock.now(), cfg.tiering) is None
    clock.advance(seconds=1)
    change = evaluate(s, clock.now(), cfg.tiering)
    assert (change.from_tier, change.to_tier, change.rule_name) == ("hot_tier", "warm_tier", "Moderate usage")
    s = s.moved_to(change.to_tier)
    clock.advance(days=60)
    change = evaluate(s, clock.now(), cfg.tiering)
    assert (change.to_tier, change.rule_name, change.age_days) == ("cold_tier", "Low usage", 90.0)
    s = s.moved_to("cold_tier")
    clock.advance(days=275)
    change = evaluate(s, clock.now(), cfg.tiering)
    assert (change.to_tier, change.rule_name, change.age_days) == ("deep_archive_tier", "Archive", 365.0)


def test_accesses_keep_an_old_rendition_out_of_cold(cfg):
    s = state(120, 9, tier="warm_tier")
    assert evaluate(s, T0, cfg.tiering).to_tier == "cold_tier"
    s = s.accessed(T0)
    assert s.access_count == 10 and s.last_access == T0
    assert evaluate(s, T0, cfg.tiering) is None


def test_renditions_are_decided_independently(cfg):
    rarely_watched_4k = state(120, 2, tier="warm_tier", rendition="4K")
    popular_720p = state(120, 500, tier="warm_tier", rendition="720p")
    changes = evaluate_all([rarely_watched_4k, popular_720p], T0, cfg.tiering)
    assert [(c.rendition, c.to_tier) for c in changes] == [("4K", "cold_tier")]


def test_future_creation_time_counts_as_age_zero(cfg):
    s = dataclasses.replace(state(-1, tier="warm_tier"), tier_since=T0 - timedelta(days=1000))   # retention over
    assert s.age_days(T0) == 0
    assert evaluate(s, T0, cfg.tiering).to_tier == "hot_tier"


def test_naive_datetimes_are_rejected(cfg):
    with pytest.raises(ValueError):
        evaluate(state(1), datetime(2025, 3, 1), cfg.tiering)


def test_accessed_keeps_the_latest_access():
    s = state(1).accessed(T0).accessed(T0 - timedelta(hours=1))
    assert s.access_count == 2 and s.last_access == T0


# ------------------------------------------------------------ restore, cost, classes

def test_restore_plan_uses_each_tiers_delay(cfg):
    for name, t in cfg.storage_tiers.items():
        plan = restore_plan(name, T0, cfg.tiering)
        assert plan.estimate_seconds == t.restore_delay
        assert plan.ready_at == T0 + timedelta(seconds=t.restore_delay)
        assert plan.immediate == (t.restore_delay == 0)
    assert restore_plan("hot_tier", T0, cfg.tiering).ready_at == T0
    assert restore_plan("cold_tier", T0, cfg.tiering).ready_at > T0


def test_unknown_tier_is_named(cfg):
    with pytest.raises(UnknownTierError, match="lukewarm_tier"):
        restore_plan("lukewarm_tier", T0, cfg.tiering)
    with pytest.raises(UnknownTierError):
        monthly_cost({"lukewarm_tier": 1}, cfg.tiering)


def test_monthly_cost(cfg):
    prices = {n: t.price_per_gb_month for n, t in cfg.storage_tiers.items()}
    assert monthly_cost({}, cfg.tiering) == 0
    assert monthly_cost({"hot_tier": BYTES_PER_GB}, cfg.tiering) == pytest.approx(prices["hot_tier"])
    sizes = {"hot_tier": 10 * BYTES_PER_GB, "cold_tier": BYTES_PER_GB // 2, "deep_archive_tier": 0}
    by_tier = monthly_cost_by_tier(sizes, cfg.tiering)
    assert by_tier["cold_tier"] == pytest.approx(prices["cold_tier"] / 2)
    assert monthly_cost(sizes, cfg.tiering) == pytest.approx(10 * prices["hot_tier"] + prices["cold_tier"] / 2)
    with pytest.raises(ValueError):
        monthly_cost({"hot_tier": -1}, cfg.tiering)


def test_storage_class_round_trip(cfg):
    for name in cfg.storage_tiers:
        assert tier_for_storage_class(storage_class(name, cfg.tiering), cfg.tiering) == name
    assert tier_for_storage_class("", cfg.tiering) == tier_for_storage_class("STANDARD", cfg.tiering)
    with pytest.raises(UnknownTierError):
        tier_for_storage_class("REDUCED_REDUNDANCY", cfg.tiering)


# ------------------------------------------------------------ clocks

def test_clocks():
    assert isinstance(SystemClock(), Clock) and isinstance(ManualClock(), Clock)
    now = SystemClock().now()
    assert now.tzinfo is not None
    c = ManualClock(1_700_000_000)
    assert c.time() == 1_700_000_000
    c.advance(1.5)
    assert c.time() == 1_700_000_001.5
    c.set(T0)
    assert c.now() == T0
    with pytest.raises(ValueError):
        c.advance(-1)
    with pytest.raises(ValueError):
        ManualClock(datetime(2025, 1, 1))
