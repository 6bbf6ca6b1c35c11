"""Generated credentials: private files, stable once written, extended for new principals; env overrides."""
from __future__ import annotations

import dataclasses
import os
import stat

import pytest

from framelog.core.config import ConfigError, build_config, get_config
from framelog.core.errors import FramelogError
from framelog.core.service_credentials import (
    MissingCredentials,
    ensure_kafka_passwords,
    ensure_s3_identities,
    kafka_credentials_path,
    read_json,
)
from framelog.sinks.s3 import s3_credentials
from framelog.stack.seaweed import s3_identities
from framelog.streams.kafka_auth import API, as_principal, client_settings, principals


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    for name in ("FRAMELOG_KAFKA_USERNAME", "FRAMELOG_KAFKA_PASSWORD", "FRAMELOG_S3_ACCESS_KEY",
                 "FRAMELOG_S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    base = get_config()
    return dataclasses.replace(base, stack=dataclasses.replace(base.stack, state_dir=tmp_path / "state"))


def test_passwords_are_private_stable_and_extended(cfg):
    first = ensure_kafka_passwords(cfg.stack.state_dir, ["admin", "api"])
    path = kafka_credentials_path(cfg.stack.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(set(first.values())) == 2 and all(len(p) >= 40 for p in first.values())
    again = ensure_kafka_passwords(cfg.stack.state_dir, ["admin", "api", "worker-new"])
    assert {k: again[k] for k in first} == first and "worker-new" in again
    assert [n for n in os.listdir(path.parent) if n.endswith(".tmp")] == []


def test_a_loosened_file_is_refused(cfg):
    ensure_kafka_passwords(cfg.stack.state_dir, ["admin"])
    os.chmod(kafka_credentials_path(cfg.stack.state_dir), 0o644)
    with pytest.raises(FramelogError, match="readable by others"):
        read_json(kafka_credentials_path(cfg.stack.state_dir))


def test_client_settings_use_the_principal_or_the_environment(cfg, monkeypatch):
    passwords = ensure_kafka_passwords(cfg.stack.state_dir, principals(cfg.pipeline))
    settings = client_settings(as_principal(cfg.kafka, API), cfg.stack)
    assert settings["sasl.username"] == API and settings["sasl.password"] == passwords[API]
    assert settings["security.protocol"] == "SASL_PLAINTEXT" and settings["sasl.mechanism"].startswith("SCRAM-")
    monkeypatch.setenv("FRAMELOG_KAFKA_USERNAME", "from-env")
    monkeypatch.setenv("FRAMELOG_KAFKA_PASSWORD", "pw")
    assert client_settings(cfg.kafka, cfg.stack)["sasl.username"] == "from-env"


def test_missing_credentials_name_the_fix(cfg):
    with pytest.raises(MissingCredentials, match="stack up"):
        client_settings(cfg.kafka, cfg.stack)
    with pytest.raises(MissingCredentials, match="stack up"):
        s3_credentials(cfg.object_storage, cfg.stack.state_dir)


def test_s3_identities_and_their_scopes(cfg):
    keys = ensure_s3_identities(cfg.stack.state_dir, ["pipeline", "media"])
    state_dir = cfg.stack.state_dir
    pipeline = keys["pipeline"]
    assert s3_credentials(cfg.object_storage, state_dir) == (pipeline["access_key"], pipeline["secret_key"])
    media = dataclasses.replace(cfg.object_storage, identity="media")
    assert s3_credentials(media, state_dir)[0] == keys["media"]["access_key"] != keys["pipeline"]["access_key"]
    doc = {i["name"]: i["actions"] for i in s3_identities(["framelog", "framelog-vault"], keys)["identities"]}
    assert "Admin" in doc["pipeline"]
    assert not any("keys" in a or a in ("Admin", "Read", "Write") for a in doc["media"])
    assert "Read:framelog/hls/*" in doc["media"] and "Write:framelog-vault/hls/*" in doc["media"]


def test_credentials_in_the_configuration_file_are_refused():
    raw = dict(get_config().raw)
    raw["object_storage"] = {**raw["object_storage"], "access_key": "framelog", "secret_key": "x"}
    with pytest.raises(ConfigError, match="object_storage.access_key"):
        build_config(raw)
    raw = dict(get_config().raw)
    raw["kafka"] = {**raw["kafka"], "security": {"protocol": "PLAINTEXT", "mechanism": "SCRAM-SHA-512"}}
    with pytest.raises(ConfigError, match="kafka.security.protocol"):
        build_config(raw)
