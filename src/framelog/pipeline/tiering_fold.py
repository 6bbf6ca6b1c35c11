"""Fold the tiering job's input events into table rows.

Rows live in any mutable mapping: the Faust table of the tiering agent
(changelog-backed), a plain dict in the API's tier view, the replay test and
the simulator. Keys and values are JSON-friendly:

* ``<video_id>/<rendition>`` -> ``{"partition": p, "record": RenditionRecord.to_dict()}``
* ``<video_id>``             -> ``{"partition": p, "video": VideoAccess.to_dict(), "renditions": [...],
  "objects": [...]}`` (its object groups: ``_source``, ``_mp4``, ``_thumbnails``; rows like renditions', their
  accesses the video's)

``partition`` is the Kafka partition the video's events arrive on (all of
framelog's topics are keyed by video id and co-partitioned), so a worker
evaluates only the renditions of the partitions it owns.

Every row is written back whole (a Faust table only logs assignments).
"""
from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from framelog.core.config import TieringConfig
from framelog.processors import tier_ledger as ledger

Rows = MutableMapping[str, Any]


@dataclass
class FoldResult:
    rendition_keys: list[str] = field(default_factory=list)      # rows worth evaluating now
    accesses: list[tuple[str, str]] = field(default_factory=list)  # (tier, access_type) for metrics
    applied: bool = False


def rendition_row(rows: Rows, key: str) -> ledger.RenditionRecord | None:
    row = rows.get(key)
    return None if row is None else ledger.RenditionRecord.from_dict(row["record"])


def _put_rendition(rows: Rows, record: ledger.RenditionRecord, partition: int) -> str:
    rows[record.key] = {"partition": partition, "record": record.to_dict()}
    return record.key


def _video_row(rows: Rows, video_id: str) -> dict[str, Any]:
    row = rows.get(ledger.video_key(video_id))
    return dict(row) if row is not None else {"video": ledger.VideoAccess(video_id).to_dict(), "renditions": []}


def fold_event(rows: Rows, name: str, value: dict[str, Any], partition: int, tiering: TieringConfig) -> FoldResult:
    """Apply one decoded event; unrelated record types are ignored (``tiering``: ``tiering``)."""
    out = FoldResult()
    if name == "AssetPublished":
        vid = value["video_id"]
        video = _video_row(rows, vid)
        for r in value["renditions"]:
            key = ledger.rendition_key(vid, r["name"])
            record = ledger.on_asset_published(rendition_row(rows, key), value, r, tiering)
            out.rendition_keys.append(_put_rendition(rows, record, partition))
            if r["name"] not in video["renditions"]:
                video["renditions"] = [*video["renditions"], r["name"]]
        seen = ledger.VideoAccess.from_dict(video["video"])    # sessions folded before the publication count too
        for group, prefix, size in ledger.object_groups(value):
            key = ledger.rendition_key(vid, group)
            existing = rendition_row(rows, key)
            record = ledger.on_object_published(existing, value, group, prefix, size, tiering)
            if existing is None:
                record = dataclasses.replace(record, access_count=seen.access_count,
                                             last_access_ms=seen.last_access_ms, recent_sessions=seen.recent_sessions)
            out.rendition_keys.append(_put_rendition(rows, record, partition))
            if group not in video.get("objects", []):
                video["objects"] = [*video.get("objects", []), group]
        rows[ledger.video_key(vid)] = {**video, "partition": partition}
        out.applied = True
    elif name == "PlaybackEvent":
        vid, session, at = value["video_id"], value["session_id"], value["event_time"]
        video = _video_row(rows, vid)
        access, counted = ledger.on_video_access(ledger.VideoAccess.from_dict(video["video"]), vid, session, at)
        rows[ledger.video_key(vid)] = {**video, "video": access.to_dict(), "partition": partition}
        for group in video.get("objects", []):          # the MP4, the source, the thumbnails: the video's accesses
            key = ledger.rendition_key(vid, group)
            group_record = rendition_row(rows, key)
            if group_record is not None:
                group_record, group_counted = ledger.on_access(group_record, session, at)
                _put_rendition(rows, group_record, partition)
                if group_counted:
                    out.rendition_keys.append(key)
        rendition = value.get("rendition")
        tier = "unknown"
        if rendition:
            try:
                key = ledger.rendition_key(vid, rendition)
            except ValueError:
                key = None
            if key is not None:
                record = rendition_row(rows, key) or ledger.placeholder(vid, rendition, tiering)
                record, counted = ledger.on_access(record, session, at)
                _put_rendition(rows, record, partition)
                tier = record.tier
                if counted:
                    out.rendition_keys.append(key)
        out.accesses.append((tier, str(value.get("type") or "unknown")))
        out.applied = True
    elif name == "TierTransition":
        key = ledger.rendition_key(value["video_id"], value["rendition"])
        record, out.applied = ledger.on_transition(rendition_row(rows, key), value, tiering)
        _put_rendition(rows, record, partition)
        out.rendition_keys.append(key)
    elif name == "RestoreRequest":
        vid = value["video_id"]
        names = [value["rendition"]] if value.get("rendition") else list(_video_row(rows, vid)["renditions"])
        for rendition in names:
            key = ledger.rendition_key(vid, rendition)
            record = rendition_row(rows, key)
            if record is None:
                continue
            record, started = ledger.on_restore_request(record, value, tiering)
            if started:
                _put_rendition(rows, record, partition)
                out.rendition_keys.append(key)
                out.accesses.append((record.tier, "restore_request"))
                out.applied = True
    return out
