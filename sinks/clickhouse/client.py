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

from framelog.config import Config
from framelog.exceptions import ConfigError

__all__ = ["connect", "connect_readonly", "READONLY_SETTINGS", "is_embedded", "quote_identifier"]

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


def connect(config: Config, *, settings: dict[str, Any] | None = None, create_database: bool = True) -> Client:
    """A client on ``config.clickhouse_dsn`` with ``config.clickhouse.database`` as default database."""
    dsn = config.clickhouse_dsn
    database = config.clickhouse.database
    quoted = quote_identifier(database)
    if create_database:
        bootstrap = _client(dsn, None, None)
        try:
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {quoted}")
        finally:
            bootstrap.close()
    return _client(dsn, database, settings)


# Limits of the analysts' session. A readonly session accepts a SETTINGS clause
# only if it repeats the current values, so run_readonly_sql sends exactly these.
READONLY_SETTINGS: dict[str, Any] = {
    "max_execution_time": 30,
    "max_result_rows": 100_000,
    "result_overflow_mode": "break",
    "readonly": 1,          # last: after it, the session cannot change settings
}


def connect_readonly(config: Config) -> Client:
    """A separate session for analysts' SQL, locked to ``readonly=1``.

    ``readonly=1`` is applied last, after the limits, because a readonly
    session cannot change settings any more (checked on chdb 26.9: it then
    also refuses table functions such as ``file()``/``url()`` and every write;
    ``readonly=2`` would still allow ``INSERT INTO FUNCTION file(...)``).
    """
    return connect(config, settings=dict(READONLY_SETTINGS), create_database=True)
