-- Raw events, one row per Kafka record that survived the sink's event_id filter.
--
-- ReplacingMergeTree keyed by (video_id, event_time, event_id): a client retry
-- carries the same event_id and event time, so any duplicate that slipped past
-- the sink's recent-id filter collapses on merge (read with FINAL for exact raw
-- counts). Per-video reads use the sort key prefix. Kafka coordinates are kept
-- so the sink can rebuild its recent-id window after a restart or rebalance.
-- {{raw_events_ttl_days}} and the deduplication window are filled in by
-- framelog.sinks.clickhouse.migrations from the configuration.

CREATE TABLE IF NOT EXISTS playback_events
(
    event_id                 UUID,
    schema_version           UInt16,
    video_id                 String,
    session_id               String,
    viewer_id                String,
    type                     LowCardinality(String),
    position_seconds         Float64,
    watch_time_delta_seconds Float64,
    duration_seconds         Nullable(Float64),
    rendition                LowCardinality(Nullable(String)),
    country                  LowCardinality(Nullable(String)),
    device                   LowCardinality(Nullable(String)),
    startup_time_ms          Nullable(UInt32),
    rebuffer_duration_ms     Nullable(UInt32),
    error_code               LowCardinality(Nullable(String)),
    event_time               DateTime64(3, 'UTC'),
    ingest_time              DateTime64(3, 'UTC'),
    kafka_topic              LowCardinality(String),
    kafka_partition          UInt32,
    kafka_offset             UInt64,
    INDEX idx_kafka_offset kafka_offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (video_id, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL {{raw_events_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};

CREATE TABLE IF NOT EXISTS quality_switches
(
    event_id        UUID,
    schema_version  UInt16,
    video_id        String,
    session_id      String,
    viewer_id       String,
    from_quality    LowCardinality(String),
    to_quality      LowCardinality(String),
    direction       Enum8('unknown' = 0, 'up' = 1, 'down' = 2, 'same' = 3),
    bandwidth       Float64,
    buffer_level    Float64,
    reason          LowCardinality(String),
    event_time      DateTime64(3, 'UTC'),
    ingest_time     DateTime64(3, 'UTC'),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    INDEX idx_kafka_offset kafka_offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (video_id, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL {{raw_events_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = {{dedup_window}};
