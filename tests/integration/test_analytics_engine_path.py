"""The sink's engine path (ClickHouse decodes the Avro) against its Python path, on real Kafka records.

Same records, two databases of one embedded engine: one sink lets ClickHouse
decode the Avro block, the other decodes in Python; the stored rows must be
identical. A batch with records that break a rule, a cut body and a client
retry is refused by the engine as a whole and taken record by record: the bad
records are dead-lettered, the rest stored once, the rollups exact.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import time
import uuid

import pytest

from framelog.core.config import load_config
from framelog.schemas.codec import MILLIS, AvroCodec
from framelog.schemas.events import new_event
from framelog.sinks.clickhouse.client import connect
from framelog.sinks.clickhouse.migrations import apply_migrations
from framelog.sinks.clickhouse.sink import PLAYBACK_EVENTS_TABLE, ClickHouseSink
from framelog.streams.admin import create_topics
from framelog.streams.consumer import EventConsumer
from framelog.streams.producer import EventProducer
from framelog.streams.topics import TopicSpec
from tests.integration.support import sink_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(chdb_path):
    path = chdb_path
    clients = []

    def open_(database):
        cfg = load_config()
        cfg = dataclasses.replace(cfg, clickhouse=dataclasses.replace(cfg.clickhouse, dsn=f"chdb://{path}",
                                                                      database=database))
        client = connect(cfg.clickhouse_dsn, cfg.clickhouse.database)
        apply_migrations(client, cfg.analytics)
        clients.append(client)
        return cfg, client

    yield open_
    for c in clients:
        c.close()


def _topic(config) -> TopicSpec:
    spec = TopicSpec(f"test.engine-path-{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=1,
                     retention_ms=3_600_000)
    create_topics(config.streams, [spec, TopicSpec(spec.dlq, ("DeadLetter",), partitions=1, retention_ms=3_600_000)])
    return spec


def _event(i: int, video: str, **kw) -> dict:
    fields = dict(session_id=f"s{i % 7}", viewer_id=f"u{i % 11}", video_id=video,
                  type=("view_start", "progress", "pause", "like", "share", "ended")[i % 6],
                  position_seconds=float(i % 50), watch_time_delta_seconds=5.0 if i % 6 == 1 else 0.0,
                  rendition=("720p", None)[i % 2], country=("US", "DE", None)[i % 3], device="web",
                  startup_time_ms=250 + i if i % 6 == 0 else None, duration_seconds=(None, 120.0)[i % 2],
                  rebuffer_duration_ms=None, error_code=None)
    fields.update(kw)
    return new_event("PlaybackEvent", **fields)


def _codec(config, *specs: TopicSpec, **kw) -> AvroCodec:
    return AvroCodec(schema_registry_url=config.kafka.schema_registry_url, topic_specs=specs, **kw)


def _sink_all(config, client, spec: TopicSpec, expected: int, **sink_kw) -> tuple[ClickHouseSink, EventConsumer]:
    """Consume the whole topic (``expected`` messages) with a fresh group into one flush."""
    codec = _codec(config, spec, TopicSpec(spec.dlq, ("DeadLetter",)), timestamps=MILLIS)
    consumer = EventConsumer(config.streams, f"test-engine-{uuid.uuid4().hex[:6]}", [spec.name], codec=codec)
    sink = ClickHouseSink(client, config.analytics, config.hls.quality_levels,
                          tables={spec.name: PLAYBACK_EVENTS_TABLE}, max_rows=100_000, max_age=600,
                          on_committed=consumer.commit, decode=consumer.decode_message, **sink_kw)
    seen, deadline = 0, time.monotonic() + 60
    while seen < expected and time.monotonic() < deadline:
        for m in consumer.poll_raw(1000, 0.5):
            sink.add(m, m.topic(), m.partition(), m.offset())
            seen += 1
    assert seen == expected, f"consumed {seen} of {expected}"
    sink.flush()
    consumer.close()
    return sink, consumer


def _rows(client, video: str) -> list[tuple]:
    return client.query("SELECT * EXCEPT (ingest_time) FROM playback_events WHERE video_id = {v:String} "
                        "ORDER BY kafka_offset", parameters={"v": video}).result_rows


def test_engine_path_stores_what_the_python_path_stores(stack, config, engine):
    spec = _topic(config)
    video = f"engine{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # late and out of order: offline clients replaying up to two days back, in shuffled order
    events = [_event(i, video, event_time=now - dt.timedelta(hours=(i * 7) % 50, minutes=i % 60)) for i in range(300)]
    producer = EventProducer(config.streams, _codec(config, spec))
    for e in events:
        producer.send(spec.name, "PlaybackEvent", e)
    producer.send(spec.name, "PlaybackEvent", events[5])        # a client retry
    producer.flush(30)

    cfg_a, fast_client = engine("engine_path_a")
    cfg_b, slow_client = engine("engine_path_b")
    fast, _ = _sink_all(cfg_a, fast_client, spec, 301)
    slow, _ = _sink_all(cfg_b, slow_client, spec, 301, engine_decodes=False)

    assert fast.stats["rows_written"] == slow.stats["rows_written"] == 300
    assert fast.stats["duplicates_dropped"] == slow.stats["duplicates_dropped"] == 1
    assert fast.stats["python_path_batches"] == fast.stats["engine_refused_batches"] == 0
    assert _rows(fast_client, video) == _rows(slow_client, video)
    rollup = ("SELECT sum(events), sum(views), sum(likes), sum(shares) FROM video_stats_hourly "
              "WHERE video_id = {v:String}")
    assert (fast_client.query(rollup, parameters={"v": video}).result_rows
            == slow_client.query(rollup, parameters={"v": video}).result_rows == [(300, 50, 50, 50)])
    hourly = ("SELECT hour, sum(events) FROM video_stats_hourly WHERE video_id = {v:String} "
              "GROUP BY hour ORDER BY hour")
    expected = collections.Counter(e["event_time"].replace(minute=0, second=0, tzinfo=None) for e in events)
    for client in (fast_client, slow_client):        # each event in the hour of its event time
        assert client.query(hourly, parameters={"v": video}).result_rows == sorted(expected.items())


def test_a_block_the_engine_refuses_is_taken_record_by_record(stack, config, engine):
    spec = _topic(config)
    video = f"refused{uuid.uuid4().hex[:8]}"
    good = [_event(i, video) for i in range(100)]
    unchecked = EventProducer(config.streams, _codec(config, spec, validate_on_encode=False))
    producer = EventProducer(config.streams, _codec(config, spec))
    for e in good[:50]:
        producer.send(spec.name, "PlaybackEvent", e)
    producer.flush(30)
    # records only the engine would see: a rule broken (Avro-valid), a bad video id, a cut body
    unchecked.send(spec.name, "PlaybackEvent", _event(1, video, position_seconds=-3.0))
    unchecked.send(spec.name, "PlaybackEvent", _event(2, "not a video id!"))
    unchecked.flush(30)
    cut = _codec(config, spec).encode("PlaybackEvent", _event(3, video))[:-4]
    producer.send_raw(spec.name, cut)
    for e in good[50:] + good[:3]:                               # the rest, and three client retries
        producer.send(spec.name, "PlaybackEvent", e)
    producer.flush(30)

    cfg, client = engine("engine_path_refused")
    sink, consumer = _sink_all(cfg, client, spec, 106)
    assert sink.stats["engine_refused_batches"] == 1
    assert consumer.dead_lettered == 3
    assert sink.stats["rows_written"] == 100 and sink.stats["duplicates_dropped"] == 3
    raw = client.query("SELECT count(), uniqExact(event_id) FROM playback_events WHERE video_id = {v:String}",
                       parameters={"v": video}).result_rows
    assert raw == [(100, 100)]
    assert client.query("SELECT count() FROM playback_events WHERE video_id = 'not a video id!'").result_rows == [(0,)]
    events = client.query("SELECT sum(events) FROM video_stats_hourly WHERE video_id = {v:String}",
                          parameters={"v": video}).result_rows
    assert events == [(100,)]


def test_runner_exports_written_counts_insert_latency_and_sink_lag(stack, config, engine):
    from prometheus_client import REGISTRY

    from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner
    from framelog.streams import topics

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    video = f"metrics{uuid.uuid4().hex[:8]}"
    producer = EventProducer(config.streams)
    for i in range(60):
        producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", _event(i, video))
    producer.flush(30)
    views_before, inserts_before = sample("video_views_total"), sample(
        "framelog_analytics_insert_seconds_count", table="playback_events")

    cfg, client = engine("engine_path_metrics")
    runner = AnalyticsSinkRunner(sink_settings(cfg), client=client, group_id=f"test-metrics-{uuid.uuid4().hex[:6]}")
    stored = "SELECT count(), any(kafka_partition) FROM playback_events WHERE video_id = {v:String}"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            runner.step()
            if client.query(stored, parameters={"v": video}).result_rows[0][0] == 60 and not runner.sink.uncommitted():
                break       # stored, and no write pending or in flight: everything committed
    finally:
        runner.sink.close()
        runner.consumer.close()
    count, partition = client.query(stored, parameters={"v": video}).result_rows[0]
    assert count == 60
    labels = {"topic": topics.PLAYBACK_EVENTS, "partition": str(partition)}
    assert REGISTRY.get_sample_value("framelog_analytics_sink_lag_records", labels) == 0
    assert REGISTRY.get_sample_value("framelog_analytics_sink_lag_seconds", labels) == 0     # caught up
    written_views = client.query("SELECT sum(views) FROM video_stats_hourly").result_rows[0][0]
    assert sample("video_views_total") - views_before == written_views      # counters count what was written
    assert sample("framelog_analytics_insert_seconds_count", table="playback_events") > inserts_before
