"""What the tiering job knows about each stored rendition, folded from events.

A ``RenditionRecord`` is the value of one row of the tiering table: creation
time and object prefix (from ``AssetPublished``), access count and last access
(from playback events), current tier and restore state (from the job's own
``TierTransition`` and ``RestoreRequest`` events). ``VideoAccess`` is the
per-video access count. The ``on_*`` functions fold one event each and are
idempotent for a redelivered event, which is what at-least-once consumption
needs; ``next_move`` is the decision, built on ``processors.tiering``.

Pure: no Kafka, no S3. The Faust agent, the API's tier view, the replay test
and the simulator all fold through these functions, so they agree.

Decision order for one rendition at ``now`` (``next_move``):

1. a restore whose ``ready_at`` has passed: move to the restore's target tier
   (rule ``"restore"``); a restore still running: no move;
2. within ``tiering_restore_hold`` of a completed restore: no move (the viewer
   who asked for it is about to watch);
3. the configured rules (``processors.tiering.decide_tier``: first match wins);
4. but a rendition in a tier with a restore delay (Glacier-like) never moves to
   a tier with a shorter delay by rule: its objects cannot be read until
   restored, so it comes back only through a restore. It may still move to a
   slower tier (cold → deep archive).

Besides its HLS renditions a video keeps other objects, each tracked as an *object group* with a
reserved name (``_source``: the raw upload, ``_mp4``: the progressive MP4, ``_thumbnails``: its
thumbnails prefix), moved by the same code and counted by the same metrics, but decided by its own
rules (``tiering_object_rules``) on the video's accesses (any rendition).

An access is a playback *session* that played the rendition: the first event
of a session carrying that rendition counts once (heartbeats of the same
session do not). The record remembers the last ``RECENT_SESSIONS`` session ids
for this, which also makes a redelivered event count once.
"""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from framelog.core import object_keys
from framelog.core.clock import ensure_utc, from_timestamp
from framelog.core.config import TieringConfig, TieringRule
from framelog.core.ids import validate_video_id
from framelog.processors.tiering import SECONDS_PER_DAY, RenditionState, TierChange, evaluate, tier

RECENT_SESSIONS = 64          # session ids remembered per rendition to count each session once
RECENT_TRANSITIONS = 8        # TierTransition ids remembered per rendition to ignore duplicates
RESTORE_RULE = "restore"
CLOCK_SLACK_MS = 1000         # a creation time derived from a transition's age_days may be off by rounding
# TierTransition ids are derived from the rendition's state, so a decision made
# twice (e.g. before and after a crash) carries the same id and applies once.
TRANSITION_NAMESPACE = uuid.UUID("0b6b7f1e-4a43-4d0a-9d4c-3f0c2f6b8e21")


def to_ms(value: Any) -> int:
    """Epoch milliseconds of an Avro timestamp (decoded datetime or raw int)."""
    if isinstance(value, datetime):
        return int(ensure_utc(value).timestamp() * 1000)
    return int(value)


def ms_to_datetime(ms: int) -> datetime:
    return from_timestamp(ms / 1000)


# object group name -> its rules in tiering_object_rules; "_" never starts an HLS rendition name
OBJECT_GROUPS = {"_source": "source", "_mp4": "mp4", "_thumbnails": "thumbnails"}


def rules_for(rendition: str, tiering: TieringConfig) -> tuple[TieringRule, ...]:
    """The rules that decide a rendition (``tiering_rules``) or an object group (its own)."""
    group = OBJECT_GROUPS.get(rendition)
    return tiering.rules if group is None else getattr(tiering.object_rules, group)


def rendition_key(video_id: str, rendition: str) -> str:
    """The table key of one rendition (``<video_id>/<rendition>``)."""
    return f"{validate_video_id(video_id)}/{object_keys.rendition(rendition)}"


def video_key(video_id: str) -> str:
    """The table key of one video's access count (``<video_id>``: no slash, so never a rendition key)."""
    return validate_video_id(video_id)


@dataclass(frozen=True)
class PendingRestore:
    requested_at_ms: int
    ready_at_ms: int
    from_tier: str
    to_tier: str
    event_id: str


