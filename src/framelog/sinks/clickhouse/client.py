"""Connect to ClickHouse from the configured DSN: the same code for both engines.

* ``chdb:///abs/dir`` (the local default, ``<state_dir>/clickhouse``): the
  ClickHouse engine embedded in this process through chdb. chdb hosts one
  engine per process and one process per data path, so the process that owns
  the path (the sink) also serves the queries. Several clients on the same path
  inside one process are fine (each gets its own session handle).
* ``http(s)://user:pass@host:8123``: a ClickHouse server.

``connect`` creates the configured database (the identifier is validated and
quoted; it comes from the configuration file, never from a request) and
returns a client whose default database is that database.
"""
from __future__ import annotations

import re
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from framelog.core.config import AnalystSqlConfig
from framelog.core.errors import ConfigError

__all__ = ["connect", "connect_readonly", "analyst_settings", "client_is_embedded", "is_embedded",
           "quote_identifier"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def quote_identifier(name: str) -> str:
    """Back-quote a configuration-supplied identifier after validating it."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigError("clickhouse.database", f"expected an identifier like 'framelog', got {name!r}")
    return f"`{name}`"


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def _client(dsn: str, database: str | None, settings: dict[str, Any] | None) -> Client:
    kwargs: dict[str, Any] = {"dsn": dsn, "settings": dict(settings or {})}
    if database:
        kwargs["database"] = database
    return clickhouse_connect.get_client(**kwargs)


def connect(dsn: str, database: str, *, settings: dict[str, Any] | None = None,
            create_database: bool = True) -> Client:
    """A client on ``dsn`` (``config.clickhouse_dsn``) with ``database`` (``config.clickhouse.database``) as
    default database."""
    quoted = quote_identifier(database)
    if create_database:
        bootstrap = _client(dsn, None, None)
        try:
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {quoted}")
        finally:
            bootstrap.close()
    return _client(dsn, database, settings)


def analyst_settings(limits: AnalystSqlConfig, *, embedded: bool) -> dict[str, Any]:
    """The engine's walls around analysts' SQL (``analyst_sql:`` in framelog.yaml).

    ``readonly=1`` comes last: after it the session cannot change settings any more,
    and a SETTINGS clause is accepted only if it repeats these values (the guard refuses
    SETTINGS in analysts' text anyway). Checked on chdb 26.9: ``readonly=1`` refuses
    writes and the table functions ``file()``, ``url()``, ``s3()``... in SELECT and EXPLAIN;
    ``allow_python_table_function`` (on by default in chdb, and not stopped by readonly)
    is switched off. chdb runs the engine as clickhouse-local, which applies neither
    ``user_files_path`` to the scalar ``file()`` nor ``remote_url_allow_hosts`` to
    ``DESCRIBE url(...)``: on the embedded engine those two are stopped by the guard
    (sql_guard.py) alone; a ClickHouse server has the grants and host lists for them.
    """
    settings: dict[str, Any] = {
        "max_execution_time": int(limits.max_execution_time),
        "max_memory_usage": limits.max_memory_usage,
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
        "result_overflow_mode": "break",
        "max_rows_to_read": limits.max_rows_to_read,
        "max_threads": limits.max_threads,
        "os_thread_priority": limits.os_thread_priority,     # Linux nice of the query's threads (measured)
        "allow_introspection_functions": 0,
    }
    if embedded:        # chdb's own setting: a ClickHouse server would refuse it as unknown
        settings["allow_python_table_function"] = 0
    settings["readonly"] = 1          # last: after it, the session cannot change settings
    return settings


def client_is_embedded(client: Client) -> bool:
    """The session runs on the embedded engine (chdb) rather than a ClickHouse server."""
    return str(getattr(client, "uri", "") or "").startswith("chdb:") or type(client).__name__ == "ChdbClient"


def connect_readonly(dsn: str, database: str, limits: AnalystSqlConfig) -> Client:
    """A separate session for analysts' SQL, locked to ``readonly=1`` with the analyst limits
    (``config.analyst_sql``)."""
    settings = analyst_settings(limits, embedded=is_embedded(dsn))
    return connect(dsn, database, settings=settings, create_database=True)
