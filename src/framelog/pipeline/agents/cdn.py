"""Two consumer groups for the edges: ``cdn`` (purges, warms, metrics) and ``popularity``.

* ``cdn.commands``: ``CacheInvalidate`` purges the seed's default paths of the
  video plus the given ones from the origin shield, then from every wanted
  edge (``providers`` empty: all);
  ``CacheWarm`` fetches the video's master, rendition playlists, first
  segments and the given paths through every wanted edge. A warm after
  publishing (trigger ``video_upload_complete``) purges the video first: a
  reprocessed video must not be served from its old cached playlists.
* ``playback.events``: views (``view_start``/``video_view``) are counted per
  video in a Faust table; when a video's count crosses
  ``caching_strategy.cache_warming.popular_view_count`` (seed: ``view_count >
  1000``) one ``CacheWarm`` (trigger ``high_view_count``) is emitted. The
  count stops there: past the threshold it decides nothing more.
* the same views, per video and viewer country, over a hopping window
  (``cache_warming.trending``, processors/trending.py): a video trending in a
  country is warmed (trigger ``trending_content``) on the edge that serves that
  country, the seed's "Geographic preloading" (``preload_to_region``).
* a timer reads the edges' access logs into the Prometheus CDN metrics
  (pipeline/agents/cdn_metrics.py), served by the worker's metrics port.

Edge calls block (HTTP to nginx), so they run in a thread. Unlike the seed's
``Promise.allSettled``, an edge that is down is not skipped: the command waits
for it (``CdnCommands``, ``EDGE_RETRY_FOR``) and is dead-lettered if it never
comes back, so every command is applied to every edge it names or is on
``cdn.commands.dlq`` to replay (the fault suite checks it, ops/faults/cdn_applied.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import faust

from framelog.core.backoff import OUTAGE_BACKOFF, Backoff
from framelog.core.config import CachingStrategy, CdnConfig
from framelog.core.ids import validate_video_id
from framelog.pipeline.agents.cdn_metrics import EdgeLogExporter
from framelog.pipeline.agents.pipeline import _decode_or_dead_letter, until_handled
from framelog.pipeline.worker import POPULARITY
from framelog.processors import cache_control, cdn_routing
from framelog.processors.trending import observe, trending_key
from framelog.schemas.codec import AvroCodec
from framelog.schemas.records import CacheWarm
from framelog.sinks.edges.cache_commands import EdgeCache
from framelog.streams import topics
from framelog.streams.app import raw_topic
from framelog.streams.emitter import AsyncEmitter
from framelog.streams.exceptions import DecodeError, ValidationError
from framelog.streams.topics import TopicSpec

log = logging.getLogger(__name__)

VIEW_COUNTS_TABLE = "view_counts"
TRENDING_TABLE = "trending_views"
VIEW_TYPES = frozenset({"view_start", "video_view"})
HIGH_VIEW_COUNT = "high_view_count"
TRENDING_CONTENT = "trending_content"
UPLOAD_COMPLETE = "video_upload_complete"
TRENDING_OFFSET = "offset"     # in a trending state: the last playback.events offset counted (see count_view)
LOG_POLL_INTERVAL = 1.0
# how long a command waits for an edge it could not reach before it is dead-lettered; within the cdn
# group's stall limit (pipeline/worker.py stall_limit), so the watchdog never ends a worker that waits
EDGE_RETRY_FOR = 90.0
EDGE_UNREACHABLE = "edge_unreachable"
# Roll changelog segments hourly and compact eagerly, so a restart recovers about one record per video
# instead of one per view (Kafka's defaults roll at 1 GiB or 7 days: nothing would ever be compacted).
CHANGELOG_COMPACTION = {"segment.ms": str(3_600_000), "min.cleanable.dirty.ratio": "0.1"}


@dataclass(frozen=True)
class CdnSettings:
    """What the ``cdn`` group reads of the configuration; pipeline/worker.py fills it."""

    caching: CachingStrategy     # the warming triggers (``config.caching``)
    partitions: int              # of cdn.commands


@dataclass(frozen=True)
class PopularitySettings:
    """What the ``popularity`` group reads of the configuration; pipeline/worker.py fills it."""

    caching: CachingStrategy     # the popular view count and the trending window (``config.caching``)
    cdn: CdnConfig               # which edge serves a country (``config.cdn``)
    partitions: int              # of playback.events, and so of the tables' changelogs


def _changelog(partitions: int, table: str, description: str) -> TopicSpec:
    """A Faust table's changelog (Faust names it ``<app id>-<table>-changelog``); compacted, with
    playback.events' ``partitions``."""
    return TopicSpec(f"framelog-{POPULARITY}-{table}-changelog", (), compacted=True,
                     partitions=partitions, description=description,
                     extra_config=CHANGELOG_COMPACTION)


