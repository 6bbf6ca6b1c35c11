"""The tiering agent (consumer group ``framelog-tiering``): access counts, tiers, moves.

One Faust agent folds ``playback.events`` (accesses), ``video.assets`` (which
renditions exist, since when, where) and ``storage.tier-transitions`` (its own
decisions and the API's restore requests) into the table ``renditions``, whose
changelog topic (``framelog-tiering-renditions-changelog``, compacted) lets a
restarted worker recover it without replaying the sources. Should the
changelog be lost, resetting the group's offsets to the beginning of the three
sources rebuilds the same rows: the fold (``streams.tiering_fold``) does not
depend on how the topics interleave, and the tiers come from the job's own
TierTransition events (tests/unit/test_tier_ledger.py replays a year); but
playback.events keeps 30 days, so older accesses survive only in the changelog.
All three topics are keyed by video id with the same partition count, so one
video's rows live in the partition its events arrive on.

Evaluation (``streams.tiering_evaluator``) runs every
``tiering_evaluation_interval`` over the partitions this worker owns, and for
a rendition right after an event touched it (a new access, a restore request,
a publication), always at the injected clock's time. Nothing is evaluated
while the table is recovering.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka import Consumer, TopicPartition

from framelog.core.clock import Clock, SystemClock
from framelog.core.config import KafkaConfig, StackConfig, TieringConfig
from framelog.pipeline.agents.pipeline import _decode_or_dead_letter, until_handled
from framelog.pipeline.agents.tiering_metrics import TieringMetrics
from framelog.pipeline.tiering_evaluator import TieringEvaluator, owned_renditions
from framelog.pipeline.tiering_fold import fold_event, rendition_row
from framelog.processors.tier_ledger import RenditionRecord
from framelog.schemas.codec import AvroCodec
from framelog.schemas.records import TierTransition
from framelog.sinks.tier_mover import TierMover
from framelog.streams import topics
from framelog.streams.emitter import AsyncEmitter
from framelog.streams.kafka_auth import client_settings

log = logging.getLogger(__name__)

GROUP = "tiering"
METRICS_REFRESH = 15.0       # seconds between storage gauge refreshes (a Prometheus scrape interval), not a seed number
TABLE = "renditions"
SOURCES = (topics.ASSETS, topics.PLAYBACK_EVENTS, topics.TIER_TRANSITIONS)


@dataclass(frozen=True)
class TieringSettings:
    """What the tiering agent reads of the configuration; its composition root (pipeline/worker.py) fills it."""

    tiering: TieringConfig              # the tier policy and its evaluation interval (``config.tiering``)
    partitions: int                     # of each source topic: they are co-partitioned (``source_partitions``)
    kafka: KafkaConfig                  # the brokers and the group's principal (``config.kafka``) ...
    stack: StackConfig                  # ... its nodes and credentials (``config.stack``): where log_positions asks


def changelog_topic(partitions: int) -> topics.TopicSpec:
    """The table's changelog, with the sources' ``partitions``: Faust writes it, framelog creates it (the app
    declares no topics)."""
    return topics.TopicSpec(f"framelog-{GROUP}-{TABLE}-changelog", (), partitions=partitions,
                            compacted=True, description="the tiering table's changelog (Faust, JSON rows)")


def source_partitions(partitions: Mapping[str, int]) -> int:
    """The one partition count of the tiering agent's sources (``partitions``: by topic); they must be
    co-partitioned."""
    counts = {name: partitions[name] for name in SOURCES}
    if len(set(counts.values())) != 1:
        raise ValueError(f"tiering needs co-partitioned sources, got {counts}")
    return next(iter(counts.values()))


def log_positions(kafka: KafkaConfig, stack: StackConfig, group_id: str, partitions: set[int],
                  timeout: float = 10.0) -> dict[int, dict[str, tuple[int, int]]]:
    """partition -> topic -> (committed offset of ``group_id`` or -1, end offset), for the agent's sources
    (``config.kafka, config.stack``)."""
    consumer = Consumer({**client_settings(kafka, stack), "group.id": group_id, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t in SOURCES for p in sorted(partitions)],
                                 timeout=timeout)
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for tp in tps:
            end = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[1]
            out.setdefault(tp.partition, {})[tp.topic] = (tp.offset if tp.offset >= 0 else -1, end)
        return out
    finally:
        consumer.close()


class TieringAgent:
    """Builds the table, agent, timer and evaluation task on a Faust app of group ``tiering``."""

    def __init__(self, app: faust.App, settings: TieringSettings, codec: AvroCodec, emitter: AsyncEmitter,
                 mover: TierMover, metrics: TieringMetrics, clock: Clock | None = None):
        self.app = app
        self.settings = settings
        self.codec = codec
        self.emitter = emitter
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.partitions = settings.partitions
        self.table = app.Table(TABLE, default=None, partitions=self.partitions,
                               schema=faust.Schema(key_serializer="json", value_serializer="json"),
                               help="per rendition: created, accesses, tier, restore; per video: accesses")
        self.evaluator = TieringEvaluator(settings.tiering, self.clock, mover, self._emit)
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._queued: set[str] = set()
        self._register()

    # ------------------------------------------------------------ plumbing

    async def _emit(self, record: TierTransition) -> Any:
        """The transition of a move already made, through an outage of the log (until_handled): raising
        here would leave the objects moved and the table still naming the old tier."""
        delivered: list[Any] = []

        async def send() -> None:
            delivered.append(await self.emitter.emit(topics.TIER_TRANSITIONS, record))

        await until_handled(f"tier transition of {record.video_id}/{record.rendition}", send)
        return delivered[-1]

    def _recovered(self) -> bool:
        return self.app.tables.recovery.completed.is_set() and not self.app.in_recovery

    def _owned(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topics.TIER_TRANSITIONS}

    async def _refresh_gate(self, owned: set[int]) -> None:
        gate = self.evaluator.gate
        for p in gate.known - owned:
            gate.forget(p)
        new = owned - gate.known
        if new:
            loop = asyncio.get_running_loop()
            positions = await loop.run_in_executor(None, log_positions, self.settings.kafka, self.settings.stack,
                                                   self.app.conf.id, new)
            for p, by_topic in positions.items():
                gate.start(p, by_topic)
            log.info("tiering: evaluating partitions %s once the log up to %s is folded", sorted(new), positions)

    async def sweep(self) -> None:
        """Evaluate every owned rendition, then publish the storage metrics."""
        if not self._recovered():
            return
        owned = self._owned()
        await self._refresh_gate(owned)
        await self.evaluator.evaluate(owned_renditions(list(self.table.items()), owned), self._load)
        self.observe_storage()

    def observe_storage(self) -> None:
        """storage_utilization and storage_costs from the owned rows (in memory: cheap)."""
        if self._recovered():
            owned = self._owned()
            self.metrics.observe_storage(self._load(k) for _, k in owned_renditions(list(self.table.items()), owned))

    def _load(self, key: str) -> RenditionRecord | None:
        return rendition_row(self.table, key)

    # ------------------------------------------------------------ Faust wiring

    def _register(self) -> None:
        app, tiering = self.app, self.settings.tiering
        source = app.topic(*SOURCES, key_serializer="raw", value_serializer="raw")

        @app.agent(source, name="tiering")
        async def fold(stream: faust.StreamT) -> None:
            async for event in stream.events():
                decoded = await _decode_or_dead_letter(self.codec, self.emitter, event)
                msg = event.message
                if decoded is not None:
                    try:
                        result = fold_event(self.table, decoded[0], decoded[1], msg.partition, tiering)
                    except ValueError as exc:      # ids that cannot name an object: not ours to store
                        log.warning("tiering: skipping %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                    else:
                        self.metrics.observe_accesses(result.accesses)
                        for key in result.rendition_keys:
                            if key not in self._queued:
                                self._queued.add(key)
                                self._queue.put_nowait((msg.partition, key))
                self.evaluator.gate.folded(msg.topic, msg.partition, msg.offset)

        @app.timer(tiering.evaluation_interval, name="tiering-sweep")
        async def timer() -> None:
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next tick
                log.exception("tiering sweep failed")

        @app.timer(METRICS_REFRESH, name="tiering-storage-metrics")
        async def storage_metrics() -> None:
            self.observe_storage()      # the evaluation interval may be an hour; the gauges should not wait

        @app.task
        async def evaluate_touched() -> None:
            while True:
                partition, key = await self._queue.get()
                self._queued.discard(key)
                try:
                    if not self._recovered() or partition not in self._owned():
                        continue
                    await self.evaluator.evaluate([(partition, key)], self._load)
                except Exception:  # noqa: BLE001 - the timer evaluates it again
                    log.exception("tiering evaluation of %s failed", key)


def register_tiering(app: faust.App, settings: TieringSettings, codec: AvroCodec, emitter: AsyncEmitter,
                     mover: TierMover, metrics: TieringMetrics, clock: Clock | None = None) -> TieringAgent:
    """The tiering agent on ``app``; its changelog (``changelog_topic``) is created by the composition root."""
    return TieringAgent(app, settings, codec, emitter, mover, metrics, clock)
