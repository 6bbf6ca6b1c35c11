"""The embedded stack (stack/): real Kafka and SeaweedFS processes, started, stopped, crashed."""
from __future__ import annotations

import dataclasses
import socket
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from framelog.sinks.s3 import s3_client
from framelog.stack import cli
from framelog.stack.manager import Stack
from framelog.stack.process import StackError, port_open
from framelog.streams.admin import admin_client
from tests.integration.support import read_values, write_values

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- helpers

def admin(config) -> AdminClient:
    return admin_client(config.kafka, config.stack)


def create_topic(config, partitions: int = 1) -> str:
    name = f"test.stack.{uuid.uuid4().hex[:12]}"
    client = admin(config)  # keep the handle alive until the future resolves
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)
    return name


def delete_topic(config, name: str) -> None:
    client = admin(config)
    client.delete_topics([name])[name].result(timeout=30)


def topic_names(config) -> set[str]:
    return set(admin(config).list_topics(timeout=10).topics)


# ---------------------------------------------------------------- tests

def test_up_is_idempotent(stack, config):
    pids = {c.name: c.pid() for c in stack.processes}
    again = Stack(config)
    outcome = again.up()
    assert outcome["kafka"] == "already running"
    assert outcome["seaweed"] == "already running"
    assert {c.name: c.pid() for c in again.processes} == pids
    assert cli.stack_up(config) == 0


def test_kafka_answers_metadata(stack, config):
    md = admin(config).list_topics(timeout=10)
    assert list(md.brokers) == [1]
    broker = md.brokers[1]
    assert (broker.host, broker.port) == (config.stack.host, config.stack.kafka_port)
    assert md.controller_id == 1


def test_s3_put_get_round_trip(stack, config):
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    key = f"test/stack/{uuid.uuid4().hex}.bin"
    body = uuid.uuid4().bytes * 1000
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=body)
    try:
        assert s3.get_object(Bucket=config.object_storage.bucket, Key=key)["Body"].read() == body
    finally:
        s3.delete_object(Bucket=config.object_storage.bucket, Key=key)


def test_s3_rejects_unknown_credentials(stack, config):
    from botocore.exceptions import ClientError

    bad = dataclasses.replace(config, object_storage=dataclasses.replace(
        config.object_storage, access_key="nobody", secret_key="wrong"))
    with pytest.raises(ClientError):
        s3_client(bad.object_storage, bad.stack.state_dir, max_attempts=1).list_buckets()


def test_status_names_each_component(stack, config, capsys):
    status = stack.status()
    edges = {f"edge-{key}" for key in config.cdn.providers} | {"origin-shield"}     # the edges' origin shield
    assert set(status) == {"kafka", "seaweed", "clickhouse", *edges}
    for name in ("kafka", "seaweed", *edges):
        assert status[name]["state"] == "running" and status[name]["healthy"]
        assert status[name]["pid"] > 0
        assert status[name]["log"].endswith(f"{name}.log")
    assert status["kafka"]["address"] == config.kafka.bootstrap_servers
    assert status["clickhouse"]["address"] == config.clickhouse_dsn
    assert cli.stack_status(config) == 0
    out = capsys.readouterr().out
    assert "kafka" in out and "seaweed" in out and "clickhouse" in out and "running" in out


def test_down_then_up_keeps_topic_records_and_objects(stack, config):
    topic = create_topic(config)
    write_values(config, topic, [b"kept-1", b"kept-2"])
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    key = f"test/stack/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=b"kept across down/up")

    stack.down()
    assert not stack.kafka.is_running() and not stack.seaweed.is_running()
    assert not port_open(config.stack.host, config.stack.kafka_port)
    assert not port_open(config.stack.host, config.stack.seaweed_s3_port)
    assert cli.stack_status(config) == 3

    stack.up()
    s3 = s3_client(config.object_storage, config.stack.state_dir)      # a client of the restarted gateway
    try:
        assert topic in topic_names(config)
        assert sorted(read_values(config, topic, 2)) == [b"kept-1", b"kept-2"]
        body = s3.get_object(Bucket=config.object_storage.bucket, Key=key)["Body"].read()
        assert body == b"kept across down/up"
    finally:
        delete_topic(config, topic)
        s3.delete_object(Bucket=config.object_storage.bucket, Key=key)


def test_kafka_kill9_then_start_recovers_acknowledged_records(stack, config):
    topic = create_topic(config, partitions=3)
    values = [f"record-{i}".encode() for i in range(500)]
    write_values(config, topic, values)  # acks=all, idempotent: every one acknowledged

    old_pid = stack.kafka.pid()
    stack.kafka.kill9()
    assert not stack.kafka.is_running()
    assert not port_open(config.stack.host, config.stack.kafka_port)

    assert stack.kafka.start().startswith("started")
    stack.kafka.wait_healthy(timeout=5)
    assert stack.kafka.pid() != old_pid
    try:
        assert sorted(read_values(config, topic, len(values), timeout=60)) == sorted(values)
    finally:
        delete_topic(config, topic)


def test_seaweed_kill9_then_start_keeps_objects(stack, config):
    key = f"test/stack/{uuid.uuid4().hex}.txt"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=b"survives kill -9")
    stack.seaweed.kill9()
    assert not stack.seaweed.is_running()
    assert stack.seaweed.start().startswith("started")
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    try:
        assert s3.get_object(Bucket=config.object_storage.bucket, Key=key)["Body"].read() == b"survives kill -9"
    finally:
        s3.delete_object(Bucket=config.object_storage.bucket, Key=key)


def test_start_fails_clearly_when_a_port_is_taken(config, tmp_path):
    """A foreign listener on a configured port: StackError naming component, port and log file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        other = dataclasses.replace(config, stack=dataclasses.replace(
            config.stack, state_dir=tmp_path / "state", kafka_port=busy))
        with pytest.raises(StackError) as err:
            Stack(other).kafka.start()
    message = str(err.value)
    assert message.startswith("kafka: ")
    assert f"CLIENT port {busy}" in message
    assert str(tmp_path / "state" / "kafka" / "kafka.log") in message
