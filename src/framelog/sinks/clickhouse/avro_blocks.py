"""Kafka records -> one Avro Object Container block, so that ClickHouse decodes them, not Python.

A record written by framelog's codec is ``C3 01 | fingerprint | body`` (Avro
single-object encoding). When the fingerprint is the writer schema this module
was built for, every body is a valid Avro datum of that schema as it stands.
Appending the Kafka coordinates (topic: string, partition: int, offset: long)
makes it a datum of the same schema extended by three trailing fields, because
an Avro record is the plain concatenation of its fields. One Object Container
File with that extended schema in its header and all bodies in one block is an
``INSERT ... FORMAT Avro`` that ClickHouse parses in C++ and maps by field name
onto the raw table (fields without a column, such as ``client_time``, are skipped).

Python still touches each record, but only with byte slicing: check the header,
read the event_id (the first field, a 36-character string) for the sink's
duplicate filter, and read the counted enum (``type``) for the Prometheus
counters by skipping the simple fields before it. A record this cannot handle
(other writer schema, Confluent wire format, an event_id that is not 36
characters without upper case) makes ``build`` return None: the caller then
takes the per-record Python path, which decodes, validates and dead-letters.

What the engine checks instead of fastavro: a body that is cut short or malformed
breaks the parse of the whole block (the insert fails and nothing is written;
the caller falls back); the UUID column refuses a malformed event_id; the semantic rules of
:mod:`framelog.schemas.events` are table constraints (migration 0003). Limit: a
body with trailing bytes is caught only if it desynchronises the block, which
it does unless the extra bytes happen to form a complete valid datum.
"""
from __future__ import annotations

import copy
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from framelog.schemas import raw_schema
from framelog.schemas.codec import HEADER_LEN, MARKER, schema_fingerprint

__all__ = ["AvroBlock", "AvroBlockWriter", "zigzag_varint", "avro_string"]

_UUID_LEN = 36
_UUID_PREFIX = 2 * _UUID_LEN          # Avro string length 36 as a zigzag varint: one byte, 0x48
_VARINT, _BYTES = "varint", "bytes"
_SKIP_KIND: dict[str, str | int] = {"int": _VARINT, "long": _VARINT, "enum": _VARINT, "string": _BYTES,
                                    "bytes": _BYTES, "boolean": 1, "float": 4, "double": 8}   # ints: fixed sizes
COORDINATE_FIELDS = ({"name": "kafka_topic", "type": "string"},
                     {"name": "kafka_partition", "type": "int"},
                     {"name": "kafka_offset", "type": "long"})


def zigzag_varint(n: int) -> bytes:
    """An Avro int/long: zigzag, then little-endian base-128."""
    return _varint((n << 1) ^ (n >> 63))


def _varint(n: int) -> bytes:
    """Little-endian base-128 of a non-negative int."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return zigzag_varint(len(data)) + data


def _skip_plan(schema: Mapping[str, Any], count_field: str) -> tuple[tuple[str | int, ...], list[str]]:
    """How to skip the fields between event_id and ``count_field`` (an enum), and that enum's symbols."""
    plan = []
    for f in schema["fields"][1:]:
        t = f["type"]
        kind_name = t.get("type") if isinstance(t, dict) else t
        if f["name"] == count_field:
            if kind_name != "enum":
                raise ValueError(f"{schema['name']}.{count_field} is not an enum")
            return tuple(plan), list(t["symbols"])
        kind = _SKIP_KIND.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise ValueError(f"{schema['name']}.{f['name']}: type {t!r} precedes {count_field}; cannot skip it")
        plan.append(kind)
    raise ValueError(f"{schema['name']} has no field {count_field!r}")


