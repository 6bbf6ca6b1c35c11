"""Avro encoding of framelog events, with schema evolution.

Default wire format: Avro single-object encoding, so no registry server is
needed::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's parsing canonical form (8 bytes, LE) | body

The fingerprint names the writer schema; the body is read with it and resolved
to this process's current schema of the same record (old readers read new
writers' data and the reverse). A reader can only read writer schemas it knows:
the packaged ones plus any given to ``register_writer_schema``.

When ``kafka.schema_registry_url`` is set, records are written in the
Confluent wire format (``00`` | 4-byte schema id | body) through
confluent-kafka's AvroSerializer, subjects named after the record
(``framelog.events.UploadCompleted``) because a topic can carry several record
types. Decoding dispatches on the first byte, so both formats stay readable
during a migration.

Schemas are parsed once; each call is one fastavro schemaless read or write.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import fastavro
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint_hex
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _fastavro_validate

from framelog.core.config import StreamsConfig, TopicsConfig
from framelog.schemas import historical_schemas, raw_schema, schema_names, short_name
from framelog.schemas.events import RecordRules, check_record, rules_for_schema
from framelog.streams import topics as topic_registry
from framelog.streams.exceptions import DecodeError, EncodeError, TopicSchemaError, ValidationError
from framelog.streams.topics import TopicSpec

MARKER = b"\xc3\x01"
HEADER_LEN = 10                   # marker + 8-byte fingerprint
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_LEN = 5          # magic + 4-byte big-endian schema id

SINGLE_OBJECT = "single-object"
CONFLUENT = "confluent"

DATETIME = "datetime"   # timestamp-millis fields decode to aware UTC datetimes (Avro's logical type)
MILLIS = "millis"       # ... or stay epoch-millisecond ints: about a third faster, for bulk sinks


class Decoded(NamedTuple):
    """A decoded record: its short record name and its fields."""
    name: str
    value: dict[str, Any]


def _without_timestamps(schema: Any) -> Any:
    """A copy of a raw schema whose timestamp logical types read as plain longs.

    The parsing canonical form ignores logical types, so the fingerprint is unchanged.
    """
    if isinstance(schema, list):
        return [_without_timestamps(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: _without_timestamps(v) for k, v in schema.items()}
        if out.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            del out["logicalType"]
        return out
    return schema


def schema_fingerprint(schema: Mapping[str, Any] | str) -> bytes:
    """The 8-byte CRC-64-AVRO (Rabin) fingerprint of a schema, little-endian as on the wire."""
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else dict(schema),
                                   named_schemas={})
    return bytes.fromhex(_fingerprint_hex(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@dataclass(frozen=True)
class _Writer:
    name: str
    schema: dict[str, Any]        # parsed
    header: bytes                 # marker + fingerprint
    rules: RecordRules


@dataclass(frozen=True)
class _Reader:
    name: str
    writer: dict[str, Any]        # parsed writer schema
    reader: dict[str, Any] | None  # parsed current schema, None when identical to the writer's


class AvroCodec:
    """Encode and decode framelog events; knows which records each topic allows."""

    def __init__(self, topics: TopicsConfig | None = None, *, schema_registry_url: str = "",
                 schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 topic_specs: Iterable[TopicSpec] | None = None, registry_client: Any = None,
                 validate_on_encode: bool = True, timestamps: str = DATETIME):
        """``topics``: the registry's part of the configuration (``config.topics``), whose topics the
        codec allows unless ``topic_specs`` names them (neither: no topic);
        ``schema_registry_url``: ``config.kafka.schema_registry_url`` ("": the single-object format);
        ``schemas``: raw schemas by short name (default: the packaged ones, i.e. the current
        versions); ``registry_client``: a confluent SchemaRegistryClient to use instead of one built
        from ``schema_registry_url``; ``timestamps``: DATETIME or MILLIS, what timestamp fields
        decode to."""
        if timestamps not in (DATETIME, MILLIS):
            raise ValueError(f"timestamps must be {DATETIME!r} or {MILLIS!r}, got {timestamps!r}")
        self.timestamps = timestamps
        raw = ({n: dict(s) for n, s in schemas.items()} if schemas is not None
               else {n: raw_schema(n) for n in schema_names()})
        self._writers: dict[str, _Writer] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._readers: dict[bytes, _Reader] = {}
        self._current_read: dict[str, dict[str, Any]] = {}
        for name, schema in raw.items():
            self._add_current(name, schema)
        if schemas is None:                   # the packaged schemas: old versions stay readable
            for old in historical_schemas():
                self.register_writer_schema(old)
        self._raw = raw
        self.validate_on_encode = validate_on_encode
        specs = list(topic_specs) if topic_specs is not None else (
            topic_registry.all_topics(topics) if topics is not None else [])
        self._topics: dict[str, frozenset[str]] = {s.name: frozenset(s.schemas) for s in specs}
        self._registry: _RegistryWire | None = None
        if schema_registry_url or registry_client is not None:
            self._registry = _RegistryWire(schema_registry_url, raw, self._writers, registry_client)

    # ------------------------------------------------------------ schemas and topics

    def _add_current(self, name: str, schema: Mapping[str, Any]) -> None:
        if short_name(schema["name"]) != name:
            raise ValueError(f"schema for {name!r} is named {schema['name']!r}")
        parsed = fastavro.parse_schema(dict(schema), named_schemas={})
        fp = schema_fingerprint(schema)
        self._writers[name] = _Writer(name, parsed, MARKER + fp, rules_for_schema(schema))
        self._defaults[name] = {f["name"]: f["default"] for f in schema["fields"]
                                if "default" in f and f["name"] not in ("event_id", "schema_version")}
        self._current_read[name] = self._read_schema(schema)
        self._readers[fp] = _Reader(name, self._current_read[name], None)

    def _read_schema(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """The parsed schema to read with: logical timestamps kept, or stripped (MILLIS)."""
        raw = _without_timestamps(dict(schema)) if self.timestamps == MILLIS else dict(schema)
        return fastavro.parse_schema(raw, named_schemas={})

    def register_writer_schema(self, schema: Mapping[str, Any] | str) -> bytes:
        """Make data written with another version of a known record readable; returns its fingerprint."""
        raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
        name = short_name(raw["name"])
        current = self._current_read.get(name)
        if current is None:
            raise ValueError(f"no current schema for record {name!r}: nothing to resolve it to")
        fp = schema_fingerprint(raw)
        if fp not in self._readers:
            self._readers[fp] = _Reader(name, self._read_schema(raw), current)
        return fp

    def register_topic(self, spec: TopicSpec) -> None:
        """Allow a topic that is not in the registry (tests, tools)."""
        self._topics[spec.name] = frozenset(spec.schemas)

    def allowed(self, topic: str) -> frozenset[str]:
        """Record names allowed on ``topic``; unknown topics allow nothing."""
        return self._topics.get(topic, frozenset())

    def check_topic(self, topic: str, name: str) -> None:
        allowed = self._topics.get(topic)
        if allowed is None:
            raise TopicSchemaError("unknown_topic", f"topic {topic!r} is not in the topic registry")
        if name not in allowed:
            raise TopicSchemaError("record_not_allowed",
                                   f"{name} is not allowed on {topic!r} (allowed: {', '.join(sorted(allowed))})")

    @property
    def record_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._writers))

    @property
    def wire_format(self) -> str:
        return CONFLUENT if self._registry is not None else SINGLE_OBJECT

    def fingerprint(self, name: str) -> bytes:
        return self._writer(name).header[2:]

    def parsed_schema(self, name: str) -> dict[str, Any]:
        return self._writer(name).schema

    def _writer(self, name: str) -> _Writer:
        try:
            return self._writers[name]
        except KeyError:
            raise EncodeError("unknown_record", f"no schema for record {name!r}") from None

    # ------------------------------------------------------------ validation

    def validate(self, name: str, record: Mapping[str, Any], *, for_write: bool = False) -> None:
        """Semantic rules (framelog.schemas.events); raises ValidationError."""
        w = self._writers.get(name)
        if w is None:
            raise ValidationError("unknown_record", f"no schema for record {name!r}")
        check_record(w.rules, record, for_write=for_write)

    # ------------------------------------------------------------ encoding

    def encode(self, name: str, record: Mapping[str, Any], *, topic: str | None = None) -> bytes:
        """Bytes of ``record`` as record type ``name`` in the configured wire format."""
        w = self._writer(name)
        defaults = self._defaults[name]
        if len(record) < len(w.schema["fields"]) and defaults:
            record = {**defaults, **record}      # optional fields a producer left out (e.g. one written before v2)
        if self.validate_on_encode:
            check_record(w.rules, record, for_write=True)
        if self._registry is not None:
            return self._registry.encode(w, record, topic)
        buf = io.BytesIO()
        buf.write(w.header)
        try:
            schemaless_writer(buf, w.schema, record, strict=True, strict_allow_default=True)
        except Exception as exc:  # fastavro raises ValueError/TypeError/KeyError/...: say which field
            raise EncodeError("invalid_record", f"{name}: {_explain(w.schema, record, exc)}") from exc
        return buf.getvalue()

    def encode_for_topic(self, topic: str, name: str, record: Mapping[str, Any]) -> bytes:
        """Like encode, after checking that the topic allows record type ``name``."""
        self.check_topic(topic, name)
        return self.encode(name, record, topic=topic)

    # ------------------------------------------------------------ decoding

    def decode(self, data: bytes, *, topic: str | None = None) -> Decoded:
        """(name, record) of encoded bytes, resolved to the current schema; raises DecodeError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError("not_bytes", f"expected bytes, got {type(data).__name__}")
        n = len(data)
        if n >= 2 and data[0] == 0xC3 and data[1] == 0x01:
            if n < HEADER_LEN:
                raise DecodeError("truncated", f"{n} bytes: shorter than the 10-byte single-object header")
            fp = bytes(data[2:HEADER_LEN])
            r = self._readers.get(fp)
            if r is None:
                raise DecodeError("unknown_fingerprint", f"no known writer schema has fingerprint {fp.hex()}")
            buf = io.BytesIO(data)
            buf.seek(HEADER_LEN)
            try:
                value = schemaless_reader(buf, r.writer, r.reader)
            except Exception as exc:
                raise _body_error(r, data, exc) from exc
            if buf.tell() != n:
                raise DecodeError("trailing_bytes", f"{r.name} body ends at byte {buf.tell()} of {n}")
            return Decoded(r.name, value)
        if n >= 1 and data[0] == CONFLUENT_MAGIC:
            if self._registry is None:
                raise DecodeError("registry_not_configured",
                                  "Confluent wire format (magic 0) but kafka.schema_registry_url is not set")
            return self._registry.decode(bytes(data), topic)
        if n == 0:
            raise DecodeError("empty", "no bytes")
        raise DecodeError("bad_marker", f"first bytes {bytes(data[:2]).hex()} are neither C3 01 nor a Confluent 00")

    def decode_for_topic(self, topic: str, data: bytes, *, validate: bool = True) -> Decoded:
        """Decode, check the record type is allowed on ``topic`` and (by default) its semantic rules."""
        decoded = self.decode(data, topic=topic)
        allowed = self._topics.get(topic)
        if allowed is not None and decoded.name not in allowed:
            raise TopicSchemaError("record_not_allowed",
                                   f"{decoded.name} is not allowed on {topic!r} "
                                   f"(allowed: {', '.join(sorted(allowed))})")
        if validate:
            check_record(self._writers[decoded.name].rules, decoded.value)
        return decoded