@dataclass(frozen=True)
class RenditionRecord:
    video_id: str
    rendition: str
    object_prefix: str            # every object of the rendition lives under it: hls/<video>/<rendition>/
    created_at_ms: int            # first publication; age counts from here
    published_at_ms: int          # latest publication (a re-publish rewrites the objects as STANDARD)
    tier: str
    size_bytes: int = 0
    access_count: int = 0
    last_access_ms: int | None = None
    recent_sessions: tuple[str, ...] = ()
    transitions: int = 0          # TierTransitions applied so far
    applied_transitions: tuple[str, ...] = ()
    restore: PendingRestore | None = None
    restored_at_ms: int | None = None
    tier_since_ms: int | None = None   # entered its current tier (None: at created_at_ms); retention counts from here
    published: bool = True        # False: known only from accesses or transitions folded before its AssetPublished

    @property
    def key(self) -> str:
        return rendition_key(self.video_id, self.rendition)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recent_sessions"] = list(self.recent_sessions)
        d["applied_transitions"] = list(self.applied_transitions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RenditionRecord:
        d = dict(d)
        d["recent_sessions"] = tuple(d.get("recent_sessions") or ())
        d["applied_transitions"] = tuple(d.get("applied_transitions") or ())
        if d.get("restore"):
            d["restore"] = PendingRestore(**d["restore"])
        return cls(**d)

    def state(self) -> RenditionState:
        """The view ``processors.tiering`` decides on."""
        return RenditionState(self.video_id, self.rendition, ms_to_datetime(self.created_at_ms), self.access_count,
                              None if self.last_access_ms is None else ms_to_datetime(self.last_access_ms), self.tier,
                              None if self.tier_since_ms is None else ms_to_datetime(self.tier_since_ms))


@dataclass(frozen=True)
class VideoAccess:
    video_id: str
    access_count: int = 0
    last_access_ms: int | None = None
    recent_sessions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recent_sessions"] = list(self.recent_sessions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoAccess:
        return cls(**{**d, "recent_sessions": tuple(d.get("recent_sessions") or ())})


@dataclass(frozen=True)
class PlannedMove(TierChange):
    """A decided move plus the id its TierTransition event carries."""
    event_id: str = ""
    object_prefix: str = ""


# ---------------------------------------------------------------- folds

def entry_tier(tiering: TieringConfig) -> str:
    """Where a freshly published rendition's objects are: the tier whose class is STANDARD (S3's default)."""
    for t in tiering.tiers.values():
        if t.storage_class == "STANDARD":
            return t.name
    return tiering.restore_tier


def placeholder(video_id: str, rendition: str, tiering: TieringConfig) -> RenditionRecord:
    """A rendition seen (in an access or a transition) before its AssetPublished; never moved until published.

    Replaying several topics from the beginning interleaves them in no fixed
    order, so the fold must not depend on AssetPublished coming first.
    """
    return RenditionRecord(validate_video_id(video_id), object_keys.rendition(rendition),
                           object_keys.rendition_prefix(video_id, rendition), 0, 0, entry_tier(tiering),
                           published=False)


def on_asset_published(existing: RenditionRecord | None, asset: Mapping[str, Any],
                       rendition: Mapping[str, Any], tiering: TieringConfig) -> RenditionRecord:
    """A rendition (re)published: objects are new and in S3's default class; age counts from the first publish.

    A publication no later than what the record already knows (a redelivery,
    or one older than a transition folded first) only fills in its facts.
    """
    video_id = validate_video_id(asset["video_id"])
    name = object_keys.rendition(rendition["name"])
    at = to_ms(asset["event_time"])
    prefix = rendition["playlist_key"].rsplit("/", 1)[0] + "/"
    if prefix != object_keys.rendition_prefix(video_id, name):
        raise ValueError(f"playlist key {rendition['playlist_key']!r} is not under "
                         f"{object_keys.rendition_prefix(video_id, name)}")
    size = int(rendition.get("size_bytes") or 0)
    if existing is None:
        return RenditionRecord(video_id, name, prefix, at, at, entry_tier(tiering), size_bytes=size)
    created = at
    if existing.created_at_ms and at - existing.created_at_ms > CLOCK_SLACK_MS:
        created = existing.created_at_ms                  # first published earlier (e.g. before a republish)
    filled = dataclasses.replace(existing, object_prefix=prefix, published=True,
                                 size_bytes=existing.size_bytes or size, created_at_ms=created)
    if at <= existing.published_at_ms:
        return filled if existing.published else dataclasses.replace(filled, published_at_ms=at)
    return dataclasses.replace(filled, published_at_ms=at, tier=entry_tier(tiering), size_bytes=size, restore=None,
                               tier_since_ms=at)


def on_object_published(existing: RenditionRecord | None, asset: Mapping[str, Any], group: str, prefix: str,
                        size_bytes: int, tiering: TieringConfig) -> RenditionRecord:
    """An object group of a (re)published video (``group`` in OBJECT_GROUPS), as on_asset_published does a
    rendition: its objects are those under ``prefix`` (one exact key for the source and the MP4)."""
    if group not in OBJECT_GROUPS:
        raise ValueError(f"unknown object group {group!r}")
    video_id = validate_video_id(asset["video_id"])
    if not prefix or ".." in prefix or prefix.startswith("/") or video_id not in prefix:
        raise ValueError(f"object key {prefix!r} is not one of video {video_id}")
    at = to_ms(asset["event_time"])
    if existing is None:
        return RenditionRecord(video_id, group, prefix, at, at, entry_tier(tiering), size_bytes=size_bytes)
    created = existing.created_at_ms if existing.created_at_ms and at - existing.created_at_ms > CLOCK_SLACK_MS \
        else at
    filled = dataclasses.replace(existing, object_prefix=prefix, published=True,
                                 size_bytes=existing.size_bytes or size_bytes, created_at_ms=created)
    if at <= existing.published_at_ms:
        return filled if existing.published else dataclasses.replace(filled, published_at_ms=at)
    return dataclasses.replace(filled, published_at_ms=at, tier=entry_tier(tiering), size_bytes=size_bytes,
                               restore=None, tier_since_ms=at)


def object_groups(asset: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(group, object prefix, bytes) of every object group an AssetPublished names (its metadata)."""
    vid = validate_video_id(asset["video_id"])
    meta = asset.get("metadata") or {}

    def size(key: str) -> int:
        try:
            return max(0, int(meta.get(key) or 0))
        except ValueError:
            return 0

    out = []
    if meta.get("upload_key"):
        out.append(("_source", meta["upload_key"], size("upload_size")))
    if meta.get("source_key"):
        out.append(("_mp4", meta["source_key"], size("mp4_size")))
    if asset.get("thumbnails") or meta.get("thumbnails_size"):
        out.append(("_thumbnails", object_keys.thumbnails_root(vid), size("thumbnails_size")))
    return out


def _remember(recent: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    return (recent + (item,))[-limit:]


_Counted = TypeVar("_Counted", "RenditionRecord", "VideoAccess")


def _count_session(counted: _Counted, session_id: str, at: Any) -> tuple[_Counted, bool]:
    """One playback event of ``session_id``: a new access unless the session was counted already."""
    at_ms = to_ms(at)
    last = at_ms if counted.last_access_ms is None else max(counted.last_access_ms, at_ms)
    if session_id in counted.recent_sessions:
        return dataclasses.replace(counted, last_access_ms=last), False
    return dataclasses.replace(counted, access_count=counted.access_count + 1, last_access_ms=last,
                               recent_sessions=_remember(counted.recent_sessions, session_id, RECENT_SESSIONS)), True


def on_access(record: RenditionRecord, session_id: str, at: Any) -> tuple[RenditionRecord, bool]:
    """Fold one playback event of ``session_id`` on this rendition; True if it was a new access."""
    return _count_session(record, session_id, at)


def on_accesses(record: RenditionRecord, count: int, at: Any) -> RenditionRecord:
    """``count`` sessions at once, without session ids (the simulator's daily totals)."""
    if count < 0:
        raise ValueError(f"access count delta must be >= 0, got {count}")
    if count == 0:
        return record
    at_ms = to_ms(at)
    last = at_ms if record.last_access_ms is None else max(record.last_access_ms, at_ms)
    return dataclasses.replace(record, access_count=record.access_count + count, last_access_ms=last)


def on_video_access(video: VideoAccess | None, video_id: str, session_id: str, at: Any) -> tuple[VideoAccess, bool]:
    """The same for the video as a whole (any rendition)."""
    return _count_session(video or VideoAccess(validate_video_id(video_id)), session_id, at)


def on_transition(record: RenditionRecord | None, event: Mapping[str, Any],
                  tiering: TieringConfig) -> tuple[RenditionRecord, bool]:
    """Apply a TierTransition; a duplicate (same id) or a stale one (from another tier) is ignored."""
    event_id = event["event_id"]
    at = to_ms(event["event_time"])
    if record is None:
        record = placeholder(event["video_id"], event["rendition"], tiering)
    if not record.published and not record.created_at_ms:
        created = at - round(float(event["age_days"]) * SECONDS_PER_DAY * 1000)
        record = dataclasses.replace(record, created_at_ms=created, published_at_ms=at)
    if event_id in record.applied_transitions or event["from_tier"] != record.tier:
        return record, False
    restored = event["rule"] == RESTORE_RULE
    return dataclasses.replace(
        record, tier=event["to_tier"], published_at_ms=max(record.published_at_ms, at) if not record.published
        else record.published_at_ms, transitions=record.transitions + 1,
        applied_transitions=_remember(record.applied_transitions, event_id, RECENT_TRANSITIONS),
        size_bytes=int(event.get("size_bytes") or record.size_bytes), tier_since_ms=at,
        restore=None if restored else record.restore,
        restored_at_ms=at if restored else record.restored_at_ms), True


def needs_restore(tier_name: str, tiering: TieringConfig) -> bool:
    """Objects in this tier cannot be read until restored (the tier has a restore delay)."""
    return tier(tier_name, tiering).restore_delay > 0


def on_restore_request(record: RenditionRecord, event: Mapping[str, Any],
                       tiering: TieringConfig) -> tuple[RenditionRecord, bool]:
    """Start a restore unless one runs already or the objects are readable as they are."""
    if record.restore is not None or not needs_restore(record.tier, tiering):
        return record, False
    at = to_ms(event["event_time"])
    delay_ms = int(tier(record.tier, tiering).restore_delay * 1000)
    to_tier = event.get("to_tier") or tiering.restore_tier
    tier(to_tier, tiering)                                 # unknown tier: UnknownTierError names it
    return dataclasses.replace(record, restore=PendingRestore(at, at + delay_ms, record.tier, to_tier,
                                                              event["event_id"])), True


# ---------------------------------------------------------------- decision

def transition_event_id(record: RenditionRecord, to_tier: str) -> str:
    return str(uuid.uuid5(TRANSITION_NAMESPACE,
                          f"{record.video_id}/{record.rendition}/{record.transitions}/{record.tier}>{to_tier}"))


def _planned(record: RenditionRecord, to_tier: str, rule: str, now: datetime) -> PlannedMove:
    return PlannedMove(video_id=record.video_id, rendition=record.rendition, from_tier=record.tier, to_tier=to_tier,
                       rule_name=rule, age_days=record.state().age_days(now), access_count=record.access_count,
                       decided_at=now, event_id=transition_event_id(record, to_tier),
                       object_prefix=record.object_prefix)


def next_move(record: RenditionRecord, now: datetime, tiering: TieringConfig) -> PlannedMove | None:
    """The move this rendition needs at ``now`` (see the module doc for the order), or None."""
    now = ensure_utc(now)
    now_ms = to_ms(now)
    if not record.published:
        return None
    if record.restore is not None:
        if now_ms >= record.restore.ready_at_ms and record.restore.to_tier != record.tier:
            return _planned(record, record.restore.to_tier, RESTORE_RULE, now)
        return None
    if record.restored_at_ms is not None and now < ms_to_datetime(record.restored_at_ms) + timedelta(
            seconds=tiering.restore_hold):
        return None
    change = evaluate(record.state(), now, tiering, rules_for(record.rendition, tiering))
    if change is None:
        return None
    current, target = tier(record.tier, tiering), tier(change.to_tier, tiering)
    if current.restore_delay > 0 and target.restore_delay < current.restore_delay:
        return None                                       # comes back only through a restore
    return _planned(record, change.to_tier, change.rule_name, now)


def restore_estimate(record: RenditionRecord, now: datetime) -> float | None:
    """Seconds until a running restore's objects are readable (0 when due), or None if none runs."""
    if record.restore is None:
        return None
    return max(0.0, (record.restore.ready_at_ms - to_ms(now)) / 1000)