def _without_docs(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_docs(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _without_docs(v) for k, v in schema.items() if k != "doc"}
    return schema


def _long_length(v: bytes, p: int, b: int) -> int:
    """Position after a string whose length varint starts with byte ``b`` (>= 0x80) at ``p - 1``."""
    n, shift = b & 0x7F, 7
    while b & 0x80:
        b = v[p]
        p += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return p + (n >> 1)


def _compile_enum_reader(plan: Sequence[str | int], start: int) -> Callable[[bytes], int]:
    """A function returning the byte at the counted enum (its zigzag index, when below 64):
    the skip plan unrolled into straight-line code, since it runs once per record."""
    lines = ["def read(v):", f"    p = {start}"]
    for kind in plan:
        if kind is _VARINT:
            lines += ["    b = v[p]", "    p += 1", "    while b & 0x80:", "        b = v[p]", "        p += 1"]
        elif kind is _BYTES:
            lines += ["    b = v[p]", "    p += 1", "    p = p + (b >> 1) if b < 0x80 else _long_length(v, p, b)"]
        else:
            lines += [f"    p += {int(kind)}"]
    lines.append("    return v[p]")
    namespace: dict[str, Any] = {"_long_length": _long_length}
    exec("\n".join(lines), namespace)      # generated from the schema only, never from data
    return namespace["read"]


@dataclass
class AvroBlock:
    """One insert's worth: the container bytes and what Python learned on the way."""
    data: bytes
    offsets: list[int]                   # Kafka offsets of the rows in the block, ascending
    event_ids: list[str]                 # in the same order
    type_counts: Counter = field(default_factory=Counter)
    duplicates: int = 0

    @property
    def rows(self) -> int:
        return len(self.offsets)


class AvroBlockWriter:
    """Builds container blocks for the single-object records of one writer schema."""

    def __init__(self, schema: Mapping[str, Any], count_field: str = "type"):
        schema = dict(schema)
        if schema["fields"][0]["name"] != "event_id" or schema["fields"][0]["type"] != "string":
            raise ValueError(f"{schema['name']}: event_id must be the first field, a string")
        self.record = schema["name"].rsplit(".", 1)[-1]
        self.header = MARKER + schema_fingerprint(schema)
        plan, self.symbols = _skip_plan(schema, count_field)
        self._enum_byte = _compile_enum_reader(plan, HEADER_LEN + 1 + _UUID_LEN)
        extended = _without_docs(copy.deepcopy(schema))        # the engine parses this header on every insert
        extended["fields"][0]["type"] = {"type": "string", "logicalType": "uuid"}   # same bytes; read as UUID
        extended["fields"] += [dict(f) for f in COORDINATE_FIELDS]
        self.container_schema = extended
        self._sync = os.urandom(16)
        meta = {"avro.schema": json.dumps(extended).encode(), "avro.codec": b"null"}
        self._file_header = (b"Obj\x01" + zigzag_varint(len(meta))
                             + b"".join(avro_string(k) + zigzag_varint(len(v)) + v for k, v in meta.items())
                             + b"\x00" + self._sync)

    @classmethod
    def for_record(cls, name: str, count_field: str = "type") -> AvroBlockWriter:
        """For the current (packaged) schema of record ``name``: what framelog's producers write."""
        return cls(raw_schema(name), count_field)

    def build(self, topic: str, partition: int, values: Sequence[bytes], offsets: Sequence[int],
              seen: Any) -> AvroBlock | None:
        """The block of ``values`` (single-object encoded), minus event_ids already in ``seen``
        or earlier in the batch; None if any record needs the per-record path."""
        header, hlen, enum_byte = self.header, HEADER_LEN, self._enum_byte
        first_body = hlen + 1 + _UUID_LEN
        suffix = avro_string(topic) + zigzag_varint(partition)
        # The offset as an Avro long is varint(2 * offset): below 64 one byte; else a first byte
        # (offset & 63, continuation bit set) and varint(offset >> 6), shared by runs of 64 offsets.
        small = [suffix + bytes((o << 1,)) for o in range(64)]
        first = [suffix + bytes((((o << 1) | 0x80),)) for o in range(64)]
        high, high_bytes = -1, b""
        fresh: dict[str, None] = {}          # event_ids kept, in order
        parts: list[bytes] = []
        kept_offsets: list[int] = []
        type_index: list[int] = []
        duplicates = 0
        for v, off in zip(values, offsets):
            if not v.startswith(header) or v[hlen] != _UUID_PREFIX:
                return None
            raw_id = v[hlen + 1:first_body]
            if raw_id.lower() != raw_id:      # the engine checks the UUID format; the window needs one spelling
                return None
            eid = raw_id.decode("ascii", "replace")
            if eid in seen or eid in fresh:
                duplicates += 1
                continue
            try:
                type_index.append(enum_byte(v))
            except IndexError:            # cut short: the per-record path dead-letters it
                return None
            fresh[eid] = None
            parts.append(v[hlen:])
            if off < 64:
                parts.append(small[off])
            else:
                parts.append(first[off & 63])
                if off >> 6 != high:
                    high = off >> 6
                    high_bytes = _varint(high)
                parts.append(high_bytes)
            kept_offsets.append(off)
        kept_ids = list(fresh)
        body = b"".join(parts)
        data = self._file_header + zigzag_varint(len(kept_offsets)) + zigzag_varint(len(body)) + body + self._sync
        symbols = self.symbols
        counts: Counter = Counter()
        for index, n in Counter(type_index).items():
            i = index >> 1                              # zigzag of a small non-negative int
            counts[symbols[i] if index < 0x80 and i < len(symbols) else "unknown"] += n
        return AvroBlock(data, kept_offsets, kept_ids, counts, duplicates)
