"""The raw tables' columns are written three times: .avsc, SQL migration, TableSpec. They must agree.

For playback_events (PlaybackEvent) and quality_switches (QualitySwitch): the
migrations' columns (after every ALTER ... ADD COLUMN), less the sink's Kafka
coordinates, are the TableSpec's, in order; each column's schema field exists
with a compatible type (string, integer, floating, timestamp; an integer
field may widen to a floating column); a Nullable
column comes from an optional field; and every schema field is either stored
or named here as deliberately not stored.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pytest

from framelog.schemas import raw_schema
from framelog.sinks.clickhouse.migrations import load_migrations
from framelog.sinks.clickhouse.sink import DEFAULT_TABLES, TableSpec

WIDENING = {("integer", "floating")}     # e.g. QualitySwitch.bandwidth (long) in a Float64 column
KAFKA_COLUMNS = ["kafka_topic", "kafka_partition", "kafka_offset"]

# table -> (record, columns the sink derives, schema fields not stored, optional fields the sink fills when null)
TABLES = {
    "playback_events": ("PlaybackEvent", set(), {"client_time"}, set()),
    "quality_switches": ("QualitySwitch", {"direction"}, {"client_time", "country"}, {"ingest_time"}),
}


def _sql_columns(table: str) -> dict[str, str]:
    """Column name -> SQL type, as the migrations leave ``table``."""
    columns: dict[str, str] = {}
    for mig in load_migrations():
        create = re.search(rf"CREATE TABLE IF NOT EXISTS {table}\s*\((.*?)\)\s*ENGINE", mig.sql, re.S)
        if create:
            for line in create.group(1).splitlines():
                line = line.split("--")[0].strip().rstrip(",")
                if line and not line.startswith("INDEX"):
                    name, sql_type = line.split(None, 1)
                    columns[name] = sql_type
        for name, sql_type in re.findall(
                rf"ALTER TABLE {table} ADD COLUMN (?:IF NOT EXISTS )?(\w+) ([^;\n]+?)(?: (?:AFTER|FIRST)\b[^;]*)?;",
                mig.sql):
            columns[name] = sql_type.strip()
    assert columns, f"no CREATE TABLE {table} in the migrations"
    return columns


def _kind_of_avro(t) -> tuple[str, bool]:
    """(kind, optional) of an Avro field type."""
    optional = isinstance(t, list) and "null" in t
    if isinstance(t, list):
        (t,) = [x for x in t if x != "null"]
    if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
        return "timestamp", optional
    if isinstance(t, dict) and t.get("type") == "enum":
        return "string", optional
    return {"string": "string", "int": "integer", "long": "integer", "float": "floating",
            "double": "floating"}[t if isinstance(t, str) else t["type"]], optional


def _kind_of_sql(sql_type: str) -> tuple[str, bool]:
    nullable = "Nullable(" in sql_type
    base = re.sub(r"^(LowCardinality|Nullable)\((.*)\)$", r"\2", sql_type)
    base = re.sub(r"^(LowCardinality|Nullable)\((.*)\)$", r"\2", base)
    if base in ("String", "UUID") or base.startswith("Enum"):
        return "string", nullable
    if re.fullmatch(r"U?Int\d+", base):
        return "integer", nullable
    if re.fullmatch(r"Float\d+", base):
        return "floating", nullable
    if base.startswith("DateTime64"):
        return "timestamp", nullable
    raise AssertionError(f"unexpected SQL type {sql_type}")


def _kind_of_arrow(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    if pa.types.is_timestamp(t):
        return "timestamp"
    raise AssertionError(f"unexpected Arrow type {t}")


def _spec(table: str) -> TableSpec:
    (spec,) = [s for s in DEFAULT_TABLES.values() if s.table == table]
    return spec


@pytest.mark.parametrize("table", sorted(TABLES))
def test_table_spec_is_the_migrations_columns(table):
    sql = _sql_columns(table)
    assert list(sql)[-3:] == KAFKA_COLUMNS
    assert _spec(table).column_names == list(sql)[:-3]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_columns_match_the_schema(table):
    record, derived, not_stored, filled = TABLES[table]
    fields = {f["name"]: f["type"] for f in raw_schema(record)["fields"]}
    sql = _sql_columns(table)
    spec = _spec(table)
    stored = set()
    for column in spec.columns:
        sql_kind, nullable = _kind_of_sql(sql[column.name])
        assert _kind_of_arrow(column.arrow_type) == sql_kind, f"{table}.{column.name}: Arrow vs SQL type"
        if column.name in derived:
            assert column.field not in fields, f"{table}.{column.name} is now a field of {record}"
            continue
        assert column.field in fields, f"{table}.{column.name}: {record} has no field {column.field!r}"
        stored.add(column.field)
        avro_kind, optional = _kind_of_avro(fields[column.field])
        assert avro_kind == sql_kind or (avro_kind, sql_kind) in WIDENING, \
            f"{table}.{column.name}: {record} is {avro_kind}, SQL is {sql_kind}"
        if nullable:
            assert optional, f"{table}.{column.name} is Nullable but {record}.{column.field} is required"
        elif optional:
            assert column.default is not None or column.field in filled, \
                f"{table}.{column.name}: {record}.{column.field} may be null but the column is not Nullable"
    assert set(fields) - stored == not_stored, f"{record} fields neither stored in {table} nor listed as not stored"
