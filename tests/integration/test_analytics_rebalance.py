"""Scaling the analytics sink: a second sink joins the group mid-stream, and every event still counts once.

Two AnalyticsSinkRunners in one consumer group on a private 4-partition topic.
chdb lets one process open a path, so both run in this process, each with its
own sessions of the one engine (against a ClickHouse server they would be two
`framelog sink analytics` processes). The first runs alone through half of the
events; the second joins while the first is flushing, so the rebalance takes
partitions from a sink with inserts in flight (its revoke finishes and commits
them first); then the rest arrive, with client retries (the same event_id
again, on the same partition, possibly now owned by the other sink). Raw rows
and rollups must hold each event exactly once, and both sinks must have written.
"""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from framelog.schemas.codec import MILLIS, AvroCodec
from framelog.schemas.events import new_event
from framelog.sinks.clickhouse.client import connect
from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner
from framelog.sinks.clickhouse.sink import DEFAULT_TABLES
from framelog.streams.admin import create_topics
from framelog.streams.lag import group_position
from framelog.streams.producer import EventProducer
from framelog.streams.topics import TopicSpec
from tests.integration.support import sink_settings, wait_for

pytestmark = pytest.mark.integration

EVENTS = 8_000
RETRIES = 400
VIDEOS = 16            # keys spread over the partitions
PARTITIONS = 4
DEADLINE = 180.0


def _codec(config, spec: TopicSpec, **kw) -> AvroCodec:
    return AvroCodec(schema_registry_url=config.kafka.schema_registry_url,
                     topic_specs=[spec, TopicSpec(spec.dlq, ("DeadLetter",))], **kw)


def test_a_second_sink_joining_the_group_counts_every_event_once(stack, config, chdb_path):
    spec = TopicSpec(f"test.analytics-rebalance-{uuid.uuid4().hex[:8]}", ("PlaybackEvent",), partitions=PARTITIONS,
                     retention_ms=3_600_000)
    create_topics(config.streams, [spec, TopicSpec(spec.dlq, ("DeadLetter",), partitions=PARTITIONS,
                                                   retention_ms=3_600_000)])
    cfg = dataclasses.replace(config, clickhouse=dataclasses.replace(
        config.clickhouse, dsn=f"chdb://{chdb_path}", database=f"rebalance_{uuid.uuid4().hex[:8]}"))
    group = f"test-rebalance-{uuid.uuid4().hex[:8]}"
    tables = {spec.name: DEFAULT_TABLES["playback.events"]}
    videos = [f"rebal{uuid.uuid4().hex[:8]}{i}" for i in range(VIDEOS)]
    events = [new_event("PlaybackEvent", session_id=f"s{i % 300}", viewer_id=f"v{i % 900}", video_id=videos[i % VIDEOS],
                        type=("view_start", "progress", "progress", "like")[i % 4], position_seconds=float(i % 60),
                        watch_time_delta_seconds=5.0, rendition="720p", country="US", device="web")
              for i in range(EVENTS)]
    producer = EventProducer(cfg.streams, _codec(cfg, spec))

    def send(batch) -> None:
        for e in batch:
            producer.send(spec.name, "PlaybackEvent", e)          # keyed by video_id: a retry meets its original
        producer.flush(60)

    def runner() -> AnalyticsSinkRunner:
        r = AnalyticsSinkRunner(sink_settings(cfg), group_id=group, tables=tables,
                                codec=_codec(cfg, spec, timestamps=MILLIS))
        r.start_thread()
        return r

    half = EVENTS // 2
    send(events[:half])
    runners = [runner()]
    try:
        wait_for(lambda: sum(runners[0].committed.values()) > 0, "the first sink's first commit", DEADLINE)
        runners.append(runner())                                   # joins: the group rebalances
        quarter = half + (EVENTS - half) // 2
        send(events[half:quarter])                                 # more work while the partitions move
        wait_for(lambda: runners[1].consumer.assigned, "the second sink to own partitions", DEADLINE)
        send(events[quarter:] + events[: RETRIES // 2] + events[half: half + RETRIES // 2])
        total = EVENTS + RETRIES
        wait_for(lambda: (lambda p: p.lag == 0 and p.committed == total)(
            group_position(cfg.kafka, cfg.stack, group, spec.name)),
                 f"the group to commit all {total} records", DEADLINE, step=0.5)
        # neither sink died on the rebalance (a sink that kept a revoked partition's batch would
        # trip over the replayed offsets when the partition came back)
        assert all(r._thread.is_alive() for r in runners)
    finally:
        for r in runners:
            r.stop()
        for r in runners:
            r.join(timeout=60)
    assert all(r.sink.stats["rows_written"] > 0 for r in runners), [dict(r.sink.stats) for r in runners]
    assert sum(r.sink.stats["rows_written"] for r in runners) == EVENTS

    client = connect(cfg.clickhouse_dsn, cfg.clickhouse.database, create_database=False)
    try:
        def one(sql: str) -> tuple:
            return client.query(sql, parameters={"videos": videos}).result_rows[0]

        assert one("SELECT count(), uniqExact(event_id) FROM playback_events "
                   "WHERE video_id IN {videos:Array(String)}") == (EVENTS, EVENTS)
        views = sum(e["type"] == "view_start" for e in events)
        likes = sum(e["type"] == "like" for e in events)
        assert one("SELECT sum(events), sum(views), sum(likes), sum(watch_time_seconds) FROM video_stats_hourly "
                   "WHERE video_id IN {videos:Array(String)}") == (EVENTS, views, likes, 5.0 * EVENTS)
    finally:
        client.close()
