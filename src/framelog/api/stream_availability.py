"""The stream API's question to storage tiering: may each rendition be streamed right now?

A rendition moved to a tier with a restore delay (cold, deep archive) has to
be restored before an edge may fetch it. Tiering owns that knowledge
(``streams.tier_view.TierView``, replayed from ``storage.tier-transitions``;
its first answer for a cold rendition also puts the RestoreRequest on the
log). The stream API reports what it hears: each quality's ``availability``
(``available``, ``restoring`` with ``restore_estimate_seconds``, or ``archived``: cold with no restore asked for),
and a 409 with ``Retry-After`` when the one rendition asked for is being restored.

If the tier view cannot answer (not caught up within its deadline, broker
trouble) every rendition counts as available: tiering trouble must not stop
the playback of renditions that are almost always hot.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framelog.api.services import Services


log = logging.getLogger(__name__)

AVAILABLE = "available"
RESTORING = "restoring"
READY_TIMEOUT = 5.0          # how long a request waits for the tier view to catch up with the log


@dataclass(frozen=True)
class Availability:
    state: str = AVAILABLE
    estimate_seconds: float | None = None

    @property
    def playable(self) -> bool:
        return self.state == AVAILABLE

    def to_dict(self) -> dict[str, Any]:
        return {"availability": self.state, "restore_estimate_seconds": self.estimate_seconds}


def rendition_availability(svc: Services, video_id: str, qualities: Iterable[str],
                           requested: str | None = None) -> dict[str, Availability]:
    """Availability of each published quality (blocking; call from a worker thread).

    Only what the viewer asks for is restored: the ``requested`` quality, or,
    for an adaptive stream, every rendition when none of them is playable now.
    Listing a cold rendition next to playable ones starts no restore, so one
    viewer does not pull a whole archived ladder back to the hot tier.
    """
    names = list(qualities)
    try:
        view = svc.tier_view
        if not view.wait_ready(READY_TIMEOUT):
            raise TimeoutError(f"tier view not caught up within {READY_TIMEOUT:g}s ({view.last_error})")
        listed = {q: view.availability(video_id, q, request=False) for q in names}
        if requested is not None:
            wanted = [requested]
        else:
            wanted = [] if any(a.state == AVAILABLE for a in listed.values()) else names
        for q in wanted:
            listed[q] = view.availability(video_id, q, request=True)
        return {q: Availability(a.state, a.estimate_seconds) for q, a in listed.items()}
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        log.warning("tier availability of %s: %s; assuming available", video_id, exc)
        return {q: Availability() for q in names}