def _body_error(r: _Reader, data: bytes, exc: Exception) -> DecodeError:
    """Tell a truncated body from a malformed one (error path only).

    fastavro's compiled reader does not always raise EOFError at the end of the
    buffer (a cut float gives IndexError), so: if the body reads once padded,
    it was cut short.
    """
    truncated = isinstance(exc, EOFError)
    if not truncated:
        try:
            padded = io.BytesIO(bytes(data) + b"\x00" * 64)
            padded.seek(HEADER_LEN)
            schemaless_reader(padded, r.writer, r.reader)
            truncated = True
        except Exception:
            pass
    if truncated:
        return DecodeError("truncated", f"{r.name} body ends early at byte {len(data)}: {type(exc).__name__}: {exc}")
    return DecodeError("malformed_body", f"{r.name} body unreadable: {type(exc).__name__}: {exc}")


def _explain(schema: dict[str, Any], record: Any, exc: Exception) -> str:
    """A precise message for a record fastavro refused (only on the error path: validation is slow)."""
    try:
        _fastavro_validate(record, schema, raise_errors=True, strict=True)
    except Exception as detail:   # fastavro.validation.ValidationError lists field paths
        return str(detail)
    return f"{type(exc).__name__}: {exc}"


class _RegistryWire:
    """The Confluent wire format through confluent-kafka's schema-registry serdes."""

    def __init__(self, url: str, raw: Mapping[str, Mapping[str, Any]], writers: Mapping[str, _Writer],
                 client: Any = None):
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.client = client if client is not None else SchemaRegistryClient.new_client({"url": url})
        self._texts = {name: json.dumps(schema) for name, schema in raw.items()}
        self._writers = writers
        self._serializers: dict[str, Any] = {}
        self._deserializers: dict[str, Any] = {}
        self._names_by_id: dict[int, str] = {}

    def _ctx(self, topic: str | None, name: str) -> Any:
        from confluent_kafka.serialization import MessageField, SerializationContext
        return SerializationContext(topic or name, MessageField.VALUE)

    def encode(self, w: _Writer, record: Mapping[str, Any], topic: str | None) -> bytes:
        ser = self._serializers.get(w.name)
        if ser is None:
            from confluent_kafka.schema_registry import record_subject_name_strategy
            from confluent_kafka.schema_registry.avro import AvroSerializer
            ser = AvroSerializer(self.client, self._texts[w.name],
                                 conf={"auto.register.schemas": True,
                                       "subject.name.strategy": record_subject_name_strategy})
            self._serializers[w.name] = ser
        try:
            return ser(dict(record), self._ctx(topic, w.name))
        except Exception as exc:
            raise EncodeError("invalid_record", f"{w.name}: {_explain(w.schema, record, exc)}") from exc

    def _name_of(self, schema_id: int) -> str:
        name = self._names_by_id.get(schema_id)
        if name is None:
            try:
                schema = self.client.get_schema(schema_id)
            except Exception as exc:
                raise DecodeError("unknown_schema_id", f"schema id {schema_id}: {exc}") from exc
            name = short_name(json.loads(schema.schema_str)["name"])
            if name not in self._writers:
                raise DecodeError("unknown_record", f"schema id {schema_id} is record {name!r}, unknown here")
            self._names_by_id[schema_id] = name
        return name

    def decode(self, data: bytes, topic: str | None) -> Decoded:
        if len(data) < CONFLUENT_HEADER_LEN:
            raise DecodeError("truncated", f"{len(data)} bytes: shorter than the 5-byte Confluent header")
        name = self._name_of(int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big"))
        de = self._deserializers.get(name)
        if de is None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            de = self._deserializers[name] = AvroDeserializer(self.client, self._texts[name])
        try:
            value = de(data, self._ctx(topic, name))
        except EOFError as exc:
            raise DecodeError("truncated", f"{name} body ends early: {exc}") from exc
        except Exception as exc:
            cause = exc.__cause__ or exc
            reason = "truncated" if isinstance(cause, EOFError) else "malformed_body"
            raise DecodeError(reason, f"{name} body unreadable: {type(exc).__name__}: {exc}") from exc
        return Decoded(name, value)


def default_codec(streams: StreamsConfig) -> AvroCodec:
    """A codec over the packaged schemas and every registry topic (``config.streams``: the topics and
    the kafka section's schema registry)."""
    return AvroCodec(streams.topics, schema_registry_url=streams.kafka.schema_registry_url)


__all__ = ["AvroCodec", "Decoded", "schema_fingerprint", "default_codec", "MARKER", "SINGLE_OBJECT",
           "CONFLUENT", "DATETIME", "MILLIS"]
