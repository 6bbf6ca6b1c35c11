"""The seed's adaptive-bitrate rule, ported, with its switch-tracking bug fixed."""
import copy
import json
import re

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.processors.abr import (
    AUTO,
    REASON_BANDWIDTH,
    REASON_LOW_BUFFER,
    REASON_MANUAL,
    REASON_STARTUP,
    AdaptiveBitrateController,
    QualityDecision,
    average_bandwidth,
    decide_quality,
    fitting_quality,
    js_constants,
    lower_quality,
    reference_cases,
    render_js_constants,
    select_quality,
)


def bw(cfg, name):
    return next(q.bandwidth for q in cfg.hls.quality_levels if q.name == name)


def need(cfg, name):
    """The average bandwidth at which ``name`` just fits."""
    return bw(cfg, name) * cfg.abr.switch_threshold


def ok_buffer(cfg):
    return cfg.abr.low_buffer_seconds


def low_buffer(cfg):
    return cfg.abr.low_buffer_seconds - 0.001


# ------------------------------------------------------------ the rule

@pytest.mark.parametrize("name", ["4K", "1080p", "720p", "480p", "360p"])
def test_each_level_fits_exactly_at_its_threshold(cfg, name):
    assert select_quality(need(cfg, name), ok_buffer(cfg), None, cfg.abr, cfg.hls.quality_levels) == name


@pytest.mark.parametrize("name, below", [("4K", "1080p"), ("1080p", "720p"), ("720p", "480p"), ("480p", "360p")])
def test_just_below_a_threshold_picks_the_next_level_down(cfg, name, below):
    assert select_quality(need(cfg, name) - 1, ok_buffer(cfg), None, cfg.abr, cfg.hls.quality_levels) == below


def test_seed_numbers(cfg):
    # switch_threshold 0.8: 4 Mbit/s is enough for 1080p (5 Mbit/s * 0.8)
    assert select_quality(4_000_000, 10, None, cfg.abr, cfg.hls.quality_levels) == "1080p"
    assert select_quality(3_999_999, 10, None, cfg.abr, cfg.hls.quality_levels) == "720p"
    assert select_quality(100_000_000, 10, None, cfg.abr, cfg.hls.quality_levels) == "4K"


def test_no_bandwidth_falls_back_to_the_lowest(cfg):
    assert select_quality(0, 30, None, cfg.abr, cfg.hls.quality_levels) == "360p"
    assert select_quality(0, 30, "4K", cfg.abr, cfg.hls.quality_levels) == "360p"


def test_low_buffer_steps_one_level_down(cfg):
    plenty = need(cfg, "4K") * 10
    d = decide_quality(plenty, low_buffer(cfg), "1080p", cfg.abr, cfg.hls.quality_levels)
    assert d == QualityDecision("720p", REASON_LOW_BUFFER)
    assert select_quality(plenty, low_buffer(cfg), "4K", cfg.abr, cfg.hls.quality_levels) == "1080p"


def test_buffer_exactly_at_the_threshold_is_not_low(cfg):
    assert decide_quality(need(cfg, "4K"), cfg.abr.low_buffer_seconds, "1080p", cfg.abr, cfg.hls.quality_levels) == \
        QualityDecision("4K", REASON_BANDWIDTH)


def test_low_buffer_at_the_lowest_level_never_switches_up(cfg):
    # the seed fell through to the bandwidth rule here and could pick 4K while starving
    assert select_quality(need(cfg, "4K"), low_buffer(cfg), "360p", cfg.abr, cfg.hls.quality_levels) == "360p"


def test_low_buffer_takes_the_bandwidth_choice_when_it_is_lower(cfg):
    assert select_quality(need(cfg, "480p"), low_buffer(cfg), "4K", cfg.abr, cfg.hls.quality_levels) == "480p"


def test_low_buffer_without_a_current_quality_uses_bandwidth(cfg):
    assert decide_quality(need(cfg, "720p"), 0, None, cfg.abr, cfg.hls.quality_levels) == \
        QualityDecision("720p", REASON_BANDWIDTH)
    assert select_quality(need(cfg, "720p"), 0, "unknown", cfg.abr, cfg.hls.quality_levels) == "720p"


def test_available_levels_restrict_the_choice(cfg):
    ladder = [q for q in cfg.hls.quality_levels if q.name in ("720p", "480p")]
    assert select_quality(need(cfg, "4K") * 2, 30, None, cfg.abr, ladder) == "720p"
    assert select_quality(0, 30, None, cfg.abr, ladder) == "480p"
    assert lower_quality("480p", ladder) is None
    assert lower_quality("720p", ladder).name == "480p"
    with pytest.raises(ValueError):
        fitting_quality(1, cfg.abr, [])


def test_threshold_comes_from_config():
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    raw["abr"]["switch_threshold"] = 1.0
    raw["abr"]["low_buffer_seconds"] = 2
    c = build_config(raw)
    assert select_quality(4_999_999, 10, None, c.abr, c.hls.quality_levels) == "720p"
    assert select_quality(5_000_000, 10, None, c.abr, c.hls.quality_levels) == "1080p"
    assert select_quality(5_000_000, 2, "1080p", c.abr, c.hls.quality_levels) == "1080p"
    assert select_quality(5_000_000, 1.9, "1080p", c.abr, c.hls.quality_levels) == "720p"


def test_average_uses_the_last_n_samples(cfg):
    n = cfg.abr.bandwidth_history
    assert average_bandwidth([], cfg.abr) == 0
    samples = [1_000_000] * 5 + [3_000_000] * n
    assert average_bandwidth(samples, cfg.abr) == 3_000_000
    assert average_bandwidth([1, 2, 3], cfg.abr) == 2


# ------------------------------------------------------------ the controller

