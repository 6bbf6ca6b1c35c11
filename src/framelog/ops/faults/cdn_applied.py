"""The fault suite's "every CDN command applied": judged from the log and the edges, not from the cdn agent.

Which commands: every record written to ``cdn.commands`` between the end of
the log when the load started (``command_offsets``) and its end when the check
runs, read back from the broker. What each one asks, as the cdn agent reads it
(pipeline/agents/cdn.py):

* ``CacheWarm``: each edge it names (none: every edge) fetches the video's
  master playlist and each served path the command lists; with the trigger
  ``video_upload_complete`` the video's default paths are purged from the
  origin shield and those edges first. A warm whose trigger is not in
  ``caching_strategy.cache_warming.triggers`` is not for the edges (the agent
  skips it by design): counted, not judged.
* ``CacheInvalidate``: the video's default paths plus the listed ones purged
  from the shield and from each edge it names (none: every edge).

The evidence is the edges' own:

* a warm was applied on an edge when that edge's access log (nginx writes one
  line per request it answered) shows a 200 for the master playlist and for
  each listed path at or after the second the command was written to the log;
* a purge was applied on an edge or the shield when its cache holds no entry
  matching the command's patterns that nginx stored (the ``date`` of the cache
  file's header) before that second: whatever was cached before it is gone, and
  what is there was fetched after it. The check is to the second, so an entry
  stored in the very second of the command, before it, would pass.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from framelog.core import object_keys
from framelog.core.config import Config
from framelog.ops.faults.checks import Verdict, _wait
from framelog.processors import cdn_routing
from framelog.schemas.codec import default_codec
from framelog.sinks.edges.cache_commands import cached_entries, is_served, matching_keys, stored_at
from framelog.sinks.edges.protocol import INTERNAL_PATH, SHIELD_NAME, access_log_path, cache_dir, shield_dir
from framelog.streams import topics
from framelog.streams.consumer import consumer_config

UPLOAD_COMPLETE = "video_upload_complete"      # the trigger whose warm purges first (pipeline/agents/cdn.py)
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class Command:
    """One cdn.commands record: what it asks, and the second it was written to the log."""

    partition: int
    offset: int
    name: str
    video_id: str
    paths: tuple[str, ...]
    providers: tuple[str, ...]
    trigger: str
    at: int                       # epoch seconds of the record's timestamp, rounded down


@dataclass(frozen=True)
class Expectation:
    """One thing a command asks of one cache: a ``warm`` of ``paths`` or a ``purge`` of ``patterns``."""

    command: Command
    kind: str                      # "warm" | "purge"
    cache: str                     # a provider key, or SHIELD_NAME
    items: tuple[str, ...]         # warm: object paths (/hls/...); purge: patterns

    def describe(self) -> str:
        c = self.command
        return f"{c.name}[{c.partition}]@{c.offset} {self.kind} of {c.video_id} on {self.cache}"


@dataclass
class EdgeEvidence:
    """What the edges show: per cache, (object path -> seconds of the 200s it served) and its cache entries."""

    served: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    stored: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


# ------------------------------------------------------------------ the commands, from the log

def _consumer(config: Config) -> Consumer:
    return Consumer(consumer_config(config.kafka, config.stack, f"framelog-faults-cdn-{uuid.uuid4().hex[:8]}"))


def command_offsets(config: Config) -> dict[int, int]:
    """The end of every cdn.commands partition now (what is written after it is the run's)."""
    consumer = _consumer(config)
    try:
        meta = consumer.list_topics(topics.CDN_COMMANDS, timeout=READ_TIMEOUT).topics[topics.CDN_COMMANDS]
        return {p: consumer.get_watermark_offsets(TopicPartition(topics.CDN_COMMANDS, p), timeout=READ_TIMEOUT,
                                                  cached=False)[1] for p in meta.partitions}
    finally:
        consumer.close()


def read_commands(config: Config, since: Mapping[int, int]) -> list[Command]:
    """Every command written to cdn.commands after ``since``, up to the end of each partition now."""
    codec = default_codec(config.streams)
    ends = command_offsets(config)
    wanted = {p: (since.get(p, 0), end) for p, end in ends.items() if end > since.get(p, 0)}
    if not wanted:
        return []
    consumer = _consumer(config)
    out: list[Command] = []
    try:
        assignment = [TopicPartition(topics.CDN_COMMANDS, p, start) for p, (start, _) in wanted.items()]
        consumer.assign(assignment)
        left = set(wanted)
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                p, offset, body = msg.partition(), msg.offset(), msg.value()
                if msg.error() is not None or body is None or p is None or offset is None or offset >= wanted[p][1]:
                    continue
                name, value = codec.decode_for_topic(topics.CDN_COMMANDS, body)
                out.append(Command(p, offset, name, value["video_id"], tuple(value.get("paths") or ()),
                                   tuple(value.get("providers") or ()), value.get("trigger") or "",
                                   msg.timestamp()[1] // 1000))
            left = {tp.partition for tp in consumer.position(assignment) if tp.offset < wanted[tp.partition][1]}
        if left:
            raise RuntimeError(f"cdn.commands partitions {sorted(left)} not read to their end in 60s")
    finally:
        consumer.close()
    return sorted(out, key=lambda c: (c.at, c.partition, c.offset))


# ------------------------------------------------------------------ what each command asks (pure)

def expectations(commands: Iterable[Command], providers: Iterable[str],
                 triggers: Iterable[str]) -> tuple[list[Expectation], list[Command]]:
    """(what each command asks of each cache, the commands not for the edges: warms of an unconfigured trigger)."""
    known, configured = list(providers), set(triggers)
    out: list[Expectation] = []
    skipped: list[Command] = []
    for c in commands:
        edges = [p for p in c.providers if p in known] if c.providers else known
        if c.name == "CacheInvalidate":
            try:
                patterns = cdn_routing.invalidation_paths(c.video_id, c.paths)
            except ValueError:       # the agent falls back to the defaults, as here
                patterns = cdn_routing.default_invalidation_paths(c.video_id)
            out += [Expectation(c, "purge", cache, patterns) for cache in (SHIELD_NAME, *edges)]
        elif c.name == "CacheWarm":
            if c.trigger and c.trigger not in configured:
                skipped.append(c)
                continue
            if c.trigger == UPLOAD_COMPLETE:
                patterns = cdn_routing.default_invalidation_paths(c.video_id)
                out += [Expectation(c, "purge", cache, patterns) for cache in (SHIELD_NAME, *edges)]
            paths = ("/" + object_keys.master_playlist(c.video_id),
                     *("/" + p.lstrip("/") for p in c.paths if is_served(p)))
            out += [Expectation(c, "warm", edge, tuple(dict.fromkeys(paths))) for edge in edges]
    return out, skipped


def applied(expectation: Expectation, evidence: EdgeEvidence) -> bool:
    """Whether the cache shows the command done (see the module's docstring)."""
    since = expectation.command.at
    if expectation.kind == "warm":
        served = evidence.served.get(expectation.cache, {})
        return all(any(t >= since for t in served.get(path, ())) for path in expectation.items)
    entries = evidence.stored.get(expectation.cache, [])
    keys = [key for key, _ in entries]
    covered = {k for pattern in expectation.items for k in matching_keys(pattern, keys)}
    return all(at >= since for key, at in entries if key in covered)


# ------------------------------------------------------------------ the edges' evidence

def _log_time(text: str) -> int | None:
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except (TypeError, ValueError):
        return None


def served_paths(log_files: Iterable[Path]) -> dict[str, list[int]]:
    """Object path (``/hls/...``) -> the seconds an edge answered 200 for it, from its access logs."""
    out: dict[str, list[int]] = {}
    for path in log_files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if INTERNAL_PATH not in line:
                continue
            try:
                entry: dict[str, Any] = json.loads(line)
            except ValueError:          # a line cut by kill -9
                continue
            uri, at = str(entry.get("path", "")), _log_time(str(entry.get("time", "")))
            if entry.get("status") == 200 and at is not None and uri.startswith(INTERNAL_PATH + "/"):
                out.setdefault(uri[len(INTERNAL_PATH):], []).append(at)
    return out


def stored_entries(directory: Path) -> list[tuple[str, int]]:
    """(cache key, second nginx stored it) of every entry in a cache directory."""
    out = []
    for key, path in cached_entries(directory):
        at = stored_at(path)
        if at is not None:
            out.append((key, at))
    return out


def gather(config: Config) -> EdgeEvidence:
    state = config.stack.state_dir
    evidence = EdgeEvidence()
    for provider in config.cdn.providers:
        log = access_log_path(state, provider)
        evidence.served[provider] = served_paths([log.with_name(log.name + ".1"), log])
        evidence.stored[provider] = stored_entries(cache_dir(state, provider))
    evidence.stored[SHIELD_NAME] = stored_entries(shield_dir(state) / "cache")
    return evidence


def cdn_commands_applied(config: Config, since: Mapping[int, int], timeout: float) -> Verdict:
    """Every command written to cdn.commands during the run applied to every cache it names, within ``timeout``
    (the cdn worker may still be waiting for an edge it could not reach)."""
    commands = read_commands(config, since)
    asked, skipped = expectations(commands, config.cdn.providers, config.caching.warming_triggers)
    missing: list[Expectation] = list(asked)

    def all_applied() -> bool:
        nonlocal missing
        evidence = gather(config)
        missing = [e for e in missing if not applied(e, evidence)]
        return not missing

    done = _wait(all_applied, timeout)
    kinds = {name: sum(c.name == name for c in commands) for name in ("CacheWarm", "CacheInvalidate")}
    purges = sum(e.kind == "purge" for e in asked)
    detail = (f"{kinds['CacheWarm']} warms and {kinds['CacheInvalidate']} purges on the log; "
              f"{len(asked) - len(missing)} of {len(asked)} applications shown by the edges "
              f"({len(asked) - purges} warms in their access logs, {purges} purges in their caches)"
              + (f", {len(skipped)} warms of an unconfigured trigger not for the edges" if skipped else "")
              + (f"; not applied: {[e.describe() for e in missing[:5]]}" if missing else ""))
    return Verdict("every CDN command applied", done and bool(commands), detail if commands else
                   "no command on cdn.commands during the run: nothing was tested",
                   {"commands": len(commands), "applications": len(asked),
                    "missing": [e.describe() for e in missing]})
