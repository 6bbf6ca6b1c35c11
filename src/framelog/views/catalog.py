"""The video catalog: access policies, share links, deletions and published assets, replayed from the log.

A ``ReplayedTable`` over ``video.access``, ``video.uploads`` and
``video.assets`` folded by ``processors.video_access.CatalogFold``; see that
module for why the log (and not a database or an S3 object) holds this state.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framelog.core.config import StreamsConfig
from framelog.processors.video_access import CatalogFold, VideoEntry
from framelog.streams import topics
from framelog.streams.consumer import DecodedRecord
from framelog.streams.replay import ReplayedTable


class VideoCatalog(ReplayedTable):
    def __init__(self, streams: StreamsConfig, *, group_id: str | None = None):
        super().__init__(streams, (topics.ACCESS, topics.UPLOADS, topics.ASSETS),
                         group_prefix="framelog-catalog",
                         group_id=group_id)
        self._catalog = CatalogFold()

    def _fold(self, record: DecodedRecord | Mapping[str, Any]) -> None:
        if isinstance(record, DecodedRecord):
            self._catalog.apply(record.name, record.value)

    def get(self, video_id: str) -> VideoEntry | None:
        with self._lock:
            return self._catalog.get(video_id)
