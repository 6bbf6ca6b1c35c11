"""Consumer lag of a group on a topic: end offsets minus committed offsets."""
from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from framelog.config import Config


def group_lag(config: Config, group_id: str, topic: str, timeout: float = 5.0) -> int:
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = consumer.committed(tps, timeout=timeout)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()
