"""The tiering simulator: the same decisions as the worker over a small synthetic catalogue."""
from framelog.core.config import DEFAULT_CONFIG_PATH, load_config
from framelog.ops.tiering_simulator import age_only, report_markdown, simulate


def test_a_small_year_is_cheaper_tiered_and_deterministic():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    result = simulate(cfg.pipeline, cfg.tiering, videos=40, days=200, seed=3)
    rules, ages, hot = result.policies
    assert len(rules.monthly) == 7 and rules.monthly[-1]["days"] == 20
    assert rules.period_cost() < hot.period_cost() and ages.period_cost() < hot.period_cost()
    assert ages.restores >= rules.restores         # age-only rules send watched renditions cold: restores
    assert hot.transitions == 0 and hot.restores == 0
    tiers = {r.tier for r in rules.records.values()}
    assert {"warm_tier", "cold_tier"} <= tiers
    again = simulate(cfg.pipeline, cfg.tiering, videos=40, days=200, seed=3)
    assert report_markdown(again) == report_markdown(result)
    assert "| 7 |" in report_markdown(result)


def test_age_only_drops_the_access_bounds():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert all(r.max_access_count is None for r in age_only(cfg.tiering).rules)
    assert [r.name for r in age_only(cfg.tiering).rules] == [r.name for r in cfg.tiering_rules]