def view_counts_changelog(partitions: int) -> TopicSpec:
    return _changelog(partitions, VIEW_COUNTS_TABLE, "views per video counted by the popularity group (cache warming)")


def trending_changelog(partitions: int) -> TopicSpec:
    return _changelog(partitions, TRENDING_TABLE, "windowed views per video and country (trending, regional warming)")


def state_topics(partitions: int) -> list[TopicSpec]:
    """The tables' changelogs, which the composition root creates if missing (the apps never declare
    topics themselves)."""
    return [view_counts_changelog(partitions), trending_changelog(partitions)]


def _table(app: faust.App, spec: TopicSpec, name: str, default: type, value_type: type) -> faust.Table:
    return app.Table(name, default=default, partitions=spec.partitions, key_type=str, value_type=value_type,
                     changelog_topic=app.topic(spec.name, partitions=spec.partitions, key_serializer="json",
                                               value_serializer="json", compacting=True))


@dataclass(frozen=True)
class Counted:
    """A video's view count before and after one view, and the value to store (the count and the offset)."""

    before: int
    after: int
    value: dict[str, int]


def count_view(stored: int | Mapping[str, int] | None, offset: int) -> Counted | None:
    """One view, read at ``offset`` of its playback.events partition, added to a video's stored count;
    None when that offset is in the count already (a record handled again after a restart, whose table
    write landed before its offset was committed: counting it again would count the view twice).

    A video's views all come from one partition, in offset order, so the last offset counted says which
    records are in. Values written before the offset was kept are bare counts.
    """
    if isinstance(stored, Mapping):
        count, last = int(stored.get("count", 0)), int(stored.get("offset", -1))
    else:
        count, last = int(stored or 0), -1
    if offset <= last:
        return None
    return Counted(count, count + 1, {"count": count + 1, "offset": offset})


def stored_count(stored: int | Mapping[str, int] | None) -> int:
    return int(stored.get("count", 0)) if isinstance(stored, Mapping) else int(stored or 0)


def crossed_popularity(before: int, after: int, caching: CachingStrategy) -> bool:
    """True exactly when a count goes from not popular to popular (cache_control.should_warm)."""
    return (not cache_control.should_warm(HIGH_VIEW_COUNT, caching, before)
            and cache_control.should_warm(HIGH_VIEW_COUNT, caching, after))


def _purge_all(caches: list[EdgeCache], paths: tuple[str, ...]) -> list[EdgeCache]:
    """Purge ``paths`` from each cache in order; the caches that could not be reached (to try again)."""
    unreachable = []
    for cache in caches:
        result = cache.purge(paths)
        log.info("edge %s: purged %d object(s)%s", cache.provider_key, len(result.purged),
                 f"; errors: {result.errors}" if result.errors else "")
        if result.unavailable:
            unreachable.append(cache)
    return unreachable


def _warm_all(caches: list[EdgeCache], video_id: str, paths: list[str]) -> list[EdgeCache]:
    """Warm each cache; the caches that could not be reached, or not what is behind them (to try again)."""
    unreachable = []
    for cache in caches:
        result = cache.warm(video_id, paths)
        log.info("edge %s: warmed %d object(s) of %s%s", cache.provider_key, len(result.fetched), video_id,
                 f"; errors: {result.errors[:5]}" if result.errors else "")
        if result.unavailable:
            unreachable.append(cache)
    return unreachable


