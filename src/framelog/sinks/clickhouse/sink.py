"""The ClickHouse sink: batched, columnar, exactly-once per event_id for the rollups.

Two layers of deduplication, because they catch different things:

1. **Replayed batches** (the consumer crashed after the insert and before the
   Kafka commit, or an insert call is retried): every insert carries
   ``insert_deduplication_token = "{topic}:{partition}:{first}-{last}:{rows}"``
   and the tables keep ``non_replicated_deduplication_window`` tokens, so a
   repeated insert of the same batch is dropped by ClickHouse, and the
   materialized views do not fire for a dropped block. ``rows`` is the number
   of rows actually sent after filtering (see 2): if a replay after a crash
   covers the same offsets but some rows are already stored, it is a
   different insert and must not be mistaken for the old one.
2. **Client retries of one event** (a beacon resent: same ``event_id``, new
   Kafka offset, possibly another batch): the sink keeps, per partition, a
   bounded window of recently written event_ids and drops repeats before the
   insert. Because the rollups are materialized views fed by the insert, a
   duplicate that reached the raw table would be counted twice for good, so
   this filter is what keeps the rollups exact. The window is rebuilt from the
   raw table (``kafka_topic/kafka_partition/kafka_offset`` columns) the first
   time a partition is written after start-up or a rebalance, so a restarted
   or new owner knows what its predecessor stored, whatever batch boundaries
   it had.

Limits (stated, not hidden): a duplicate arriving more than ``dedup_window``
events (per partition) after the original is not caught by the sink; the raw
table is a ReplacingMergeTree on (video_id, event_time, event_id), so such a
late duplicate disappears from raw data on merge (exact with ``FINAL``), but
the rollup rows already counted it. A duplicate with a *different* event time
for the same event_id is a different row for ClickHouse.

Two insert paths, one token scheme. Records arrive undecoded (Kafka messages,
from ``EventConsumer.poll_raw``):

* **engine path** (raw table with ``avro_record``): when every record of the
  batch is single-object encoded with the current writer schema, the bodies are
  concatenated into one Avro container block (:mod:`.avro_blocks`) and sent as
  ``INSERT ... FORMAT Avro``; ClickHouse decodes and checks them (types, UUIDs,
  the semantic rules as table constraints), Python only slices bytes.
* **Python path** (other writer schemas, the Confluent wire format, quality
  switches, or a block the engine refused): each record is decoded and validated
  by the consumer's codec (what fails is dead-lettered), converted to Arrow
  columns and sent as ``INSERT ... FORMAT Arrow``.

A refused block wrote nothing (one block, parsed and checked before any part is
written), so falling back is safe; and if the refusal was not about the data,
the Python path sends the same rows under the same token, which is then a no-op.
Both use ``async_insert=0`` so that "insert returned" means "data is in a part".
Engine-path inserts run on one insert thread, so that a flush builds the next
partition's block while the previous one is inserted (``start_write``), and the
sink is ``pipelined``: a flush returns with its inserts in flight and the
consumer keeps polling; they are finished (window updated, offsets committed)
before the next flush builds anything. Only partitions whose insert returned
are committed.
"""
from __future__ import annotations

import collections
import datetime as _dt
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from framelog.core.config import AnalyticsConfig, QualityLevel
from framelog.core.ids import is_event_id
from framelog.sinks.base.batching import Batch, BatchingSink, CommitCallback, TopicPartition
from framelog.sinks.clickhouse import metrics
from framelog.sinks.clickhouse.avro_blocks import AvroBlock, AvroBlockWriter

log = logging.getLogger(__name__)

__all__ = ["ClickHouseSink", "RecentIds", "TableSpec", "PLAYBACK_EVENTS_TABLE", "QUALITY_SWITCHES_TABLE",
           "DEFAULT_TABLES", "dedup_token", "quality_direction", "canonical_event_id"]

DEFAULT_DEDUP_WINDOW = 100_000   # event ids remembered per partition

_UTC = _dt.UTC
_TS = pa.timestamp("ms", tz="UTC")


def _ms(value: Any) -> int:
    """Event times arrive as epoch milliseconds (or datetimes from Avro timestamp-millis)."""
    if isinstance(value, int):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, float):
        return int(value)
    raise TypeError(f"expected epoch milliseconds or datetime, got {value!r}")


