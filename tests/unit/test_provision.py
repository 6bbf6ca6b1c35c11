"""`framelog init` (ops/provision.py): which errors it waits out, and its deadline."""
from __future__ import annotations

import dataclasses
import socket
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from framelog.cli.main import build_parser
from framelog.ops.provision import InitError, InitReport, _bucket, initialise, retry_until, still_starting
from framelog.streams.admin import TopicsSummary


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateBucket")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_starting_service_is_waited_for_a_refusal_is_not():
    assert still_starting(ConnectionRefusedError())
    assert still_starting(EndpointConnectionError(endpoint_url="http://s3:8333"))
    assert still_starting(_client_error(503, "ServiceUnavailable"))
    assert not still_starting(_client_error(403, "InvalidAccessKeyId"))
    assert not still_starting(ValueError("bad"))


def test_a_group_coordinator_still_loading_is_waited_for():
    """A fresh or restarted broker answers NOT_COORDINATOR until it loads __consumer_offsets (framelog groups)."""
    from confluent_kafka import KafkaError, KafkaException

    assert still_starting(KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)))
    assert still_starting(KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)))
    assert not still_starting(KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)))


def test_a_refusal_fails_at_once_naming_the_service():
    calls = []

    def step(timeout: float) -> None:
        calls.append(timeout)
        raise _client_error(403, "InvalidAccessKeyId")

    started = time.monotonic()
    with pytest.raises(InitError, match="object storage.*InvalidAccessKeyId"):
        retry_until("object storage", step, time.monotonic() + 60)
    assert len(calls) == 1 and time.monotonic() - started < 5


def test_a_step_that_recovers_returns_its_value():
    attempts = iter([ConnectionRefusedError(), ConnectionRefusedError(), "done"])

    def step(timeout: float) -> str:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    assert retry_until("kafka", step, time.monotonic() + 30) == "done"


def test_unreachable_storage_fails_after_the_deadline(config):
    cfg = dataclasses.replace(config, object_storage=dataclasses.replace(   # any key pair: nothing answers
        config.object_storage, endpoint_url=f"http://127.0.0.1:{_closed_port()}", access_key="a", secret_key="b"))
    started = time.monotonic()
    with pytest.raises(InitError, match="object storage at http://127.0.0.1:.* not reachable before the deadline"):
        retry_until("object storage at " + cfg.object_storage.endpoint_url, lambda t: _bucket(cfg, t),
                    time.monotonic() + 2)
    assert time.monotonic() - started < 15


def test_unreachable_kafka_fails_after_the_deadline(config, monkeypatch):
    monkeypatch.setenv("FRAMELOG_KAFKA_USERNAME", "admin")      # any credentials: nothing answers
    monkeypatch.setenv("FRAMELOG_KAFKA_PASSWORD", "unused")
    cfg = dataclasses.replace(config, kafka=dataclasses.replace(
        config.kafka, bootstrap_servers=f"127.0.0.1:{_closed_port()}"))
    with pytest.raises(InitError, match="kafka at 127.0.0.1:.* not reachable"):
        initialise(cfg, timeout=2)


def test_report_lines():
    summary = TopicsSummary(created=["video.uploads"], unchanged=["cdn.commands"])
    lines = InitReport(summary, "framelog", True, [1, 2]).lines()
    assert lines[0] == "topics: created 1, updated 0, unchanged 1"
    assert "bucket framelog: created" in lines
    assert lines[-1] == "clickhouse migrations applied: 0001, 0002"
    assert InitReport(summary, "framelog", False, []).lines()[-2:] == [
        "bucket framelog: exists", "clickhouse migrations applied: none pending"]
    assert "embedded engine" in InitReport(summary, "framelog", False, None).lines()[-1]


def test_cli_parses_init():
    args = build_parser().parse_args(["init", "--timeout", "5"])
    assert args.timeout == 5.0 and args.func.__name__ == "_init"
