"""Count the fault generator's events per video in the embedded engine, from a process of its own.

``python -m framelog.ops.faults.engine_counts`` reads ``{"videos": [...], "type": "..."}`` on
stdin and prints ``{video: [rows, distinct event ids]}``. The embedded engine (chdb) opens a
data directory in one process at a time and one directory per process, so the fault suite
(checks.engine_counts) stops the standalone sink and asks here instead of opening it itself.
"""
from __future__ import annotations

import json
import sys

from framelog.core.config import get_config
from framelog.sinks.clickhouse.client import connect

SQL = ("SELECT video_id, count(), uniqExact(event_id) FROM playback_events "
       "WHERE video_id IN {videos:Array(String)} AND type = {type:String} GROUP BY video_id")


def main() -> int:
    ask = json.load(sys.stdin)
    config = get_config()
    client = connect(config.clickhouse_dsn, config.clickhouse.database)
    try:
        rows = client.query(SQL, parameters={"videos": ask["videos"], "type": ask["type"]}).result_rows
    finally:
        client.close()
    found = {v: [0, 0] for v in ask["videos"]}
    found.update({str(v): [int(n), int(d)] for v, n, d in rows})
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
