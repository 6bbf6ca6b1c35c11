"""Synthetic playback events generated inside ClickHouse, for tests and benchmarks.

``INSERT INTO playback_events ... SELECT ... FROM numbers(first, n)`` builds the
rows in the engine (no Python per row) and fires the rollup views exactly like
the sink's inserts do. Rows are deterministic in ``number``, so chunks
``[first, first + n)`` can be generated one after another (10 million rows =
ten chunks of 1 million) and re-running a chunk is detectable by count.

The default spread (event times uniformly over ``days``) is the expensive case
for the views (almost no two events of a block share a (video, hour)); live
traffic has event times near now and aggregates far better per block.
"""
from __future__ import annotations

import time

from clickhouse_connect.driver.client import Client

__all__ = ["GENERATE_SQL", "generate_playback_events"]

GENERATE_SQL = """
INSERT INTO playback_events
    (event_id, schema_version, video_id, session_id, viewer_id, type, position_seconds, watch_time_delta_seconds,
     duration_seconds, rendition, country, device, startup_time_ms, rebuffer_duration_ms, error_code,
     event_time, ingest_time, kafka_topic, kafka_partition, kafka_offset)
SELECT
    generateUUIDv4(number),
    1,
    concat('video-', toString(cityHash64(number, 1) % {videos:UInt32})),
    concat('s', toString(intDiv(number, 20))),
    concat('u', toString(cityHash64(number, 2) % {viewers:UInt32})),
    arrayElement(['view_start', 'progress', 'progress', 'progress', 'progress', 'progress', 'progress', 'progress',
                  'pause', 'seek', 'rebuffer_start', 'rebuffer_end', 'progress', 'progress', 'progress', 'ended',
                  'like', 'share', 'error', 'progress'], number % 20 + 1) AS t,
    (number % 20) * 30.0,
    if(t = 'progress', 10.0, 0.0),
    600.0,
    arrayElement(['1080p', '720p', '480p'], cityHash64(number, 3) % 3 + 1),
    arrayElement(['US', 'DE', 'FR', 'GB', 'IN', 'BR'], cityHash64(number, 4) % 6 + 1),
    'desktop',
    if(t = 'view_start', toUInt32(200 + cityHash64(number, 5) % 800), NULL),
    if(t = 'rebuffer_end', toUInt32(cityHash64(number, 6) % 3000), NULL),
    if(t = 'error', 'MEDIA_ERR_NETWORK', NULL),
    now64(3) - toIntervalMillisecond(cityHash64(number, 7) % {span_ms:UInt64}),
    now64(3),
    'synthetic', toUInt32(number % 6), number
FROM numbers({first:UInt64}, {n:UInt64})
"""


def generate_playback_events(client: Client, n: int, *, videos: int = 1000, viewers: int = 500_000,
                             days: float = 30, first: int = 0, chunk: int = 1_000_000) -> float:
    """Insert ``n`` synthetic events (numbers ``first .. first+n-1``); returns seconds taken."""
    t0 = time.perf_counter()
    for start in range(first, first + n, chunk):
        client.command(GENERATE_SQL, parameters={
            "videos": int(videos), "viewers": int(viewers), "span_ms": int(days * 86_400_000),
            "first": int(start), "n": int(min(chunk, first + n - start))})
    return time.perf_counter() - t0
