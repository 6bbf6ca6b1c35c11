"""The configuration file carries the seed's numbers and rejects bad keys by name."""
import copy

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config, load_config, parse_duration
from framelog.core.errors import ConfigError


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_default_file_carries_the_seed_numbers():
    cfg = load_config()
    assert [s.name for s in cfg.pipeline.stages] == [
        "validation", "transcoding", "thumbnail_generation", "ai_processing", "optimization", "cdn_upload"]
    assert cfg.pipeline.stage("validation").timeout == 30
    assert cfg.pipeline.stage("transcoding").timeout == 30 * 60
    assert cfg.pipeline.stage("transcoding").retry_attempts == 2
    assert cfg.pipeline.stage("transcoding").parallel_jobs == 4
    assert [q.name for q in cfg.hls.quality_levels] == ["4K", "1080p", "720p", "480p", "360p"]
    assert cfg.hls.segment_duration == 10
    assert cfg.cdn.caching_rules["video_files"].cache_duration == 30 * 86400
    assert cfg.cdn.caching_rules["hls_playlists"].cache_duration == 3600
    assert cfg.abr.switch_threshold == 0.8 and cfg.abr.bandwidth_history == 10
    assert cfg.caching.popular_view_count == 1000
    assert {r.name for r in cfg.tiering_rules} == {"Recent uploads", "Moderate usage", "Low usage", "Archive"}


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["processing_pipeline"]["stages"][1].__setitem__("timeout", "soon"),
     "processing_pipeline.stages[1].timeout"),
    (lambda d: d["hls_config"]["quality_levels"][0].pop("bandwidth"), "hls_config.quality_levels[0].bandwidth"),
    (lambda d: d["tiering_rules"][0].__setitem__("target_tier", "lukewarm_tier"), "tiering_rules[0].target_tier"),
    (lambda d: d["cdn_strategy"]["routing_rules"][0].__setitem__("primary", "akamai"),
     "cdn_strategy.routing_rules[0].primary"),
    (lambda d: d["abr"].__setitem__("switch_threshold", 3), "abr.switch_threshold"),
    (lambda d: d.pop("caching_rules"), "caching_rules"),
])
def test_bad_key_is_named(raw, mutate, key):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ConfigError) as err:
        build_config(data)
    assert err.value.key == key
    assert key in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("30d", 2592000), (12, 12)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_overlay_changes_only_the_keys_it_names(tmp_path, monkeypatch):
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)   # the base is the file alone
    overlay = tmp_path / "ports.yaml"
    overlay.write_text("stack:\n  kafka_port: 32092\nkafka:\n  bootstrap_servers: '127.0.0.1:32092'\n")
    cfg = load_config(overlay=overlay)
    base = load_config()
    assert cfg.stack.kafka_port == 32092 and cfg.kafka.bootstrap_servers == "127.0.0.1:32092"
    assert cfg.stack.seaweed_s3_port == base.stack.seaweed_s3_port
    assert cfg.pipeline == base.pipeline and cfg.tiering_rules == base.tiering_rules


def test_overlay_with_a_bad_value_names_the_key(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("abr:\n  switch_threshold: 7\n")
    with pytest.raises(ConfigError, match="abr.switch_threshold"):
        load_config(overlay=overlay)
