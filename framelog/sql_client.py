"""`framelog sql`: one read-only statement for analysts.

With the embedded engine (chdb) only the process that owns it may open it, so
the statement goes to the API's /v1/sql; against a ClickHouse server it runs
directly with a read-only session. Either way the same guard applies: one
statement, read-only, rows capped.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import httpx

from framelog.config import Config
from framelog.sinks.clickhouse.client import connect_readonly, is_embedded
from framelog.sinks.clickhouse.queries import AnalyticsQueryError, run_readonly_sql


def _query(config: Config, statement: str, max_rows: int) -> tuple[list[str], list[list[Any]], bool]:
    if is_embedded(config.clickhouse_dsn):
        url = f"http://{config.stack.host}:{config.stack.api_port}/v1/sql"
        try:
            r = httpx.post(url, json={"sql": statement, "max_rows": max_rows}, timeout=60)
        except httpx.ConnectError:
            raise AnalyticsQueryError(f"the embedded engine is owned by the API, which is not running at {url} "
                                      "(start it with `framelog api` or `framelog demo`)") from None
        body = r.json()
        if r.status_code != 200:
            raise AnalyticsQueryError(body.get("error", r.text))
        return body["columns"], body["rows"], body["truncated"]
    client = connect_readonly(config)
    result = run_readonly_sql(client, statement, max_rows=max_rows)
    return result.columns, [list(row) for row in result.rows], result.truncated


def run_sql(config: Config, statement: str, *, max_rows: int = 1000, as_json: bool = False) -> int:
    columns, rows, truncated = _query(config, statement, max_rows)
    if as_json:
        json.dump({"columns": columns, "rows": rows, "truncated": truncated}, sys.stdout, default=str)
        print()
        return 0
    cells = [[str(c) for c in columns]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', truncated' if truncated else ''})")
    return 0
