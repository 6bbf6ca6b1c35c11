"""Consumer lag of a group on a topic: end offsets minus committed offsets."""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from framelog.core.config import KafkaConfig, StackConfig
from framelog.streams.kafka_auth import client_settings

# The group coordinator moves or is still loading right after a broker start or
# restart; asking again a moment later is the documented answer.
_COORDINATOR_NOT_READY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                          KafkaError.COORDINATOR_NOT_AVAILABLE}


@dataclass(frozen=True)
class GroupPosition:
    committed: int   # records of the topic the group has committed (summed over partitions)
    lag: int         # records not yet committed


def group_position(kafka: KafkaConfig, stack: StackConfig, group_id: str, topic: str, timeout: float = 5.0,
                   retry_for: float = 30.0) -> GroupPosition:
    """Where ``group_id`` stands on ``topic``; retries while the coordinator is not ready
    (``config.kafka, config.stack``)."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return _group_position(kafka, stack, group_id, topic, timeout)
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)   # back-off between questions to the broker, not a synchronisation


def _group_position(kafka: KafkaConfig, stack: StackConfig, group_id: str, topic: str,
                    timeout: float) -> GroupPosition:
    consumer = Consumer({**client_settings(kafka, stack), "group.id": group_id, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = lag = 0
        for tp in consumer.committed(tps, timeout=timeout):
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            position = tp.offset if tp.offset >= 0 else low
            committed += max(tp.offset, 0)
            lag += high - position
        return GroupPosition(committed, lag)
    finally:
        consumer.close()


def group_lag(kafka: KafkaConfig, stack: StackConfig, group_id: str, topic: str, timeout: float = 5.0,
              retry_for: float = 0.0) -> int:
    """Records of ``topic`` that ``group_id`` has not committed (a metrics scrape does not wait)."""
    return group_position(kafka, stack, group_id, topic, timeout, retry_for).lag
