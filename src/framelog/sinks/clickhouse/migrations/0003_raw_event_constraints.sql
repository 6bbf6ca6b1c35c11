-- The semantic rules of framelog.streams.events (FIELD_RULES) as constraints on
-- the raw tables. The sink lets ClickHouse decode Avro blocks of playback events
-- (framelog.sinks.clickhouse.avro_blocks) instead of validating each record in
-- Python; a block with a record that breaks a rule is then refused as a whole
-- (nothing written) and the sink falls back to its per-record path, which
-- dead-letters exactly the bad records. Keep these in step with FIELD_RULES
-- (tests/unit/test_clickhouse_avro_blocks.py compares the two).
-- The event_id rule is the UUID column type itself.

ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_schema_version CHECK schema_version >= 1;
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_event_time CHECK toUnixTimestamp64Milli(event_time) >= 0;
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_video_id CHECK match(video_id, '^[A-Za-z0-9_-]{1,64}$');
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_session_id CHECK session_id != '';
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_viewer_id CHECK viewer_id != '';
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_position CHECK position_seconds >= 0;
ALTER TABLE playback_events ADD CONSTRAINT IF NOT EXISTS valid_watch_time_delta CHECK watch_time_delta_seconds >= 0;

ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_schema_version CHECK schema_version >= 1;
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_event_time CHECK toUnixTimestamp64Milli(event_time) >= 0;
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_video_id CHECK match(video_id, '^[A-Za-z0-9_-]{1,64}$');
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_session_id CHECK session_id != '';
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_viewer_id CHECK viewer_id != '';
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_bandwidth CHECK bandwidth >= 0;
ALTER TABLE quality_switches ADD CONSTRAINT IF NOT EXISTS valid_buffer_level CHECK buffer_level >= 0;
