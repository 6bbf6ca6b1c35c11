"""Retention periods hold objects in their tier; the Archive rule's popularity guard."""
from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.core.errors import ConfigError
from framelog.processors.tiering import RenditionState, evaluate, retention_until

T0 = datetime(2026, 6, 1, tzinfo=UTC)
RAW = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
CFG = build_config(RAW)


def state(age_days, tier, *, in_tier_days=None, accesses=0, last_view_days=None):
    return RenditionState("v1", "720p", T0 - timedelta(days=age_days), accesses,
                          None if last_view_days is None else T0 - timedelta(days=last_view_days), tier,
                          None if in_tier_days is None else T0 - timedelta(days=in_tier_days))


@pytest.mark.parametrize("tier, age, rule_wants", [("warm_tier", 200, "cold_tier"),
                                                    ("cold_tier", 400, "deep_archive_tier")])
def test_no_rule_moves_an_object_before_its_tiers_retention_period(tier, age, rule_wants):
    days = CFG.storage_tiers[tier].retention_period / 86400
    assert evaluate(state(age, tier, in_tier_days=days - 1), T0, CFG.tiering) is None
    assert evaluate(state(age, tier, in_tier_days=days), T0, CFG.tiering).to_tier == rule_wants
    assert retention_until(state(age, tier, in_tier_days=1), CFG.tiering) == T0 + timedelta(days=days - 1)


def test_archive_waits_while_the_rendition_is_still_watched():
    watched = state(400, "cold_tier", in_tier_days=400, last_view_days=3)
    assert evaluate(watched, T0, CFG.tiering) is None
    idle = state(400, "cold_tier", in_tier_days=400, last_view_days=31)
    assert evaluate(idle, T0, CFG.tiering).rule_name == "Archive"
    raw = copy.deepcopy(RAW)                                  # the seed's age-only Archive rule: key removed
    del raw["tiering_rules"][0]["min_idle_days"]
    assert evaluate(watched, T0, build_config(raw).tiering).rule_name == "Archive"


def test_an_unknown_retention_lock_is_refused_naming_the_key():
    raw = copy.deepcopy(RAW)
    raw["storage_tiers"]["deep_archive_tier"]["retention_lock"] = "forever"
    with pytest.raises(ConfigError, match="deep_archive_tier.retention_lock"):
        build_config(raw)


def test_a_video_in_a_locked_tier_cannot_be_deleted_before_its_retention_ends():
    from framelog.processors.tiering import deletion_hold

    archived = state(800, "deep_archive_tier", in_tier_days=100)
    cold = state(800, "cold_tier", in_tier_days=10)
    hold = deletion_hold([archived, cold], T0, CFG.tiering)
    assert hold is not None and hold.renditions == ("720p",) and hold.tier == "deep_archive_tier"
    assert hold.until == T0 + timedelta(days=2555 - 100)
    assert "compliance retention" in hold.reason and hold.until.strftime("%Y-%m-%d") in hold.reason
    assert deletion_hold([state(3000, "deep_archive_tier", in_tier_days=2555), cold], T0, CFG.tiering) is None
    assert deletion_hold([cold], T0, CFG.tiering) is None
