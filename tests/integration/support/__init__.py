"""What integration tests share: waiting on a condition, recording topics by video, running a service.

Every wait is a condition with a deadline (``framelog.stack.process.wait_until``
does the polling); a test never sleeps to synchronise.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition

from framelog.core.config import Config
from framelog.sinks.clickhouse.runner import AnalyticsSinkSettings
from framelog.stack.process import Component, wait_until
from framelog.stack.services import WorkerService
from framelog.streams.admin import admin_client
from framelog.streams.consumer import DecodedRecord, consumer_config
from framelog.streams.producer import producer_config
from framelog.streams.replay import ReplayedTable


def sink_settings(config: Config) -> AnalyticsSinkSettings:
    """The analytics sink's sections, from the test's configuration (as ``framelog sink analytics`` fills them)."""
    return AnalyticsSinkSettings(config.clickhouse_dsn, config.clickhouse.database, config.analytics,
                                 config.hls.quality_levels, config.streams)


@contextmanager
def running(service: Component, timeout: float) -> Iterator[Component]:
    """The service started (or the one already running); stopped afterwards only if this started it."""
    was_running = service.is_running()
    service.start(timeout=timeout)
    try:
        yield service
    finally:
        if not was_running:
            service.stop()


def log_ends(config: Config, names: tuple[str, ...], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The current end offset of every partition of the topics."""
    consumer = Consumer(consumer_config(config.kafka, config.stack, f"it-ends-{uuid.uuid4().hex}"))
    try:
        return {(name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout, cached=False)[1]
                for name in names for p in consumer.list_topics(name, timeout=timeout).topics[name].partitions}
    finally:
        consumer.close()


def skip_backlog(config: Config, group_id: str, names: tuple[str, ...]) -> None:
    """Commit ``group_id`` at the current end of ``names``: what earlier tests left queued is not its work.

    For a test that needs a stage's slots to itself (the group must have no running member).
    """
    ends = log_ends(config, names)
    admin = admin_client(config.kafka, config.stack)
    request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(t, p, end) for (t, p), end in ends.items()])
    admin.alter_consumer_group_offsets([request])[group_id].result(timeout=30)


def wait_for(condition: Callable[[], Any], what: str, timeout: float, step: float = 0.05) -> Any:
    """The first truthy value of ``condition()``; fails the test naming ``what`` after ``timeout`` seconds."""
    found: list[Any] = []

    def holds() -> bool:
        value = condition()
        if value:
            found.append(value)
        return bool(value)

    if not wait_until(holds, timeout, step):
        pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
    return found[-1]


def write_values(config: Config, topic: str, values: list[bytes]) -> None:
    """Write ``values`` (each its own key) with framelog's producer settings; every one acknowledged."""
    producer = Producer(producer_config(config.kafka, config.stack))
    errors = []
    for v in values:
        producer.produce(topic, value=v, key=v, on_delivery=lambda err, msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0, "records still in flight after 60 s"
    assert not errors, errors


def read_values(config: Config, topic: str, expected: int, timeout: float = 30) -> list[bytes]:
    """The values on ``topic`` from its start, read by a new group until ``expected`` arrived or ``timeout``."""
    consumer = Consumer(consumer_config(config.kafka, config.stack, f"test-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                out.append(msg.value())
    finally:
        consumer.close()
    return out


class TopicRecorder(ReplayedTable):
    """Every record of the given topics, by video id (the production replay, used as a test probe).

    Records are filed under their ``video_id`` field, or their Kafka key for
    records that have none (a DeadLetter keeps the original record's key).
    """

    def __init__(self, config: Config, names: tuple[str, ...], group_prefix: str = "it-recorder"):
        super().__init__(config.streams, names, group_prefix=group_prefix)
        self.config = config
        self.by_video: dict[str, list[DecodedRecord]] = {}

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if isinstance(record, DecodedRecord):
            self.by_video.setdefault(record.value.get("video_id") or record.key or "", []).append(record)

    def of(self, video_id: str, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r.value for r in self.by_video.get(video_id, []) if r.name == name]

    def wait(self, video_id: str, name: str, predicate: Callable[[dict], bool] = lambda v: True,
             timeout: float = 60.0) -> dict[str, Any]:
        """The last record of ``name`` for the video that satisfies ``predicate``, once there is one."""
        return wait_for(lambda: ([v for v in self.of(video_id, name) if predicate(v)] or [None])[-1],
                        f"a matching {name} of {video_id}", timeout)

    def wait_caught_up(self, timeout: float = 60.0) -> bool:
        """Wait until every record on the topics now has been folded: "none seen" then means "none written"."""
        ends = log_ends(self.config, tuple(self.topics))
        return self.wait_until(lambda: all(self.folded(t, p, end - 1) for (t, p), end in ends.items() if end > 0),
                               timeout)


class StageWorker(WorkerService):
    """`framelog worker --stage intake --stage STAGE` with its own environment (overlay, fake tools)."""

    name = "worker-stage-test"

    def __init__(self, config: Config, env: Mapping[str, str], stage: str):
        super().__init__(config)
        self._env = dict(env)
        self.stage = stage
        self.subcommand = ("worker", "--stage", "intake", "--stage", stage)

    def env(self) -> dict[str, str]:
        return self._env

    def check_health(self) -> None:
        from confluent_kafka import ConsumerGroupState

        from framelog.streams.admin import admin_client

        # keep a reference: futures die with their client
        admin = admin_client(self.config.kafka, self.config.stack)
        for name, fut in admin.describe_consumer_groups(["framelog-intake", f"framelog-{self.stage}"],
                                                        request_timeout=5).items():
            desc = fut.result(timeout=10)
            if desc.state != ConsumerGroupState.STABLE or not desc.members:
                raise RuntimeError(f"group {name} is {desc.state.name.lower()} with {len(desc.members)} member(s)")


def overlay_file(config: Config, directory: Path, stage: str, stage_settings: Mapping[str, Any],
                 pipeline_settings: Mapping[str, Any] | None = None) -> Path:
    """A configuration overlay: this session's overlay (if any) plus new settings for one stage."""
    import os

    import yaml

    from framelog.core.config import merge_overlay

    stages = [dict(s, **(stage_settings if s["name"] == stage else {}))
              for s in config.raw["processing_pipeline"]["stages"]]
    base = os.environ.get("FRAMELOG_CONFIG_OVERLAY")
    data = merge_overlay(yaml.safe_load(Path(base).read_text()) if base else {},
                         {"processing_pipeline": {"stages": stages, **(pipeline_settings or {})}})
    path = directory / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
