"""The analytics sink loop: playback topics → ClickHouseSink → commit.

The consumer polls undecoded messages, the sink batches them by size and age
and writes each partition's batch with a deterministic deduplication token
(letting ClickHouse decode the Avro where it can; records it must decode itself
go through the consumer's codec, which dead-letters bad ones), and offsets are
committed only from the sink's ``on_committed`` callback, i.e. after the insert
returned. A kill -9 anywhere replays from the last commit; the tokens and the
event-id window make the replay count once.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from framelog.core.backoff import OUTAGE_BACKOFF, Backoff
from framelog.core.config import AnalyticsConfig, PipelineConfig, QualityLevel, StackConfig, StreamsConfig
from framelog.core.logs import configure_logging
from framelog.schemas.codec import MILLIS, AvroCodec
from framelog.sinks.clickhouse import metrics
from framelog.sinks.clickhouse.client import connect
from framelog.sinks.clickhouse.migrations import apply_migrations
from framelog.sinks.clickhouse.sink import DEFAULT_TABLES, ClickHouseSink, TableSpec
from framelog.streams import topics
from framelog.streams.consumer import EventConsumer

log = logging.getLogger(__name__)

GROUP_ID = "framelog-analytics-sink"
SOURCE_TOPICS = (topics.PLAYBACK_EVENTS, topics.QUALITY_SWITCHES)
POLL_MAX_RECORDS = 10_000
POLL_TIMEOUT = 0.2


@dataclasses.dataclass(frozen=True)
class AnalyticsSinkSettings:
    """What the analytics sink reads: where it writes (``dsn``: ``config.clickhouse_dsn``, ``database``:
    ``config.clickhouse.database``), its batches and the migrations' numbers (``config.analytics``), the HLS
    ladder that ranks quality switches (``config.hls.quality_levels``) and its Kafka client (``config.streams``)."""
    dsn: str
    database: str
    analytics: AnalyticsConfig
    quality_levels: tuple[QualityLevel, ...]
    streams: StreamsConfig


class AnalyticsSinkRunner:
    def __init__(self, settings: AnalyticsSinkSettings, client: Any = None, lock: threading.Lock | None = None,
                 group_id: str = GROUP_ID, *, tables: Mapping[str, TableSpec] | None = None,
                 codec: AvroCodec | None = None, on_videos_written: Callable[[set[str]], None] | None = None):
        """``tables``: topic -> raw table (default: the playback topics); ``codec`` must know
        those topics (default: the configured topic registry). Benchmarks and tests pass
        private topics here; production uses the defaults. ``on_videos_written`` hears the
        video ids (record keys) whose events just became queryable, after their commit:
        the API's analytics query cache drops their answers."""
        self.settings = s = settings
        self.client = client if client is not None else connect(s.dsn, s.database)
        self.lock = lock or threading.Lock()      # chdb: one engine per process, shared with queries
        with self.lock:
            apply_migrations(self.client, s.analytics)
        source = dict(tables) if tables is not None else {t: DEFAULT_TABLES[t] for t in SOURCE_TOPICS}
        codec = codec or AvroCodec(s.streams.topics, schema_registry_url=s.streams.kafka.schema_registry_url,
                                   timestamps=MILLIS)
        self.consumer = EventConsumer(s.streams, group_id, list(source), codec=codec, on_revoke=self._on_revoke)
        self.sink = ClickHouseSink(self.client, s.analytics, s.quality_levels, on_committed=self._commit,
                                   tables=source, decode=self.consumer.decode_message,
                                   insert_client=lambda: connect(s.dsn, s.database, create_database=False))
        self.stop_event = threading.Event()
        self.rows_written = 0
        self.committed: dict[tuple[str, int], int] = {}      # next offset per partition, as committed
        self.on_videos_written = on_videos_written
        # per partition, (last offset, video ids) of each poll not yet committed: for on_videos_written
        self._videos_in_flight: dict[tuple[str, int], list[tuple[int, set[str]]]] = {}

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.consumer.commit(offsets)
        self.committed.update(offsets)
        if self.on_videos_written is not None:
            written: set[str] = set()
            for key, next_offset in offsets.items():
                polls = self._videos_in_flight.get(key, [])
                while polls and polls[0][0] < next_offset:
                    written |= polls.pop(0)[1]
            if written:
                self.on_videos_written(written)

    def _on_revoke(self, partitions: list[tuple[str, int]]) -> None:
        """A rebalance takes partitions away: commit what landed, drop the rest (the new owner replays it)."""
        with self.lock:
            self.sink.revoke(partitions)
        for key in partitions:
            self.committed.pop(key, None)
            self._videos_in_flight.pop(key, None)

    def export_lag(self) -> None:
        """Sink lag per partition, refreshed every step (so it grows while nothing gets committed):
        records after the committed offset, and the age of the oldest record not yet committed
        (0 when caught up)."""
        pending = self.sink.uncommitted()
        now_ms = time.time() * 1000
        for key in set(self.committed) | set(pending):
            batch = pending.get(key)
            committed = self.committed.get(key, batch.first_offset if batch is not None and len(batch) else None)
            high = self.consumer.high_watermark(*key)
            records = None if high is None or committed is None else high - committed
            seconds = None
            if batch is not None and len(batch):
                appended = batch.records[0].timestamp()[1]
                seconds = (now_ms - appended) / 1000 if appended > 0 else None
            elif records == 0:
                seconds = 0.0
            metrics.set_lag(key[0], key[1], records, seconds)

    def step(self) -> int:
        """One poll: add what came, flush what is due. Returns records polled."""
        messages = self.consumer.poll_raw(POLL_MAX_RECORDS, POLL_TIMEOUT)
        by_partition: dict[tuple[str, int], tuple[list[Any], list[int]]] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            part = by_partition.get(key)
            if part is None:
                part = by_partition[key] = ([], [])
            part[0].append(m)
            part[1].append(m.offset())
        if self.on_videos_written is not None:
            for key, (records, offsets) in by_partition.items():
                videos = {k.decode("utf-8", "replace") for k in (m.key() for m in records) if k}
                self._videos_in_flight.setdefault(key, []).append((offsets[-1], videos))
        with self.lock:
            started = time.perf_counter()
            for (topic, partition), (records, offsets) in by_partition.items():
                self.sink.add_many(records, topic, partition, offsets)
            if not messages:
                self.sink.poll()
            else:
                metrics.observe_step(time.perf_counter() - started)
            self.export_lag()
        return len(messages)

    def run(self) -> None:
        log.info("analytics sink consuming %s into %s", SOURCE_TOPICS, self.settings.dsn)
        metrics.RUNNING.set(1)
        try:
            while not self.stop_event.is_set():
                self.step()
            with self.lock:
                self.sink.flush()
        except Exception:
            log.exception("analytics sink stopped on an error; a restart resumes from the last commit")
            raise
        finally:
            metrics.RUNNING.set(0)
            self.sink.close()
            self.consumer.close()

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="analytics-sink", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)

    def stop(self) -> None:
        self.stop_event.set()


