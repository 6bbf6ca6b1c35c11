-- Hourly rollups fed by materialized views (exact because the sink inserts each
-- event_id once; see framelog.sinks.clickhouse.sink). Buckets are the hour of
-- the event time, so late and out-of-order events land where they belong.
-- The rollup tables carry the deduplication window too: a retried insert with
-- the same insert_deduplication_token is dropped in the raw table and the
-- views do not fire for it.
-- index_granularity 1024: one video's range is a few hundred rows, so small
-- granules keep a per-video read (and its uniq states) short.
-- View types: 'view_start' (framelog's player) and 'video_view' (the seed's name).

CREATE TABLE IF NOT EXISTS video_stats_hourly
(
    video_id            String,
    hour                DateTime('UTC'),
    events              SimpleAggregateFunction(sum, UInt64),
    views               SimpleAggregateFunction(sum, UInt64),
    unique_viewers      AggregateFunction(uniq, String),
    watch_time_seconds  SimpleAggregateFunction(sum, Float64),
    completed_sessions  AggregateFunction(uniqExact, String),
    likes               SimpleAggregateFunction(sum, UInt64),
    shares              SimpleAggregateFunction(sum, UInt64),
    startups            SimpleAggregateFunction(sum, UInt64),
    startup_time_ms_sum SimpleAggregateFunction(sum, Float64),
    rebuffer_count      SimpleAggregateFunction(sum, UInt64),
    rebuffer_seconds    SimpleAggregateFunction(sum, Float64),
    playback_failures   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (video_id, hour)
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS video_stats_hourly_mv TO video_stats_hourly AS
SELECT
    video_id,
    toStartOfHour(event_time) AS hour,
    count() AS events,
    countIf(type IN ('view_start', 'video_view')) AS views,
    uniqStateIf(viewer_id, type IN ('view_start', 'video_view')) AS unique_viewers,
    sum(watch_time_delta_seconds) AS watch_time_seconds,
    uniqExactStateIf(session_id, type = 'ended'
        OR (duration_seconds > 0 AND position_seconds >= {{completion_threshold}} * duration_seconds)) AS completed_sessions,
    countIf(type IN ('like', 'video_like')) AS likes,
    countIf(type IN ('share', 'video_share')) AS shares,
    countIf(startup_time_ms IS NOT NULL) AS startups,
    sum(toFloat64(ifNull(startup_time_ms, 0))) AS startup_time_ms_sum,
    countIf(type = 'rebuffer_start') AS rebuffer_count,
    sum(toFloat64(ifNull(rebuffer_duration_ms, 0)) / 1000) AS rebuffer_seconds,
    countIf(type = 'error') AS playback_failures
FROM playback_events
GROUP BY video_id, hour;

CREATE TABLE IF NOT EXISTS video_country_hourly
(
    video_id           String,
    hour               DateTime('UTC'),
    country            LowCardinality(String),
    views              SimpleAggregateFunction(sum, UInt64),
    unique_viewers     AggregateFunction(uniq, String),
    watch_time_seconds SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (video_id, hour, country)
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS video_country_hourly_mv TO video_country_hourly AS
SELECT
    video_id,
    toStartOfHour(event_time) AS hour,
    ifNull(country, '') AS country,
    countIf(type IN ('view_start', 'video_view')) AS views,
    uniqStateIf(viewer_id, type IN ('view_start', 'video_view')) AS unique_viewers,
    sum(watch_time_delta_seconds) AS watch_time_seconds
FROM playback_events
GROUP BY video_id, hour, country;

CREATE TABLE IF NOT EXISTS video_rendition_hourly
(
    video_id        String,
    hour            DateTime('UTC'),
    rendition       LowCardinality(String),
    playing_seconds SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (video_id, hour, rendition)
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS video_rendition_hourly_mv TO video_rendition_hourly AS
SELECT
    video_id,
    toStartOfHour(event_time) AS hour,
    assumeNotNull(rendition) AS rendition,
    sum(watch_time_delta_seconds) AS playing_seconds
FROM playback_events
WHERE rendition IS NOT NULL AND watch_time_delta_seconds > 0
GROUP BY video_id, hour, rendition;

CREATE TABLE IF NOT EXISTS quality_switch_hourly
(
    video_id      String,
    hour          DateTime('UTC'),
    switches      SimpleAggregateFunction(sum, UInt64),
    switches_up   SimpleAggregateFunction(sum, UInt64),
    switches_down SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (video_id, hour)
SETTINGS non_replicated_deduplication_window = {{dedup_window}}, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS quality_switch_hourly_mv TO quality_switch_hourly AS
SELECT
    video_id,
    toStartOfHour(event_time) AS hour,
    count() AS switches,
    countIf(direction = 'up') AS switches_up,
    countIf(direction = 'down') AS switches_down
FROM quality_switches
GROUP BY video_id, hour;
