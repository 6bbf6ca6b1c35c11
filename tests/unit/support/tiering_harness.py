"""An in-memory stand-in for the tiering worker's surroundings (log, table, object store), for unit tests.

The log, the table rows and the objects survive a ``restart()``; the evaluator
(its gate and in-memory state) does not, as in a killed worker. The agent's
part (folding the log into the rows) is ``fold_log()``.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from framelog.core import object_keys
from framelog.core.clock import ManualClock
from framelog.core.config import Config
from framelog.pipeline.tiering_evaluator import TieringEvaluator, owned_renditions
from framelog.pipeline.tiering_fold import fold_event, rendition_row
from framelog.schemas.events import new_event
from framelog.schemas.records import TierTransition
from framelog.sinks.tier_mover import TierMover

PARTITIONS = 3
TOPIC = "storage.tier-transitions"      # one log per partition stands for all three source topics


def partition_of(video_id: str) -> int:
    return int(hashlib.sha1(video_id.encode()).hexdigest(), 16) % PARTITIONS


class Crash(BaseException):
    """A simulated kill -9."""


class FakeStore:
    """The few ObjectStore calls TierMover makes, in memory."""
    bucket = "test"

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.copies = 0
        self.copies_per_key: dict[str, int] = {}
        self.crash_after_copies: int | None = None
        self.restores: list[tuple[str, int]] = []

    def put(self, key: str, body: bytes) -> None:
        self.data[key] = {"Key": key, "Size": len(body), "ETag": f'"{hashlib.md5(body).hexdigest()}"',
                          "Body": body}

    def objects(self, prefix: str):
        for key in sorted(self.data):
            if key.startswith(prefix):
                yield {k: v for k, v in self.data[key].items() if k != "Body"}

    def set_storage_class(self, key: str, storage_class: str) -> None:
        if self.crash_after_copies is not None and self.copies >= self.crash_after_copies:
            raise Crash(f"killed before copying {key}")
        self.data[key]["StorageClass"] = storage_class
        self.copies += 1
        self.copies_per_key[key] = self.copies_per_key.get(key, 0) + 1

    def restore(self, key: str, days: int) -> bool:
        self.restores.append((key, days))
        return True

    def sha256(self, key: str, chunk_size: int = 0) -> tuple[str, int]:
        body = self.data[key]["Body"]
        return hashlib.sha256(body).hexdigest(), len(body)


@dataclass
class Delivery:
    topic: str
    partition: int
    offset: int


@dataclass
class World:
    config: Config
    clock: ManualClock
    store: FakeStore = field(default_factory=FakeStore)
    log: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=lambda: [[] for _ in range(PARTITIONS)])
    position: list[int] = field(default_factory=lambda: [0] * PARTITIONS)     # folded (= committed) offsets
    rows: dict[str, Any] = field(default_factory=dict)
    crash_on_emit: Callable[[dict[str, Any]], bool] | None = None
    evaluator: TieringEvaluator | None = None

    def __post_init__(self) -> None:
        self.restart()

    # ------------------------------------------------------------ the log

    def append(self, name: str, record: dict[str, Any]) -> Delivery:
        p = partition_of(record["video_id"])
        self.log[p].append((name, record))
        return Delivery(TOPIC, p, len(self.log[p]) - 1)

    async def _emit(self, event: TierTransition) -> Delivery:
        record = event.to_avro()
        delivery = self.append(event.record_name, record)
        if self.crash_on_emit is not None and self.crash_on_emit(record):
            raise Crash("killed right after the broker acknowledged the TierTransition")
        return delivery

    def transitions(self) -> list[dict[str, Any]]:
        return [r for part in self.log for name, r in part if name == "TierTransition"]

    # ------------------------------------------------------------ the worker

    def restart(self) -> None:
        """A new worker: fresh evaluator and gate; it takes over every partition at the log's current end."""
        self.evaluator = TieringEvaluator(self.config.tiering, self.clock, TierMover(self.store), self._emit,
                                          run_blocking=_call)
        for p in range(PARTITIONS):
            self.evaluator.gate.start(p, {TOPIC: (self.position[p], len(self.log[p]))})

    def fold_log(self) -> None:
        """The agent: fold every record not folded yet (every topic lives on this one log here)."""
        for p in range(PARTITIONS):
            while self.position[p] < len(self.log[p]):
                name, record = self.log[p][self.position[p]]
                fold_event(self.rows, name, record, p, self.config.tiering)
                self.evaluator.gate.folded(TOPIC, p, self.position[p])
                self.position[p] += 1

    def evaluate(self) -> list[Any]:
        candidates = owned_renditions(list(self.rows.items()), set(range(PARTITIONS)))
        return asyncio.run(self.evaluator.evaluate(candidates, lambda key: rendition_row(self.rows, key)))

    def tick(self) -> list[Any]:
        """One timer tick: fold what is on the log, evaluate, fold the decisions back."""
        self.fold_log()
        moves = self.evaluate()
        self.fold_log()
        return moves

    # ------------------------------------------------------------ inputs

    def publish(self, video_id: str, renditions: dict[str, int]) -> None:
        """AssetPublished with renditions {name: segment count}; their objects into the store."""
        rs = []
        for name, segments in renditions.items():
            for i in range(segments):
                self.store.put(f"hls/{video_id}/{name}/seg{i:03d}.ts", f"{video_id}{name}{i}".encode() * 10)
            self.store.put(object_keys.rendition_playlist(video_id, name), b"#EXTM3U\n")
            rs.append({"name": name, "width": 1, "height": 1, "bandwidth": 1, "average_bandwidth": 1,
                       "codecs": "avc1", "frame_rate": 25.0,
                       "playlist_key": object_keys.rendition_playlist(video_id, name),
                       "segment_count": segments, "size_bytes": 100 * segments})
        self.append("AssetPublished", new_event("AssetPublished", clock=self.clock, video_id=video_id,
                                                renditions=rs,
                                                master_playlist_key=object_keys.master_playlist(video_id)))

    def play(self, video_id: str, rendition: str, session: str, type_: str = "view_start") -> None:
        now = self.clock.now()
        self.append("PlaybackEvent", new_event("PlaybackEvent", clock=self.clock, session_id=session,
                                               viewer_id="v", video_id=video_id, type=type_, rendition=rendition,
                                               client_time=now, ingest_time=now))

    def request_restore(self, video_id: str, rendition: str | None) -> None:
        self.append("RestoreRequest", new_event("RestoreRequest", clock=self.clock, video_id=video_id,
                                                rendition=rendition, to_tier=self.config.tiering_restore_tier,
                                                reason="test"))


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)
