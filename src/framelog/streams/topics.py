"""The one registry of framelog's Kafka topics: names, keys, partitions, retention.

Every topic is keyed by video id so that all events of one video stay ordered
on one partition and per-video aggregates are co-partitioned. Each data topic
has a dead-letter twin (``<name>.dlq``) for records that cannot be decoded or
fail validation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from framelog.core.config import PriorityConfig, TopicsConfig, get_config

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schemas: tuple[str, ...]        # Avro record names (schemas/<name>.avsc) allowed on the topic
    key: str = "video_id"
    partitions: int | None = None   # None: kafka.default_partitions from the configuration
    retention_ms: int = -1          # -1: keep forever (the log is the source of truth)
    compacted: bool = False
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.name)

    def kafka_config(self, min_insync_replicas: int = 1) -> dict[str, str]:
        """The topic's configs; ``min_insync_replicas`` comes from the cluster's shape (streams/admin.py)."""
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_insync_replicas),
        }
        cfg.update(self.extra_config)
        return cfg


def dead_letter_topic(name: str) -> str:
    return f"{name}.dlq"


UPLOADS = "video.uploads"
STAGE_TRANSITIONS = "video.stage-transitions"
ASSETS = "video.assets"
PLAYBACK_EVENTS = "playback.events"
QUALITY_SWITCHES = "playback.quality-switches"
TIER_TRANSITIONS = "storage.tier-transitions"
CDN_COMMANDS = "cdn.commands"
ACCESS = "video.access"
WEBHOOK_ENDPOINTS = "webhooks.endpoints"
WEBHOOK_DELIVERIES = "webhooks.deliveries"
CHUNK_REQUESTS = "pipeline.transcoding.chunks"
CHUNK_TRANSITIONS = "video.chunk-transitions"


def pipeline_topic(stage: str, priority: str = "") -> str:
    """The request topic of one pipeline stage: ``pipeline.<stage>``, or ``pipeline.<stage>.<priority>``.

    The default priority (and the empty one) uses the plain topic.
    """
    return f"pipeline.{stage}.{priority}" if priority else f"pipeline.{stage}"


def stage_topic(priorities: PriorityConfig, stage: str, priority: str = "") -> str:
    """The request topic of ``stage`` for a priority level of ``config.priorities`` (the default level's is
    the plain one)."""
    level = priority if priority in priorities.levels else priorities.default
    return pipeline_topic(stage, "" if level == priorities.default else level)


def stage_topics(priorities: PriorityConfig, stage: str) -> list[tuple[str, str]]:
    """(priority, topic) of every level of ``stage``, first level first."""
    return [(level, stage_topic(priorities, stage, level)) for level in priorities.levels]


def _data_topics(config: TopicsConfig) -> list[TopicSpec]:
    topics = [
        TopicSpec(UPLOADS, ("UploadCompleted", "VideoDeleted"),
                  description="a raw upload landed in object storage; a video was deleted"),
        TopicSpec(STAGE_TRANSITIONS, ("StageTransition",),
                  description="every state change of every pipeline stage; status is rebuilt from it"),
        TopicSpec(ASSETS, ("AssetPublished",), compacted=True,
                  description="latest published renditions, playlists and thumbnails per video"),
        TopicSpec(PLAYBACK_EVENTS, ("PlaybackEvent",), retention_ms=30 * DAY_MS,
                  description="client playback events; sunk into ClickHouse"),
        TopicSpec(QUALITY_SWITCHES, ("QualitySwitch",), retention_ms=30 * DAY_MS,
                  description="the ABR controller's quality switches (seed trackQualitySwitch)"),
        TopicSpec(TIER_TRANSITIONS, ("TierTransition", "RestoreRequest"),
                  description="storage-class decisions per rendition, and restore requests"),
        TopicSpec(CDN_COMMANDS, ("CacheWarm", "CacheInvalidate"), retention_ms=7 * DAY_MS,
                  description="edge cache warm and purge commands"),
        TopicSpec(ACCESS, ("AccessPolicy", "ShareLink"),
                  description="who may watch a video (policy snapshots) and its share links issued/revoked; "
                              "kept forever, not compacted: a revocation must outlive later policy changes"),
        TopicSpec(WEBHOOK_ENDPOINTS, ("WebhookEndpoint",), key="endpoint_id", compacted=True,
                  description="webhook endpoint registrations; each record is the endpoint's whole state, "
                              "so compaction to the latest per endpoint loses nothing"),
        TopicSpec(WEBHOOK_DELIVERIES, ("WebhookDelivery",), key="endpoint_id",
                  retention_ms=int(config.webhooks.deliveries_retention * 1000),
                  description="every webhook delivery step (parked, attempted, given up) with its message: "
                              "pending messages survive restarts, any message can be replayed"),
    ]
    topics += [
        TopicSpec(CHUNK_REQUESTS, ("ChunkRequest",), key="video_id/chunk",
                  description="chunk jobs of chunked transcoding (the chunks consumer group); each on a partition "
                              "of the least loaded worker, so the workers of the group share one video"),
        TopicSpec(CHUNK_TRANSITIONS, ("ChunkTransition",),
                  description="every state change of every chunk job; the stitch group's table is folded from it"),
    ]
    topics += [
        TopicSpec(topic, ("StageRequest",),
                  description=f"{priority}-priority work requests for the {stage.name} stage (its own consumer group)")
        for stage in config.pipeline.stages for priority, topic in stage_topics(config.priorities, stage.name)
    ]
    return topics


def all_topics(config: TopicsConfig | None = None) -> list[TopicSpec]:
    """Every topic framelog uses, dead-letter twins included (``config.topics``; None: the loaded file's)."""
    data = _data_topics(config or get_config().topics)
    dlqs = [TopicSpec(t.dlq, ("DeadLetter",), key=t.key, partitions=t.partitions,
                      description=f"records of {t.name} that could not be decoded or validated")
            for t in data]
    return data + dlqs


def topic_spec(name: str, config: TopicsConfig | None = None) -> TopicSpec:
    for spec in all_topics(config):
        if spec.name == name:
            return spec
    raise KeyError(f"unknown topic {name!r}")
