"""The upload API as integration tests drive it: the videos router served by uvicorn, and the
UploadCompleted records of a video read from video.uploads up to its end offsets.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from fastapi import FastAPI

from framelog.api import videos
from framelog.api.app import assemble
from framelog.core.config import Config
from framelog.schemas.codec import default_codec
from framelog.streams import topics
from framelog.streams.consumer import consumer_config
from tests.integration.support import wait_for

DEADLINE = 90.0


def make_app(config: Config) -> FastAPI:
    """The videos router alone (the full app assembles other routers too)."""
    return assemble(config, [videos.router])


class LiveApi:
    """uvicorn serving a fresh app on a free port, in a thread."""

    def __init__(self, config: Config):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(make_app(config), host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveApi:
        self.thread.start()
        wait_for(lambda: self.server.started, "uvicorn to start", 30)
        return self

    @property
    def services(self) -> Any:
        """The running app's ``Services`` (what its lifespan put in the state every request gets)."""
        return self.server.lifespan.state["services"]

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def upload_records(config: Config, video_id: str, timeout: float = DEADLINE) -> list[dict[str, Any]]:
    """Every UploadCompleted of ``video_id`` on video.uploads, reading up to the current end offsets."""
    codec = default_codec(config.streams)
    consumer = Consumer(consumer_config(config.kafka, config.stack, f"it-api-count-{uuid.uuid4().hex[:8]}",
                                        **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topics.UPLOADS, timeout=10)
        parts = sorted(meta.topics[topics.UPLOADS].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topics.UPLOADS, p), timeout=10, cached=False)
                for p in parts}
        pending = {p for p, (lo, hi) in ends.items() if hi > lo}
        consumer.assign([TopicPartition(topics.UPLOADS, p, OFFSET_BEGINNING) for p in parts])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                pytest.fail(f"could not read video.uploads to its end within {timeout:g}s")
            for msg in consumer.consume(500, 0.5):
                p = msg.partition()
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                    continue
                if msg.offset() + 1 >= ends[p][1]:
                    pending.discard(p)
                if msg.key() == video_id.encode():
                    name, record = codec.decode_for_topic(topics.UPLOADS, msg.value())
                    if name == "UploadCompleted":
                        found.append(record)
        return found
    finally:
        consumer.close()
