"""ClickHouse: connection (client), versioned migrations, the batching exactly-once sink, and queries.

Modules: ``client`` (connect from the DSN: chdb:// embedded or http(s)://),
``migrations`` (+ ``migrations/NNNN_*.sql``), ``sink`` (ClickHouseSink),
``queries`` (get_video_analytics, run_readonly_sql), ``sqltext`` (statement
splitting), ``synthetic`` (in-engine generation of test/benchmark events).
"""
