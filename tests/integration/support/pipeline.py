"""The pipeline as integration tests drive it: upload a clip, wait for its end, read what was published.

The fixtures that run the pipeline (``worker``, ``status``, ``store``) are in
tests/integration/conftest.py.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from framelog.schemas.codec import default_codec
from framelog.sinks.uploads import upload_file
from framelog.streams.consumer import consumer_config

PIPELINE_TIMEOUT = 420.0


def finished(view) -> bool:
    """The status view of a video the pipeline is done with, either way."""
    return view is not None and view.get("state") in ("ready", "failed")


def read_topic(config, topic: str, video_id: str) -> list[tuple[str, dict]]:
    """Every decoded record of ``video_id`` on ``topic``, read up to the current end."""
    codec = default_codec(config.streams)
    consumer = Consumer(consumer_config(config.kafka, config.stack, f"t-{uuid.uuid4().hex}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        todo = {p for p, end in ends.items() if end > 0}
        out = []
        while todo:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: no record within 10s, still to read {todo}"
            if msg.error():
                continue
            if msg.offset() >= ends[msg.partition()] - 1:
                todo.discard(msg.partition())
            if msg.key() == video_id.encode():
                out.append(tuple(codec.decode_for_topic(topic, msg.value(), validate=False)))
        return out
    finally:
        consumer.close()


def upload(config, path: Path, **kw: str) -> str:
    """Upload ``path`` from this host as the tests' owner (``upload_file``); its video id."""
    return upload_file(config.object_storage, config.streams, config.priorities, path, owner_id="tests", **kw).video_id


def process_clip(config, status, path: Path) -> tuple[str, dict]:
    """Upload ``path`` and wait until the pipeline is done with it: (video id, status view)."""
    video_id = upload(config, path)
    view = status.wait_for(video_id, finished, PIPELINE_TIMEOUT)
    assert finished(view), f"video {video_id} not processed: {view}"
    return video_id, view
