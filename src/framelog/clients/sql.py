"""`framelog sql`: one read-only statement for analysts.

With the embedded engine (chdb) only the process that owns it may open it, so
the statement goes to the API's /v1/sql with an analyst's token
(``analytics:read``: FRAMELOG_TOKEN, else one minted from the local keyring, see
``framelog.clients.credentials``); against a ClickHouse server it runs directly with a
read-only session. Either way the same guard applies: one
statement, read-only, rows capped.
"""
from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from framelog.core.config import AnalystSqlConfig, AuthConfig
from framelog.sinks.clickhouse.client import is_embedded
from framelog.sinks.clickhouse.queries import AnalyticsQueryError, run_readonly_sql
from framelog_client.errors import error_message

ANALYST_SUB = "framelog-sql"      # the sub of the locally minted analyst token
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class SqlClientSettings:
    """What `framelog sql` reads, filled by the command from the configuration."""
    dsn: str                        # config.clickhouse_dsn: the embedded engine (chdb) or a server
    api_url: str                    # the API's /v1/sql, where an embedded engine's statements go
    auth: AuthConfig                # config.auth and ...
    state_dir: Path                 # ... config.stack.state_dir: the keyring the analyst's token is minted from
    analyst_sql: AnalystSqlConfig   # config.analyst_sql: how long a statement may run


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (``--param``) for ``{NAME:Type}`` placeholders; the engine parses
    each value as its placeholder's type, so a value never becomes SQL text."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _PARAM_NAME.match(name):
            raise AnalyticsQueryError(f"--param expects NAME=VALUE with NAME an identifier, got {pair!r}")
        if name in out:
            raise AnalyticsQueryError(f"--param {name} given twice")
        out[name] = value
    return out


def _post_waiting_for_a_slot(settings: SqlClientSettings, payload: dict[str, Any]) -> httpx.Response:
    """POST /v1/sql; on 429 (all analyst slots busy) wait Retry-After and try again, for at most
    ``analyst_sql.max_execution_time`` (by then a running query has ended)."""
    from framelog.clients.credentials import bearer, local_token
    from framelog.processors.identity import ANALYTICS_READ

    url, limit = settings.api_url, settings.analyst_sql.max_execution_time
    headers = bearer(local_token(settings.auth, settings.state_dir, ANALYST_SUB, [ANALYTICS_READ]))
    give_up = time.monotonic() + limit
    while True:
        try:
            r = httpx.post(url, json=payload, timeout=limit + 30, headers=headers)
        except httpx.ConnectError:
            raise AnalyticsQueryError(f"the embedded engine is owned by the API, which is not running at {url} "
                                      "(start it with `framelog api` or `framelog demo`)") from None
        wait = float(r.headers.get("retry-after", "1")) if r.status_code == 429 else None
        if wait is None or time.monotonic() + wait > give_up:
            return r
        time.sleep(wait)


def _query(settings: SqlClientSettings, connect_readonly: Callable[[], Any], statement: str, max_rows: int,
           parameters: Mapping[str, str]) -> tuple[list[str], list[list[Any]], bool]:
    if is_embedded(settings.dsn):
        r = _post_waiting_for_a_slot(settings, {"sql": statement, "max_rows": max_rows,
                                                "parameters": dict(parameters)})
        if r.status_code != 200:
            raise AnalyticsQueryError(error_message(r))
        body = r.json()
        return body["columns"], body["rows"], body["truncated"]
    client = connect_readonly()
    try:
        result = run_readonly_sql(client, statement, max_rows=max_rows, parameters=parameters)
    finally:
        client.close()
    return result.columns, [list(row) for row in result.rows], result.truncated


def run_sql(settings: SqlClientSettings, statement: str, *, connect_readonly: Callable[[], Any],
            max_rows: int = 1000, as_json: bool = False, parameters: Mapping[str, str] | None = None,
            fmt: str = "table") -> int:
    """Print the result as a table, CSV (header row, RFC 4180 quoting) or JSON. ``connect_readonly``
    opens the analysts' read-only session on a ClickHouse server (not called for the embedded engine)."""
    columns, rows, truncated = _query(settings, connect_readonly, statement, max_rows, parameters or {})
    if fmt == "csv":
        import csv
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return 0
    if as_json or fmt == "json":
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
