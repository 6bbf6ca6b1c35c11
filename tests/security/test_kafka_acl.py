"""Kafka wants credentials, and each principal touches only its own topics and groups.

Replays issue 11's finding (an anonymous AccessPolicy record written to video.access made a
private video play) against the real broker: no credentials, wrong credentials and the
wrong principal are all refused, while each principal still does its own work.
"""
from __future__ import annotations

import stat
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from framelog.core.service_credentials import kafka_credentials_path
from framelog.sinks.clickhouse.runner import GROUP_ID as SINK_GROUP
from framelog.streams import topics
from framelog.streams.acls import registry
from framelog.streams.consumer import consumer_config
from framelog.streams.kafka_auth import API, SINK, as_principal, client_settings, principals, worker_principal
from framelog.streams.producer import producer_config
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
COORDINATOR_NOT_READY = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                         KafkaError.COORDINATOR_LOAD_IN_PROGRESS)


def _deliver(conf: dict, topic: str) -> KafkaError | None:
    """Produce one record and wait for its report; the error, or None when the broker took it."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**conf, "message.timeout.ms": int(TIMEOUT * 1000), "log_level": 0})
    producer.produce(topic, key=b"probe", value=b"not an event",
                     on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(TIMEOUT + 5)
    assert outcome, "no delivery report within the message timeout"
    return outcome[0]


def _anonymous(config) -> dict:
    return {"bootstrap.servers": config.kafka.bootstrap_servers, "log_level": 0}


def test_credentials_file_is_private(stack, config):
    path = kafka_credentials_path(config.stack.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((stack.kafka.dir / "server.properties").stat().st_mode) == 0o600


def test_anonymous_client_cannot_produce_to_video_access(stack, config):
    err = _deliver(_anonymous(config), topics.ACCESS)
    assert err is not None, "an anonymous client wrote to video.access"


def test_anonymous_client_cannot_consume(stack, config):
    consumer = Consumer({**_anonymous(config), "group.id": f"anon-{uuid.uuid4().hex[:8]}"})
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(topics.ACCESS, timeout=5)
        consumer.assign([TopicPartition(topics.ACCESS, 0, 0)])
        msg = consumer.poll(3)
        assert msg is None or msg.error() is not None
    finally:
        consumer.close()


def test_wrong_password_is_refused(stack, config):
    conf = {**client_settings(as_principal(config.kafka, API), config.stack), "sasl.password": "not-the-password"}
    err = _deliver(conf, topics.UPLOADS)
    assert err is not None


def test_controller_port_wants_credentials(stack, config):
    """The controller listener is SASL/PLAIN too: a PLAINTEXT client gets nothing from it."""
    conf = {"bootstrap.servers": f"{config.stack.host}:{config.stack.kafka_controller_port}", "log_level": 0}
    consumer = Consumer({**conf, "group.id": "x"})
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=5)
    finally:
        consumer.close()


def test_api_writes_its_own_topic(stack, config):
    assert _deliver(producer_config(as_principal(config.kafka, API), config.stack), topics.ACCESS) is None


def test_api_cannot_write_a_topic_it_does_not_own(stack, config):
    first = topics.pipeline_topic(config.pipeline.stage_names[0])
    err = _deliver(producer_config(as_principal(config.kafka, API), config.stack), first)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_sink_cannot_write_video_access(stack, config):
    err = _deliver(producer_config(as_principal(config.kafka, SINK), config.stack), topics.ACCESS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def _first_error(consumer: Consumer, seconds: float) -> KafkaError | None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is not None:
            return msg.error()
    return None


def test_api_cannot_join_the_sinks_group(stack, config):
    conf = consumer_config(as_principal(config.kafka, API), config.stack, SINK_GROUP, log_level=0)
    consumer = Consumer(conf)
    try:
        consumer.subscribe([topics.PLAYBACK_EVENTS])
        err = _first_error(consumer, TIMEOUT)
        assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    finally:
        consumer.close()


def test_a_worker_cannot_read_a_topic_it_does_not_consume(stack, config):
    intake = as_principal(config.kafka, worker_principal("intake"))
    consumer = Consumer(consumer_config(intake, config.stack, "framelog-intake", log_level=0))
    try:
        described = consumer.list_topics(topics.PLAYBACK_EVENTS, timeout=TIMEOUT).topics[topics.PLAYBACK_EVENTS]
        assert described.error is not None and described.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


        def refused() -> KafkaError | None:
            """The offset fetch's error once the group coordinator answers (a fresh broker loads it first)."""
            try:
                (tp,) = consumer.committed([TopicPartition(topics.PLAYBACK_EVENTS, 0)], timeout=TIMEOUT)
                err = tp.error
            except KafkaException as exc:
                err = exc.args[0]
            return None if err is None or err.code() in COORDINATOR_NOT_READY else err

        err = wait_for(refused, "the offset fetch's answer", timeout=30, step=0.5)
        assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
        own = consumer.list_topics(topics.UPLOADS, timeout=TIMEOUT).topics[topics.UPLOADS]
        assert own.error is None                      # its own source stays readable
    finally:
        consumer.close()


def test_sink_reads_its_topics_in_its_group(stack, config):
    consumer = Consumer(consumer_config(as_principal(config.kafka, SINK), config.stack, SINK_GROUP, log_level=0))
    try:
        def answered() -> list | None:
            try:
                return consumer.committed([TopicPartition(topics.PLAYBACK_EVENTS, 0)], timeout=TIMEOUT)
            except KafkaException as exc:          # a fresh broker loads the group coordinator first
                if exc.args[0].code() in COORDINATOR_NOT_READY:
                    return None
                raise

        committed = wait_for(answered, "the sink's committed offsets", timeout=30, step=0.5)
        assert committed[0].error is None
        low, high = consumer.get_watermark_offsets(TopicPartition(topics.PLAYBACK_EVENTS, 0), timeout=TIMEOUT)
        assert 0 <= low <= high
    finally:
        consumer.close()


def test_only_framelog_principals_have_grants_and_none_is_a_wildcard(config):
    grants = registry(config.pipeline, config.priorities)
    assert {g.principal for g in grants} <= set(principals(config.pipeline))
    assert all(g.name not in ("*", "") for g in grants)
    assert all(g.operation != "ALL" or (g.pattern == "PREFIXED" and g.name.startswith("framelog-"))
               for g in grants)