@dataclass(frozen=True)
class Column:
    """One raw-table column: the record field it comes from, its Arrow type, its default for null."""
    name: str
    arrow_type: pa.DataType
    default: Any = None
    source: str | None = None          # record field, when it differs from the column name
    convert: Callable[[Any], Any] | None = None   # slow path for values Arrow does not take as-is

    @property
    def field(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class TableSpec:
    table: str
    columns: tuple[Column, ...]
    avro_record: str | None = None     # records the engine may decode itself (see module doc)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _as_str(v: Any) -> Any:
    return None if v is None else str(v)


def _as_ms(v: Any) -> Any:
    return None if v is None else _ms(v)


def _common_head() -> tuple[Column, ...]:
    return (
        Column("event_id", pa.string(), "", convert=_as_str),
        Column("schema_version", pa.uint16(), 1),
        Column("video_id", pa.string(), "", convert=_as_str),
        Column("session_id", pa.string(), "", convert=_as_str),
        Column("viewer_id", pa.string(), "", convert=_as_str),
    )


def _times() -> tuple[Column, ...]:
    return (
        Column("event_time", _TS, convert=_as_ms),    # null: falls back to client_time
        Column("ingest_time", _TS, convert=_as_ms),   # null: now
    )


PLAYBACK_EVENTS_TABLE = TableSpec("playback_events", _common_head() + (
    Column("type", pa.string(), "", convert=_as_str),
    Column("position_seconds", pa.float64(), 0.0, convert=float),
    Column("watch_time_delta_seconds", pa.float64(), 0.0, convert=float),
    Column("duration_seconds", pa.float64(), convert=lambda v: None if v is None else float(v)),
    Column("rendition", pa.string(), convert=_as_str),
    Column("country", pa.string(), convert=_as_str),
    Column("device", pa.string(), convert=_as_str),
    Column("startup_time_ms", pa.uint32(), convert=lambda v: None if v is None else int(v)),
    Column("rebuffer_duration_ms", pa.uint32(), convert=lambda v: None if v is None else int(v)),
    Column("error_code", pa.string(), convert=_as_str),
) + _times(), avro_record="PlaybackEvent")

# Quality switches take the Python path: their direction is derived from the configured ladder
# and a missing ingest_time becomes "now", neither of which the raw Avro carries.
QUALITY_SWITCHES_TABLE = TableSpec("quality_switches", _common_head() + (
    Column("from_quality", pa.string(), "", convert=_as_str),
    Column("to_quality", pa.string(), "", convert=_as_str),
    Column("direction", pa.string(), "unknown", convert=_as_str),
    Column("bandwidth", pa.float64(), 0.0, convert=float),
    Column("buffer_level", pa.float64(), 0.0, convert=float),
    Column("reason", pa.string(), "", convert=_as_str),
) + _times())

DEFAULT_TABLES: dict[str, TableSpec] = {
    "playback.events": PLAYBACK_EVENTS_TABLE,
    "playback.quality-switches": QUALITY_SWITCHES_TABLE,
}

_TIME_COLUMNS = {"event_time", "ingest_time"}




def canonical_event_id(value: Any) -> str | None:
    """Lower-case hyphenated UUID text (what ClickHouse's toString(UUID) gives back), or None if invalid."""
    if is_event_id(value) and value == value.lower():
        return value
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def dedup_token(topic: str, partition: int, first_offset: int, last_offset: int, rows: int) -> str:
    return f"{topic}:{partition}:{first_offset}-{last_offset}:{rows}"


def quality_direction(from_quality: str | None, to_quality: str | None, ranks: Mapping[str, int]) -> str:
    """'up' / 'down' / 'same' by the configured ladder's bandwidths; 'unknown' for names not on it."""
    a = ranks.get((from_quality or "").lower())
    b = ranks.get((to_quality or "").lower())
    if a is None or b is None:
        return "unknown"
    return "up" if b > a else "down" if b < a else "same"


class RecentIds:
    """A bounded insertion-ordered set (oldest forgotten first)."""

    __slots__ = ("capacity", "_order", "_set")

    def __init__(self, capacity: int, initial: Iterable[str] = ()):
        self.capacity = capacity
        self._order: collections.deque[str] = collections.deque()
        self._set: set[str] = set()
        self.update(initial)

    def __contains__(self, item: str) -> bool:
        return item in self._set

    @property
    def members(self) -> frozenset[str] | set[str]:
        """The ids as a set, for hot loops (read only: change it through ``update``)."""
        return self._set

    def __len__(self) -> int:
        return len(self._set)

    def update(self, items: Iterable[str]) -> None:
        order, members = self._order, self._set
        for item in items:
            if item in members:
                continue
            members.add(item)
            order.append(item)
        while len(order) > self.capacity:
            members.discard(order.popleft())


class ClickHouseSink(BatchingSink):
    """Write PlaybackEvent / QualitySwitch records (decoded dicts) into the raw tables."""

    pipelined = True      # inserts run on the insert thread while the consumer fills the next batches

    def __init__(self, client: Client, analytics: AnalyticsConfig, levels: Iterable[QualityLevel],
                 on_committed: CommitCallback | None = None, *,
                 tables: Mapping[str, TableSpec] | None = None, dedup_window: int = DEFAULT_DEDUP_WINDOW,
                 max_rows: int | None = None, max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 decode: Callable[[Any], Any] | None = None, engine_decodes: bool = True,
                 insert_client: Callable[[], Client] | None = None):
        """``analytics``: ``config.analytics`` (batch size and age, insert threads); ``levels``: the HLS ladder
        (``config.hls.quality_levels``) that ranks a quality switch up or down.
        ``decode``: message -> DecodedRecord (with ``.value``) or None once dead-lettered
        (``EventConsumer.decode_message``); needed when ``add`` is given undecoded messages.
        ``engine_decodes=False`` sends everything through the Python path.
        ``insert_client``: opens one more session on the same database; given it, engine-path
        inserts of different partitions run side by side on ``analytics.sink_insert_threads``
        threads, each with its own session (one partition's inserts never overlap: a flush
        has one batch per partition, and the next flush starts after it finished)."""
        super().__init__(max_rows or analytics.sink_batch_max_rows,
                         max_age or analytics.sink_batch_max_age, on_committed, clock)
        self.client = client
        self.tables = dict(DEFAULT_TABLES if tables is None else tables)
        self.dedup_window = dedup_window
        self.decode = decode
        self._recent: dict[TopicPartition, RecentIds] = {}
        self._ranks = {q.name.lower(): q.bandwidth for q in levels}
        self._block_writers: dict[str, AvroBlockWriter] = {
            topic: AvroBlockWriter.for_record(spec.avro_record)
            for topic, spec in self.tables.items() if spec.avro_record and engine_decodes}
        self._inserter: ThreadPoolExecutor | None = None
        self._insert_threads = analytics.sink_insert_threads if insert_client is not None else 1
        self._insert_client = insert_client
        self._insert_sessions: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._opened_sessions: list[Client] = []
        self.stats = collections.Counter()

    # ------------------------------------------------------------ dedup window

    def on_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for key in partitions:
            self._recent.pop(tuple(key), None)  # type: ignore[arg-type]

    def _window(self, spec: TableSpec, topic: str, partition: int) -> RecentIds:
        key = (topic, partition)
        window = self._recent.get(key)
        if window is None:
            rows = self.client.query(
                f"SELECT toString(event_id) FROM {spec.table} "
                "WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32} "
                "ORDER BY kafka_offset DESC LIMIT {n:UInt64}",
                parameters={"topic": topic, "partition": partition, "n": self.dedup_window},
            ).result_rows
            window = self._recent[key] = RecentIds(self.dedup_window, (r[0] for r in reversed(rows)))
        return window

    # ------------------------------------------------------------ write

    def write(self, batch: Batch) -> None:
        self.start_write(batch)()

    def start_write(self, batch: Batch) -> Callable[[], None]:
        """Write one partition's batch. An engine-path insert runs on the insert thread, so the
        flush can build the next partition's block meanwhile; the returned callable waits for
        it (and falls back to the Python path if the engine refused the block)."""
        spec = self.tables.get(batch.topic)
        if spec is None:
            raise KeyError(f"no ClickHouse table for topic {batch.topic!r}")
        if (batch.topic, batch.partition) not in self._recent:
            self._recover_in_flight(spec, batch.topic, batch.partition, batch.first_offset)
        window = self._window(spec, batch.topic, batch.partition)
        if batch.records and isinstance(batch.records[0], Mapping):      # already decoded
            self._write_records(spec, window, batch.topic, batch.partition, batch.records, batch.offsets)
            return _nothing_to_wait_for
        writer = self._block_writers.get(batch.topic)
        block = None
        if writer is not None:
            block = writer.build(batch.topic, batch.partition, [m.value() for m in batch.records], batch.offsets,
                                 window.members)
            if block is None:
                self.stats["python_path_batches"] += 1
        if block is None or not block.rows:
            if block is None:
                self._write_decoded(spec, window, batch)
            else:
                self.stats["duplicates_dropped"] += block.duplicates
            return _nothing_to_wait_for
        token = dedup_token(batch.topic, batch.partition, block.offsets[0], block.offsets[-1], block.rows)
        inserting = self._insert_thread().submit(self._insert_block, spec, block, token)

        def finish() -> None:
            try:
                inserting.result()
            except Exception as exc:   # the data (or the engine): the Python path decides, record by record
                self.stats["engine_refused_batches"] += 1
                log.warning("%s[%d]@%d-%d: engine refused the Avro block (%s); decoding record by record",
                            batch.topic, batch.partition, batch.first_offset, batch.last_offset,
                            str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
                self._write_decoded(spec, window, batch)
            else:
                window.update(block.event_ids)
                self.stats["duplicates_dropped"] += block.duplicates
                self._written(spec, block.rows, block.type_counts)
        return finish

    def _insert_thread(self) -> ThreadPoolExecutor:
        if self._inserter is None:
            self._insert_sessions.put(self.client)
            for _ in range(self._insert_threads - 1):
                session = self._insert_client()        # type: ignore[misc]
                self._opened_sessions.append(session)
                self._insert_sessions.put(session)
            self._inserter = ThreadPoolExecutor(max_workers=self._insert_threads,
                                                thread_name_prefix="clickhouse-insert")
        return self._inserter

    def close(self) -> None:
        """Stop the insert threads and close the sessions this sink opened (not the one it was given)."""
        if self._inserter is not None:
            self._inserter.shutdown(wait=True)
            self._inserter = None
        for session in self._opened_sessions:
            session.close()
        self._opened_sessions.clear()
        self._insert_sessions = queue.SimpleQueue()

    def _write_decoded(self, spec: TableSpec, window: RecentIds, batch: Batch) -> None:
        """The Python path for undecoded messages: decode each (bad ones are dead-lettered)."""
        if self.decode is None:
            raise TypeError("ClickHouseSink got undecoded messages but no decode callback")
        records, offsets = [], []
        for msg, off in zip(batch.records, batch.offsets):
            decoded = self.decode(msg)
            if decoded is not None:
                records.append(decoded.value)
                offsets.append(off)
        self._write_records(spec, window, batch.topic, batch.partition, records, offsets)

    def _insert_block(self, spec: TableSpec, block: AvroBlock, token: str) -> None:
        session = self._insert_sessions.get()        # one per insert thread: never waits long
        try:
            started = time.perf_counter()
            session.raw_insert(spec.table, None, block.data, settings=self._insert_settings(token), fmt="Avro")
            metrics.observe_insert(spec.table, time.perf_counter() - started)
        finally:
            self._insert_sessions.put(session)

    def _written(self, spec: TableSpec, rows: int, type_counts: Mapping[str, int]) -> None:
        self.stats["rows_written"] += rows
        self.stats["inserts"] += 1
        metrics.count_written(type_counts)

    def _write_records(self, spec: TableSpec, window: RecentIds, topic: str, partition: int,
                       batch_records: Sequence[Mapping[str, Any]], batch_offsets: Sequence[int]) -> None:
        """The Python path: decoded records -> Arrow -> insert."""
        records: list[Mapping[str, Any]] = []
        offsets: list[int] = []
        fresh: set[str] = set()
        for rec, off in zip(batch_records, batch_offsets):
            raw_id = rec.get("event_id")
            eid = canonical_event_id(raw_id)
            if eid is None:   # would fail the whole insert (UUID column): drop it, never block the partition
                self.stats["invalid_dropped"] += 1
                log.warning("%s[%d]@%d: dropping record with invalid event_id %r", topic, partition, off, raw_id)
                continue
            if eid in window or eid in fresh:
                self.stats["duplicates_dropped"] += 1
                continue
            if eid != raw_id:
                rec = {**rec, "event_id": eid}
            fresh.add(eid)
            records.append(rec)
            offsets.append(off)
        if not records:
            return
        if spec.table == QUALITY_SWITCHES_TABLE.table:
            records = [r if r.get("direction") else {**r, "direction": quality_direction(
                r.get("from_quality"), r.get("to_quality"), self._ranks)} for r in records]
        table = self.to_arrow(spec, records, topic, partition, offsets)
        self._insert(spec, table, dedup_token(topic, partition, offsets[0], offsets[-1], len(records)))
        # Only after the insert returned: a failed insert is retried with the same rows and token.
        window.update(r["event_id"] for r in records)
        if spec.table == QUALITY_SWITCHES_TABLE.table:
            counts: Mapping[str, int] = {"quality_switch": len(records)}
        else:
            counts = collections.Counter(r.get("type") or "unknown" for r in records)
        self._written(spec, len(records), counts)

    @staticmethod
    def _insert_settings(token: str) -> dict[str, Any]:
        return {
            "insert_deduplicate": 1,
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "async_insert": 0,
        }

    def _insert(self, spec: TableSpec, table: pa.Table, token: str) -> None:
        """One block, one token. The token is derived from the rows inserted (first and last
        offset, count), so it can be recomputed from the raw table after a crash; dependent
        views deduplicate on it too, so a re-sent block reaches each rollup exactly once."""
        started = time.perf_counter()
        self.client.insert_arrow(spec.table, table, settings=self._insert_settings(token))
        metrics.observe_insert(spec.table, time.perf_counter() - started)

    def _recover_in_flight(self, spec: TableSpec, topic: str, partition: int, resume_offset: int) -> None:
        """Finish the batch a crash interrupted, before consuming the partition again.

        Rows of this partition at or past the resume offset reached the raw table but were
        never committed: the process died between the insert and the commit, possibly
        before every materialized view had its part. Re-sending exactly those rows with
        the token they were first sent with is a no-op for every table that has them and
        completes the ones that do not. The replayed Kafka records are then dropped as
        duplicates by the event-id window, which is built afterwards.
        """
        where = ("kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32} "
                 "AND kafka_offset >= {resume:UInt64}")
        params = {"topic": topic, "partition": partition, "resume": resume_offset}
        table = self.client.query_arrow(f"SELECT * FROM {spec.table} WHERE {where} ORDER BY kafka_offset",
                                        parameters=params)
        if table.num_rows == 0:
            return
        offsets = table.column("kafka_offset").to_pylist()
        token = dedup_token(topic, partition, offsets[0], offsets[-1], table.num_rows)
        log.warning("%s[%d]: re-sending %d uncommitted rows (offsets %d-%d) so every rollup has them once",
                    topic, partition, table.num_rows, offsets[0], offsets[-1])
        self._insert(spec, table, token)
        self.stats["recovered_rows"] += table.num_rows

    @staticmethod
    def to_arrow(spec: TableSpec, records: Sequence[Mapping[str, Any]], topic: str, partition: int,
                 offsets: Sequence[int]) -> pa.Table:
        """Records -> one Arrow table (one list comprehension per column; conversions only on the slow path)."""
        n = len(records)
        arrays, names = [], []
        for col in spec.columns:
            key = col.field
            values = [r.get(key) for r in records]
            arrays.append(_column_array(col, values, records))
            names.append(col.name)
        arrays += [pa.array([topic] * n, pa.string()), pa.array([partition] * n, pa.uint32()),
                   pa.array(offsets, pa.uint64())]
        names += ["kafka_topic", "kafka_partition", "kafka_offset"]
        return pa.Table.from_arrays(arrays, names=names)


def _column_array(col: Column, values: list[Any], records: Sequence[Mapping[str, Any]]) -> pa.Array:
    target = col.arrow_type
    try:   # Arrow takes epoch-ms ints and datetimes (naive = UTC) straight into timestamp[ms, UTC]
        arr = pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        if col.convert is None:
            raise
        arr = pa.array([col.convert(v) for v in values], type=target)
    if target == _TS:
        if arr.null_count:
            if col.name == "event_time":
                fallback = pa.array([r.get("client_time") for r in records], type=_TS)
            else:
                fallback = pa.array([int(time.time() * 1000)] * len(values), type=_TS)
            arr = pc.coalesce(arr, fallback)
            if arr.null_count:
                raise ValueError(f"{col.name}: records without event_time/client_time")
        return arr
    if col.default is not None and arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(col.default, target))
    return arr


def _nothing_to_wait_for() -> None:
    return None


def new_event_id() -> str:  # convenience for tests and producers of synthetic events
    return str(uuid.uuid4())
