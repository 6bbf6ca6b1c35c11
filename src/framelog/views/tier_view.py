"""Is a rendition playable now? The stream API's view of storage tiers.

``TierView`` replays ``storage.tier-transitions`` (the tiering job's
decisions and every restore request) into the same rows the tiering agent
keeps (``streams.tiering_fold``), so it knows each rendition's tier and any
restore in progress. ``availability(video_id, rendition)`` answers:

* ``available``: the objects are readable (a rendition never moved is in the
  entry tier; hot and warm tiers have no restore delay);
* ``restoring`` with ``estimate_seconds``: the rendition is in a tier with a
  restore delay (cold, deep archive). The first call emits one
  ``RestoreRequest`` (rendition, to ``tiering_restore_tier``, reason
  ``playback_requested``); the tiering worker promotes the rendition once the
  tier's ``restore_delay`` has passed (by its clock), and this view reports
  ``available`` once that ``TierTransition`` (rule ``restore``) is on the log.
  An estimate of 0 means "due now, the tiering worker is about to move it".

Renditions are independent: while the 4K rendition is restoring, the 720p
one stays ``available`` and can be played.

Use (the stream API): create one ``TierView(config.streams, config.tiering).start()`` per process,
``wait_ready(timeout)`` before serving, call ``availability`` (thread-safe,
may block a few milliseconds on the broker when it emits a request, so call
it from a thread pool in async code), ``stop()`` at shutdown. Pass
``request=False`` for renditions only listed (not asked for), so listing a
video's qualities does not restore all of them.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from framelog.core.clock import Clock, SystemClock
from framelog.core.config import StreamsConfig, TieringConfig
from framelog.pipeline.tiering_fold import fold_event, rendition_row
from framelog.processors import tier_ledger as ledger
from framelog.processors.tiering import RestorePlan, restore_plan
from framelog.schemas.records import RestoreRequest
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.producer import EventProducer
from framelog.streams.replay import ReplayedTable

AVAILABLE = "available"
RESTORING = "restoring"
ARCHIVED = "archived"                   # in a tier that needs a restore, and none is running
RESTORE_REASON = "playback_requested"


@dataclass(frozen=True)
class Availability:
    video_id: str
    rendition: str
    state: str                          # "available", "restoring", or "archived" (listed, no restore running)
    tier: str
    estimate_seconds: float | None      # restoring: seconds until playable (0: due now); None when available
    ready_at: datetime | None
    requested_now: bool = False         # this call emitted the RestoreRequest

    @property
    def available(self) -> bool:
        return self.state == AVAILABLE

    def to_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "rendition": self.rendition, "state": self.state, "tier": self.tier,
                "estimate_seconds": None if self.estimate_seconds is None else round(self.estimate_seconds, 1),
                "ready_at": None if self.ready_at is None else self.ready_at.isoformat()}


class TierView(ReplayedTable):
    def __init__(self, streams: StreamsConfig, tiering: TieringConfig, *, clock: Clock | None = None,
                 producer: EventProducer | None = None, requested_by: str = "stream-api", group_id: str | None = None):
        """``streams``: ``config.streams``; ``tiering``: ``config.tiering`` (the tiers and their restores)."""
        super().__init__(streams, (topics.TIER_TRANSITIONS,), group_prefix="framelog-tier-view",
                         group_id=group_id)
        self.tiering = tiering
        self.clock = clock or SystemClock()
        self._producer = producer
        self.requested_by = requested_by
        self.rows: dict[str, Any] = {}
        self._requested: dict[str, RestorePlan] = {}     # emitted here, not folded back yet
        self._request_lock = threading.Lock()

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if isinstance(record, DecodedRecord):
            fold_event(self.rows, record.name, record.value, record.partition, self.tiering)

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.streams)
        return self._producer

    def record(self, video_id: str, rendition: str) -> ledger.RenditionRecord | None:
        with self._lock:
            return rendition_row(self.rows, ledger.rendition_key(video_id, rendition))

    def availability(self, video_id: str, rendition: str, *, request: bool = True) -> Availability:
        """Playable now, or restoring with an estimate (asking for the restore the first time).

        ``request=False`` only reports: a cold rendition with no restore running
        is ``restoring`` with the estimate a restore would take, and nothing is
        emitted (for renditions listed, not asked for).
        """
        key = ledger.rendition_key(video_id, rendition)
        now = self.clock.now()
        record = self.record(video_id, rendition)
        tier = record.tier if record is not None else ledger.entry_tier(self.tiering)
        if record is not None and (record.restore is not None or not ledger.needs_restore(tier, self.tiering)):
            with self._request_lock:
                self._requested.pop(key, None)       # our request is on the log (or no longer needed)
        if record is not None and record.restore is not None:
            return Availability(video_id, rendition, RESTORING, tier, ledger.restore_estimate(record, now),
                                ledger.ms_to_datetime(record.restore.ready_at_ms))
        if record is None or not ledger.needs_restore(tier, self.tiering):
            return Availability(video_id, rendition, AVAILABLE, tier, None, None)
        if not request:
            with self._request_lock:
                pending = self._requested.get(key)
            plan = pending or restore_plan(tier, now, self.tiering)
            return Availability(video_id, rendition, RESTORING if pending else ARCHIVED, tier,
                                max(0.0, (plan.ready_at - now).total_seconds()), plan.ready_at)
        with self._request_lock:
            plan = self._requested.get(key)
            requested_now = plan is None or plan.tier != tier
            if requested_now:
                plan = restore_plan(tier, now, self.tiering)
                delivery = self.producer.emit(topics.TIER_TRANSITIONS, RestoreRequest(
                    event_time=now, video_id=video_id, rendition=rendition, to_tier=self.tiering.restore_tier,
                    reason=RESTORE_REASON, requested_by=self.requested_by))
                self._requested[key] = plan
        if requested_now:      # read our own write, so the next call answers from the log
            self.wait_offset(delivery.topic, delivery.partition, delivery.offset, timeout=2.0)
        estimate = max(0.0, (plan.ready_at - now).total_seconds())
        return Availability(video_id, rendition, RESTORING, tier, estimate, plan.ready_at, requested_now)