def test_controller_keeps_the_last_n_measurements(cfg):
    c = AdaptiveBitrateController(cfg.abr, cfg.hls.quality_levels)
    for i in range(cfg.abr.bandwidth_history + 5):
        c.measure(1_000_000 * (i + 1), 20, i)
    assert len(c.history) == cfg.abr.bandwidth_history
    assert c.average_bandwidth() == average_bandwidth([1_000_000 * (i + 1) for i in range(15)], cfg.abr)
    with pytest.raises(ValueError):
        c.measure(-1, 0, 0)


def test_switch_events_record_the_quality_left(cfg):
    """Seed bug: trackQualitySwitch read currentQuality after it was overwritten (from == to)."""
    c = AdaptiveBitrateController(cfg.abr, cfg.hls.quality_levels)
    c.measure(need(cfg, "1080p"), 20, 0)
    first = c.adjust(20, 0)
    assert (first.from_quality, first.to_quality, first.reason) == (AUTO, "1080p", REASON_STARTUP)
    second = c.adjust(low_buffer(cfg), 5)
    assert (second.from_quality, second.to_quality, second.reason) == ("1080p", "720p", REASON_LOW_BUFFER)
    assert second.bandwidth == need(cfg, "1080p") and second.buffer_level == low_buffer(cfg)
    assert second.timestamp == 5
    assert c.current == "720p"


def test_no_event_when_nothing_changes(cfg):
    c = AdaptiveBitrateController(cfg.abr, cfg.hls.quality_levels, current="720p")
    c.measure(need(cfg, "720p"), 20, 0)
    assert c.adjust(20, 0) is None
    assert c.current == "720p"


def test_manual_override(cfg):
    c = AdaptiveBitrateController(cfg.abr, cfg.hls.quality_levels, current="720p")
    c.measure(need(cfg, "4K") * 2, 20, 0)
    s = c.set_manual("480p", 20, 1)
    assert (s.from_quality, s.to_quality, s.reason) == ("720p", "480p", REASON_MANUAL)
    assert c.adjust(20, 2) is None and c.adjust(0, 3) is None   # neither bandwidth nor buffer override it
    assert c.current == "480p"
    assert c.set_manual("480p", 20, 4) is None
    c.set_auto()
    s = c.adjust(20, 5)
    assert (s.from_quality, s.to_quality) == ("480p", "4K")
    with pytest.raises(ValueError):
        c.set_manual("8K", 20, 6)


def test_manual_choice_before_any_adjust(cfg):
    s = AdaptiveBitrateController(cfg.abr, cfg.hls.quality_levels).set_manual("720p", 20, 0)
    assert (s.from_quality, s.to_quality, s.reason) == (AUTO, "720p", REASON_MANUAL)


def test_reasons_are_symbols_of_the_quality_switch_schema():
    import pathlib
    avsc = pathlib.Path(__file__).parents[2] / "src" / "framelog" / "schemas" / "QualitySwitch.avsc"
    schema = json.loads(avsc.read_text())
    reason = next(f for f in schema["fields"] if f["name"] == "reason")["type"]
    assert {REASON_BANDWIDTH, REASON_LOW_BUFFER, REASON_MANUAL, REASON_STARTUP} <= set(reason["symbols"])


def test_controller_with_the_videos_own_ladder(cfg):
    ladder = [q for q in cfg.hls.quality_levels if q.name in ("720p", "480p", "360p")]
    c = AdaptiveBitrateController(cfg.abr, levels=ladder)
    c.measure(need(cfg, "4K"), 20, 0)
    assert c.adjust(20, 0).to_quality == "720p"
    with pytest.raises(ValueError):
        c.set_manual("1080p", 20, 1)
    with pytest.raises(ValueError):
        AdaptiveBitrateController(cfg.abr, levels=[])


# ------------------------------------------------------------ JavaScript constants

def test_js_constants(cfg):
    k = js_constants(cfg.abr, cfg.hls.quality_levels)
    assert k["checkIntervalMs"] == int(cfg.abr.check_interval * 1000) == 5000
    assert k["bandwidthHistory"] == cfg.abr.bandwidth_history
    assert k["lowBufferSeconds"] == cfg.abr.low_buffer_seconds
    assert k["switchThreshold"] == cfg.abr.switch_threshold
    assert [q["name"] for q in k["qualityLevels"]] == ["360p", "480p", "720p", "1080p", "4K"]
    assert k["qualityLevels"][-1] == {"name": "4K", "width": 3840, "height": 2160, "bandwidth": 15_000_000}


def test_render_js_constants(cfg):
    src = render_js_constants(cfg.abr, cfg.hls.quality_levels, cfg.source.name)
    m = re.search(r"const FRAMELOG_ABR = Object\.freeze\((.*)\);\n$", src, re.S)
    assert m and json.loads(m.group(1)) == js_constants(cfg.abr, cfg.hls.quality_levels)
    assert src.startswith("// Generated")
    exported = render_js_constants(cfg.abr, cfg.hls.quality_levels, cfg.source.name, "ABR", export=True)
    assert exported.splitlines()[1].startswith("export const ABR = ")
    with pytest.raises(ValueError):
        render_js_constants(cfg.abr, cfg.hls.quality_levels, cfg.source.name, "not an identifier")


def test_reference_cases_agree_with_the_rule(cfg):
    cases = reference_cases(cfg.abr, cfg.hls.quality_levels)
    assert len(cases) > 20
    json.dumps(cases)  # serialisable for the player's tests
    for case in cases:
        got = select_quality(case["bandwidth"], case["bufferLevel"], case["current"], cfg.abr, cfg.hls.quality_levels)
        assert got == case["expected"]
    assert {c["expected"] for c in cases} == {q.name for q in cfg.hls.quality_levels}
