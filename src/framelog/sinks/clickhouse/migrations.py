"""Versioned ClickHouse migrations: ``migrations/NNNN_name.sql`` applied in order.

* Each file is a template: ``{{name}}`` placeholders are filled only with
  numbers derived from the configuration (raw-event TTL in days, completion
  threshold, deduplication window). An unknown placeholder is an error.
* Files are split into statements by :mod:`.sqltext` (quote- and
  comment-aware) and sent **one statement per call**.
* Every statement is idempotent (``IF NOT EXISTS``), so a migration that died
  half-way is simply re-run; a version is recorded in ``schema_migrations``
  only after all its statements succeeded.
* The recorded checksum is of the file as shipped: editing an applied
  migration is refused (write a new one instead).
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from framelog.core.config import AnalyticsConfig
from framelog.core.errors import FramelogError
from framelog.sinks.clickhouse.sqltext import split_statements

__all__ = ["Migration", "MigrationError", "load_migrations", "template_values", "render",
           "apply_migrations", "applied_versions", "analytics_tables", "DEDUP_WINDOW"]

# Insert-token deduplication window (blocks remembered per table). Large enough
# to cover every batch a consumer can replay between two commits.
DEDUP_WINDOW = 10_000

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CREATED = re.compile(r"^CREATE\s+(?:TABLE|VIEW)\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

_CREATE_LOG = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


class MigrationError(FramelogError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migration files, ordered by version."""
    root = resources.files("framelog.sinks.clickhouse") / "migrations"
    found = []
    for entry in root.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda x: x.version)
    versions = [x.version for x in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def template_values(analytics: AnalyticsConfig) -> dict[str, str]:
    """Numbers only: nothing user-supplied ever reaches migration SQL (``analytics``: ``config.analytics``)."""
    ttl_days = max(1, math.ceil(analytics.raw_events_ttl / 86400))
    threshold = float(analytics.completion_threshold)
    if not 0 <= threshold <= 1:
        raise MigrationError(f"completion_threshold out of range: {threshold}")
    return {
        "raw_events_ttl_days": str(int(ttl_days)),
        "completion_threshold": repr(threshold),
        "dedup_window": str(int(DEDUP_WINDOW)),
    }


def render(sql: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise MigrationError(f"unknown migration placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(sub, sql)


def applied_versions(client: Client) -> dict[int, str]:
    client.command(_CREATE_LOG)
    rows = client.query("SELECT version, argMax(checksum, applied_at) FROM schema_migrations "
                        "GROUP BY version").result_rows
    return {int(v): c for v, c in rows}


def apply_migrations(client: Client, analytics: AnalyticsConfig,
                     migrations: Iterable[Migration] | None = None) -> list[int]:
    """Apply pending migrations in order, templated from ``analytics`` (``config.analytics``); returns the
    versions applied now."""
    values = template_values(analytics)
    done = applied_versions(client)
    applied_now = []
    for mig in (load_migrations() if migrations is None else sorted(migrations, key=lambda x: x.version)):
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} was changed after it was applied; add a new migration")
            continue
        for statement in split_statements(render(mig.sql, values)):
            client.command(statement)
        client.insert("schema_migrations", [[mig.version, mig.name, mig.checksum]],
                      column_names=["version", "name", "checksum"])
        applied_now.append(mig.version)
    return applied_now


def analytics_tables() -> frozenset[str]:
    """The tables and plain views the migrations create: what analysts' SQL may read.

    Materialized views (their rows live in their TO tables) and ``schema_migrations``
    (bookkeeping) are left out; a new migration's table is readable without another edit."""
    names = set()
    for mig in load_migrations():
        for statement in split_statements(mig.sql):
            body = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
            m = _CREATED.match(body.strip())
            if m:
                names.add(m.group(1))
    return frozenset(names)