class CdnCommands:
    """What one ``cdn.commands`` record asks the edges to do.

    An edge that cannot be reached (down, restarting, or answering 5xx because
    the shield or the origin behind it is away) is tried again, with backoff,
    for ``retry_for`` seconds: a command is applied to every edge it names, not
    skipped for the one that was restarting. The edges still unreachable then
    are returned, and the agent dead-letters the command (``framelog dlq
    replay cdn.commands.dlq`` applies it again once they are back; purges and
    warms are idempotent).
    """

    def __init__(self, caching: CachingStrategy, caches: Iterable[EdgeCache], shield: EdgeCache, *,
                 retry_for: float = EDGE_RETRY_FOR, backoff: Backoff = OUTAGE_BACKOFF):
        """``caches``: every configured edge; ``shield``: the origin shield's (sinks/edges/cache_commands.py)."""
        self.caching = caching
        self.caches = {c.provider_key: c for c in caches}
        self.shield = shield
        self.retry_for = retry_for
        self.backoff = backoff

    def _wanted(self, providers: list[str]) -> list[EdgeCache]:
        """The edges a command names (none named: all); unknown names are logged and skipped."""
        if not providers:
            return list(self.caches.values())
        unknown = [p for p in providers if p not in self.caches]
        if unknown:
            log.warning("ignoring unknown CDN provider(s) %s; known: %s", unknown, sorted(self.caches))
        return [self.caches[p] for p in providers if p in self.caches]

    async def _until_reached(self, what: str, caches: list[EdgeCache],
                             apply: Callable[[list[EdgeCache]], list[EdgeCache]]) -> list[str]:
        """``apply`` to ``caches``, then again to those it could not reach, until none is left or ``retry_for``
        passed; the provider keys never reached."""
        deadline = time.monotonic() + self.retry_for
        pending, attempt = caches, 0
        while True:
            missed = await asyncio.to_thread(apply, pending)
            if not missed:
                return []
            if missed[0] is self.shield:
                missed = caches     # the edges may have refetched the shield's stale copy meanwhile: all again
            attempt += 1
            delay = self.backoff.jittered(attempt)
            if time.monotonic() + delay > deadline:
                return [c.provider_key for c in missed]
            log.warning("%s: %s not reached; again in %.1fs (retry %d)", what,
                        ", ".join(c.provider_key for c in missed), delay, attempt)
            pending = missed
            await asyncio.sleep(delay)        # backoff while an edge restarts

    async def invalidate(self, record: dict) -> list[str]:
        vid = validate_video_id(record["video_id"])
        try:
            paths = cdn_routing.invalidation_paths(vid, record.get("paths") or ())
        except ValueError as exc:
            log.warning("video %s: %s; purging the default paths only", vid, exc)
            paths = cdn_routing.default_invalidation_paths(vid)
        # the shield first: an edge refetching meanwhile must not get its stale copy
        caches = [self.shield, *self._wanted(record.get("providers") or [])]
        return await self._until_reached(f"purge of video {vid}", caches, lambda c: _purge_all(c, paths))

    async def warm(self, record: dict) -> list[str]:
        vid = validate_video_id(record["video_id"])
        trigger = record.get("trigger") or ""
        if trigger and trigger not in self.caching.warming_triggers:
            log.warning("video %s: warming trigger %r is not configured (%s); skipped", vid, trigger,
                        self.caching.warming_triggers)
            return []
        caches = self._wanted(record.get("providers") or [])
        missed = []
        if trigger == UPLOAD_COMPLETE:
            paths = cdn_routing.default_invalidation_paths(vid)
            missed = await self._until_reached(f"purge of video {vid}", [self.shield, *caches],
                                               lambda c: _purge_all(c, paths))
        warm_paths = list(record.get("paths") or [])
        missed += await self._until_reached(f"warm of video {vid}", caches,
                                            lambda c: _warm_all(c, vid, warm_paths))
        return sorted(set(missed))

    async def handle(self, name: str, record: dict) -> list[str]:
        """Apply one command; the provider keys (``shield`` included) it could not be applied to."""
        if name == "CacheInvalidate":
            return await self.invalidate(record)
        if name == "CacheWarm":
            return await self.warm(record)
        return []


async def _dead_letter_unapplied(emitter: AsyncEmitter, msg: faust.types.Message, missed: list[str]) -> None:
    """A command some edges never took, onto cdn.commands.dlq (through an outage of the log) to replay."""
    await until_handled(f"dead letter of {msg.topic}[{msg.partition}]@{msg.offset}", lambda: emitter.dead_letter(
        msg.topic, msg.value, key=msg.key, reason=EDGE_UNREACHABLE, error=f"not applied to {', '.join(missed)}",
        partition=msg.partition, offset=msg.offset))


