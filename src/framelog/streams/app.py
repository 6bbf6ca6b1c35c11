"""The Faust application factory.

One Faust app per consumer group: ``framelog-intake`` turns uploads into
pipeline jobs, and each pipeline stage runs as ``framelog-<stage>``, so an
operator scales one stage by starting more workers of it. Faust owns the group
membership and offsets (at-least-once: an offset is committed only after the
agent finished the record); framelog's codec decodes the raw bytes and
framelog's idempotent producer (acks=all) writes every output event.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer

from framelog.core.config import StreamsConfig
from framelog.core.kafka_nodes import bootstrap_servers
from framelog.streams.kafka_auth import faust_credentials

# A record is acked, and its offset committed, only after its agent finished;
# the poll interval must outlast the longest stage so a long transcode never
# looks like a dead consumer.
POLL_INTERVAL_MARGIN = 300.0
# A kill -9'd worker's partitions move on within seconds. Long jobs never hold
# the event loop (they run in threads), so heartbeats keep a busy member alive.
SESSION_TIMEOUT = 10.0
HEARTBEAT_INTERVAL = 3.0
# A member that joins while a restarted broker still reports the topics missing is assigned nothing, and
# the group stays STABLE with every partition unowned until the leader's next metadata refresh notices the
# topics (aiokafka rejoins then): 5 minutes by default (measured: 4m46s, issue 14 pt 2). 30 s bounds it.
CONSUMER_METADATA_MAX_AGE = 30.0


class IdempotentProducer(AIOKafkaDriverProducer):
    """Faust's own producer (table changelogs) as framelog's: acks=all and idempotent, always.

    Faust asks aiokafka for idempotence only inside transactions; without it a retry after a
    broker failover can write a changelog record twice or out of order.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


def create_app(streams: StreamsConfig, group: str) -> faust.App:
    """The Faust app of worker ``group`` (``config.streams``: its brokers and identity; the longest stage
    timeout of ``topics.pipeline`` bounds the poll interval)."""
    longest = max(s.timeout for s in streams.topics.pipeline.stages)
    datadir = streams.stack.state_dir / "faust" / group
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"framelog-{group}",
        broker=[f"kafka://{server}" for server in bootstrap_servers(streams.kafka, streams.stack).split(",")],
        # the worker group's own principal
        broker_credentials=faust_credentials(streams.kafka, streams.stack.state_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_allow_declare=False,           # framelog creates its topics (framelog topics create)
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_interval=longest + POLL_INTERVAL_MARGIN,
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL,
        consumer_metadata_max_age_ms=int(CONSUMER_METADATA_MAX_AGE * 1000),
        broker_commit_every=1,
        broker_commit_interval=1.0,
        store="memory://",
        web_enabled=False,
        producer_acks=-1,
        datadir=str(datadir),
    )
    app.transport.Producer = IdempotentProducer   # type: ignore[misc]  # instance attribute, read by create_producer
    return app


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)
