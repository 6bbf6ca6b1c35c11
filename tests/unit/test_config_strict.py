"""A misspelt key is an error naming it and the nearest valid name; every key can come from the environment."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config, load_config, merge_overlay
from framelog.core.config_env import ENV_ALIASES
from framelog.core.errors import ConfigError
from framelog.stack.private_stack import private_overlay

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def raw():
    return copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))


def refused(data, environ=None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        build_config(data, environ=environ or {})
    return err.value


@pytest.mark.parametrize("mutate, key, suggestion", [
    (lambda d: d.__setitem__("anaytics", {}), "anaytics", "analytics"),                                  # top level
    (lambda d: d["abr"].__setitem__("check_intervall", "5s"), "abr.check_intervall", "check_interval"),  # nested
    (lambda d: d["media"]["captions"].__setitem__("max_cue_word", 3), "media.captions.max_cue_word",
     "max_cue_words"),                                                                                   # deeper
    (lambda d: d["processing_pipeline"]["stages"][1].__setitem__("paralel_jobs", 8),
     "processing_pipeline.stages[1].paralel_jobs", "parallel_jobs"),                                     # list item
    (lambda d: d["storage_tiers"]["cold_tier"].__setitem__("restore_dealy", "1h"),
     "storage_tiers.cold_tier.restore_dealy", "restore_delay"),                                          # named map
    (lambda d: d["kafka"]["security"].__setitem__("mechanisms", "SCRAM-SHA-256"), "kafka.security.mechanisms",
     "mechanism"),
    (lambda d: d["caching_rules"].__setitem__("hls_segment", d["caching_rules"]["hls_segments"]),
     "caching_rules.hls_segment", "hls_segments"),
])
def test_an_unknown_key_is_refused_with_its_path_and_the_nearest_name(raw, mutate, key, suggestion):
    mutate(raw)
    err = refused(raw)
    assert err.key == key
    assert str(err) == f"{key}: unknown key (did you mean {suggestion}?)"


def test_a_key_near_nothing_lists_the_valid_ones(raw):
    raw["abr"]["zzz"] = 1
    assert str(refused(raw)) == ("abr.zzz: unknown key (valid here: check_interval, bandwidth_history, "
                                 "low_buffer_seconds, switch_threshold)")


def test_an_unknown_key_in_an_overlay_names_the_overlay(tmp_path, monkeypatch):
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("processing_pipeline:\n  stages:\n    - {name: validation, timeout: 30s, retry_attempts: 1,"
                       " paralel_jobs: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(overlay=overlay)
    assert err.value.key == "processing_pipeline.stages[0].paralel_jobs"
    assert str(err.value) == (f"processing_pipeline.stages[0].paralel_jobs: unknown key (did you mean parallel_jobs?)"
                              f" (set by the overlay {overlay})")


def test_a_wrong_type_is_refused_not_coerced(raw):
    raw["analytics"]["sink_batch_max_rows"] = "5000"
    err = refused(raw)
    assert err.key == "analytics.sink_batch_max_rows" and "valid integer" in str(err)
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["auth"]["anonymous_upload"] = "yes"
    assert refused(raw).key == "auth.anonymous_upload"


def test_every_problem_is_told_the_first_one_is_the_key(raw):
    raw["abr"]["bandwidth_history"] = 0
    raw["player"]["event_batch_mx"] = 5
    err = refused(raw)
    assert err.key == "abr.bandwidth_history"
    assert "player.event_batch_mx: unknown key (did you mean event_batch_max?)" in str(err)


def test_a_nested_number_comes_from_the_environment(raw):
    cfg = build_config(raw, environ={"FRAMELOG__PROCESSING_PIPELINE__STAGES__TRANSCODING__TIMEOUT": "60",
                                     "FRAMELOG__processing_pipeline__stages__0__retry_attempts": "7",
                                     "FRAMELOG__ANALYTICS__SINK_BATCH_MAX_AGE": "250ms",
                                     "FRAMELOG__STORAGE_TIERS__HOT_TIER__PRICE_PER_GB_MONTH": "0.5"})
    assert cfg.pipeline.stage("transcoding").timeout == 60
    assert cfg.pipeline.stage("validation").retry_attempts == 7
    assert cfg.analytics.sink_batch_max_age == 0.25
    assert cfg.storage_tiers["hot_tier"].price_per_gb_month == 0.5
    assert cfg.pipeline.stage("transcoding").parallel_jobs == 4          # the rest of the item stays


def test_lists_and_mappings_come_from_the_environment_as_yaml(raw):
    cfg = build_config(raw, environ={"FRAMELOG__PLAYBACK_TRUST__TRUSTED_PROXIES": "[10.0.0.0/8, 192.168.0.0/16]",
                                     "FRAMELOG__PROCESSING_PRIORITIES__WORKSPACES": '{"newsroom": "high"}',
                                     "FRAMELOG__MEDIA__CAPTIONS__ENABLED": "false"})
    assert cfg.playback_trust.trusted_proxies == ("10.0.0.0/8", "192.168.0.0/16")
    assert cfg.priorities.resolve(None, "newsroom") == "high"
    assert cfg.media.captions.enabled is False


def test_a_misspelt_variable_is_refused_naming_it(raw):
    err = refused(raw, {"FRAMELOG__ABR__SWITCH_TRESHOLD": "0.5"})
    assert str(err) == ("abr.switch_treshold: unknown key (did you mean switch_threshold?) "
                        "(set by FRAMELOG__ABR__SWITCH_TRESHOLD)")
    err = refused(raw, {"FRAMELOG__PROCESSING_PIPELINE__STAGES__TRANSCODNG__TIMEOUT": "60"})
    assert err.key == "FRAMELOG__PROCESSING_PIPELINE__STAGES__TRANSCODNG__TIMEOUT" and "'transcoding'" in str(err)
    err = refused(raw, {"FRAMELOG__ABR__SWITCH_THRESHOLD": "often"})
    assert err.key == "abr.switch_threshold" and "FRAMELOG__ABR__SWITCH_THRESHOLD" in str(err)


def test_the_older_variables_still_work_and_the_rule_wins_over_them(raw):
    cfg = build_config(raw, environ={"FRAMELOG_S3_ENDPOINT": "http://s3:8333", "FRAMELOG_STATE_DIR": "/srv/state",
                                     "FRAMELOG_KAFKA_BOOTSTRAP": "kafka:9092", "FRAMELOG_CLICKHOUSE_DSN": "",
                                     "FRAMELOG__KAFKA__BOOTSTRAP_SERVERS": "broker:9092"})
    assert cfg.object_storage.endpoint_url == "http://s3:8333" and cfg.stack.state_dir == Path("/srv/state")
    assert cfg.kafka.bootstrap_servers == "broker:9092"
    assert cfg.clickhouse.dsn == ""                                     # an empty older variable is unset


def test_secrets_come_from_the_environment_only(raw, tmp_path, monkeypatch):
    cfg = build_config(raw, environ={"FRAMELOG_S3_ACCESS_KEY": "AK", "FRAMELOG__OBJECT_STORAGE__SECRET_KEY": "SK",
                                     "FRAMELOG_KEYRING": "{}"})
    assert (cfg.object_storage.access_key, cfg.object_storage.secret_key, cfg.auth.keyring_json) == ("AK", "SK", "{}")
    monkeypatch.delenv("FRAMELOG_CONFIG_OVERLAY", raising=False)
    overlay = tmp_path / "keys.yaml"
    overlay.write_text("auth:\n  keyring_json: '{}'\n")
    with pytest.raises(ConfigError, match=r"^auth.keyring_json: .*in the overlay"):
        load_config(overlay=overlay)


def test_every_alias_names_a_key_of_the_schema(raw):
    environ = {name: "/x" if name == "FRAMELOG_STATE_DIR" else "v" for name in ENV_ALIASES}
    environ["FRAMELOG_KEYRING"] = "{}"
    cfg = build_config(raw, environ=environ)
    for name, (section, key) in ENV_ALIASES.items():
        value = getattr(getattr(cfg, section), key)
        assert str(value) == environ[name], name


def test_the_packaged_file_the_private_stack_overlay_and_compose_environment_load(raw):
    build_config(raw, environ={})
    build_config(merge_overlay(raw, private_overlay(raw, 97 * 4, "/tmp/state")), environ={})
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)      # "- NAME" passes the host's on
        environ = {k: re.sub(r"\$\{[^}]*\}", "x" * 40, str(v)) for k, v in env.items() if k.startswith("FRAMELOG")}
        if environ:
            build_config(raw, environ=environ)