def register_cdn(app: faust.App, settings: CdnSettings, codec: AvroCodec, emitter: AsyncEmitter, *,
                 commands: CdnCommands, exporter: EdgeLogExporter) -> None:
    """The ``cdn`` group: cdn.commands → edges (``commands``); edge logs → metrics (``exporter``)."""

    @app.agent(raw_topic(app, topics.CDN_COMMANDS, settings.partitions), name="cdn-commands")
    async def cdn_commands(stream: faust.StreamT) -> None:
        async for event in stream.events():
            decoded = await _decode_or_dead_letter(codec, emitter, event)
            if decoded is None:
                continue
            try:
                missed = await commands.handle(*decoded)
            except Exception:      # one bad command must not stop the edges' other work
                log.exception("cdn command %s for %s failed", decoded[0], decoded[1].get("video_id"))
                continue
            if missed:
                log.error("cdn command %s for %s not applied to %s after %.0fs; dead-lettered", decoded[0],
                          decoded[1].get("video_id"), missed, commands.retry_for)
                await _dead_letter_unapplied(emitter, event.message, missed)

    @app.timer(LOG_POLL_INTERVAL)
    async def edge_metrics() -> None:
        await asyncio.to_thread(exporter.poll)


def register_popularity(app: faust.App, settings: PopularitySettings, codec: AvroCodec, emitter: AsyncEmitter) -> None:
    """The ``popularity`` group: playback.events → views per video and per (video, country) in Faust
    tables → one CacheWarm when a video's views cross the popular count, and a regional CacheWarm
    when it trends in a country.

    A group of its own: a table's recovery pauses its app's streams, and edge
    commands must not wait for it.
    """
    views = _table(app, view_counts_changelog(settings.partitions), VIEW_COUNTS_TABLE, int, dict)
    trending = _table(app, trending_changelog(settings.partitions), TRENDING_TABLE, dict, dict)
    caching = settings.caching
    trend_settings = caching.trending

    @app.agent(raw_topic(app, topics.PLAYBACK_EVENTS, settings.partitions), name="cdn-popularity")
    async def popularity(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:       # undecodable records are the analytics sink's to dead-letter, not ours
                name, record = codec.decode_for_topic(event.message.topic, event.message.value)
            except (DecodeError, ValidationError):
                continue
            if name != "PlaybackEvent" or record.get("type") not in VIEW_TYPES:
                continue
            vid, offset = record["video_id"], event.message.offset
            await _trend(vid, record, offset)
            stored = views[vid]
            if cache_control.should_warm(HIGH_VIEW_COUNT, caching, stored_count(stored)):
                continue       # popular already: its count decides nothing more, so the changelog stops growing
            counted = count_view(stored, offset)
            if counted is None:
                continue       # counted before a restart (and its warm, if any, was sent before the count)
            if crossed_popularity(counted.before, counted.after, caching):
                await _warm(vid, CacheWarm(video_id=vid, paths=[], trigger=HIGH_VIEW_COUNT))
                log.info("video %s: %d views, warming the edges", vid, counted.after)
            views[vid] = counted.value     # after the warm: a worker killed in between decides it again

    async def _trend(vid: str, record: dict, offset: int) -> None:
        country = cdn_routing.normalize_country(record.get("country"))
        key = trending_key(vid, country)
        stored = trending[key]
        if stored and int(stored.get(TRENDING_OFFSET, -1)) >= offset:
            return             # in the window already (see count_view)
        seen = observe(stored, _event_ms(record), trend_settings)
        if seen.warm:
            edge = cdn_routing.route(country, settings.cdn).primary
            await _warm(vid, CacheWarm(video_id=vid, paths=[], providers=[edge], trigger=TRENDING_CONTENT))
            log.info("video %s: trending in %s (%d views in %gs), warming %s", vid, country or "unknown country",
                     seen.views_in_window, trend_settings.window, edge)
        trending[key] = {**seen.state, TRENDING_OFFSET: offset}

    async def _warm(vid: str, warm: CacheWarm) -> None:
        """The warm a view decided, through an outage of the log (until_handled): an agent that raised
        would be restarted with the view acknowledged and the warm never sent. The tables are written
        only after it, so a worker killed before the write sees the view again and decides the warm again
        (a second warm of the same video is harmless) instead of finding it decided and never sent."""
        await until_handled(f"{warm.trigger} warm of video {vid}",
                            lambda: emitter.emit(topics.CDN_COMMANDS, warm))


def _event_ms(record: dict) -> int:
    t = record.get("event_time")
    return int(t.timestamp() * 1000) if hasattr(t, "timestamp") else int(t or 0)