class RestartingSink:
    """The embedded sink's thread (the API process hosts it with the embedded engine): a runner that stops on
    an error is built again after a backoff, and resumes from the last commit as a restarted process does.

    The standalone sink exits on an error and its supervisor starts it again; inside the API nobody did, so
    one commit refused with NOT_COORDINATOR right after a broker kill -9 ended the thread and left the
    group EMPTY with its lag growing while the API went on answering (found by the fault suite, issue 14 pt 2).
    """

    def __init__(self, make: Callable[[], AnalyticsSinkRunner], backoff: Backoff = OUTAGE_BACKOFF):
        self.make = make
        self.backoff = backoff
        self.stop_event = threading.Event()
        self.current: AnalyticsSinkRunner | None = None
        self.restarts = 0

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                self.current = self.make()
                if self.stop_event.is_set():
                    return
                self.current.run()
                return                      # stopped on purpose
            except Exception:  # noqa: BLE001 - run() logged it; a new runner resumes from the last commit
                failures += 1
                self.restarts += 1
                delay = self.backoff.jittered(failures)
                log.warning("analytics sink: starting again in %.1fs (restart %d)", delay, self.restarts)
                self.stop_event.wait(delay)

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="analytics-sink", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self.stop_event.set()
        if self.current is not None:
            self.current.stop()

    def join(self, timeout: float | None = None) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)


def metrics_port(stack: StackConfig, pipeline: PipelineConfig) -> int:
    """Where a standalone sink serves /metrics: the port after the worker groups' ports (``config.stack``,
    ``config.pipeline``)."""
    from framelog.pipeline.worker import groups

    return stack.worker_metrics_port + len(groups(pipeline))


def run_sink(settings: AnalyticsSinkSettings, *, metrics_host: str, metrics_port: int,
             group_id: str = GROUP_ID) -> int:
    """`framelog sink analytics`: run the sink in the foreground until SIGTERM/SIGINT (then flush), as the
    sink's Kafka principal.

    Serves Prometheus /metrics on ``metrics_host:metrics_port`` (``config.stack.metrics_host`` and
    :func:`metrics_port`; when the API hosts the embedded sink, the API's /metrics has them instead)."""
    import signal

    from prometheus_client import start_http_server

    from framelog.streams.kafka_auth import SINK, as_principal

    streams = settings.streams
    settings = dataclasses.replace(settings, streams=dataclasses.replace(
        streams, kafka=as_principal(streams.kafka, SINK)))
    configure_logging("analytics-sink")
    try:
        start_http_server(metrics_port, addr=metrics_host)
    except OSError as exc:       # a second sink on this host: metrics from the first
        log.warning("metrics port %d busy (%s); not exporting from this sink", metrics_port, exc)
    runner = AnalyticsSinkRunner(settings, group_id=group_id)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    runner.run()
    log.info("analytics sink stopped: %s", dict(runner.sink.stats))
    return 0
