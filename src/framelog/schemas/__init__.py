"""framelog's Avro schemas: one ``<RecordName>.avsc`` per event type, the single source of truth.

Every record lives in the ``framelog.events`` namespace and starts with
``event_id`` (UUID), ``schema_version`` (its default is the schema's current
version) and ``event_time`` (timestamp-millis). Schemas are read through
importlib.resources so they work from a wheel as well as from the source tree,
and parsed once per process (parsing is far too slow to do per record).
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastavro

NAMESPACE = "framelog.events"


@cache
def schema_names() -> tuple[str, ...]:
    """Short record names of every packaged schema, sorted."""
    files = resources.files(__name__)
    return tuple(sorted(p.name[: -len(".avsc")] for p in files.iterdir() if p.name.endswith(".avsc")))


@cache
def _raw_text(name: str) -> str:
    if name not in schema_names():
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(schema_names())}")
    return resources.files(__name__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")


def raw_schema(name: str) -> dict[str, Any]:
    """The schema as written in the .avsc file (a fresh copy: safe to modify)."""
    return json.loads(_raw_text(name))


def raw_schema_text(name: str) -> str:
    """The .avsc file's text, as registered with a schema registry."""
    return _raw_text(name)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed (fastavro) schema of record ``name``, e.g. ``"UploadCompleted"``.

    Cached and shared: treat the result as read-only.
    """
    return fastavro.parse_schema(raw_schema(name), named_schemas={})


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every packaged schema, parsed, by short record name."""
    return {name: load_schema(name) for name in schema_names()}


def full_name(name: str) -> str:
    """``UploadCompleted`` -> ``framelog.events.UploadCompleted``."""
    return name if "." in name else f"{NAMESPACE}.{name}"


def short_name(name: str) -> str:
    """``framelog.events.UploadCompleted`` -> ``UploadCompleted``."""
    return name.rsplit(".", 1)[-1]


@cache
def current_version(name: str) -> int:
    """The schema's current version: the default of its ``schema_version`` field."""
    for f in raw_schema(name)["fields"]:
        if f["name"] == "schema_version":
            return int(f["default"])
    raise KeyError(f"schema {name!r} has no schema_version field")


def historical_schemas() -> list[dict[str, Any]]:
    """Every superseded schema version kept in ``history/`` (``<Name>.v<N>.avsc``).

    Single-object encoding names the writer's schema by fingerprint, so data
    written before a schema change stays readable only while its schema is
    known: codecs register these as writer schemas and resolve them to the
    current reader schema.
    """
    folder = resources.files(__name__).joinpath("history")
    if not folder.is_dir():
        return []
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".avsc")]
