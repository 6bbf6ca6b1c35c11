"""In-memory stand-ins for StageRunner's collaborators: the result store, the emitter, a job handler.

For unit tests of one function (StageRunner.handle); the real stack runs the same
paths in the integration tests.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from framelog.pipeline.jobs.base import JobContext
from framelog.schemas.record import EventRecord

VID = "vid-deleted"


class Store:
    def __init__(self) -> None:
        self.markers: dict[str, dict[str, str]] = {}
        self.deleted = False
        self.discarded: list[dict[str, str]] = []

    def get_marker(self, key: str) -> dict[str, str] | None:
        return self.markers.get(key)

    def put_marker(self, key: str, outputs: Mapping[str, str]) -> None:
        self.markers[key] = dict(outputs)

    def video_deleted(self, video_id: str) -> bool:
        return self.deleted

    def discard_video(self, video_id: str, stage_values: Mapping[str, str]) -> dict[str, int]:
        self.discarded.append(dict(stage_values))
        return {f"work/{video_id}/": 1}


class Emitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.dead: list[str] = []

    async def emit(self, topic: str, record: EventRecord, key: str | None = None) -> None:
        self.sent.append((record.record_name, record.to_avro()))

    async def dead_letter(self, topic: str, value: bytes | None, **kw: Any) -> None:
        self.dead.append(topic)

    def states(self) -> list[tuple[str, str]]:
        return [(e["stage"], e["state"]) for n, e in self.sent if n == "StageTransition"]

    def requests(self) -> list[str]:
        return [e["stage"] for n, e in self.sent if n == "StageRequest"]


class Handler:
    stage = "transcoding"

    def __init__(self, work: Callable[[JobContext], dict[str, str]]):
        self.work = work
        self.runs = 0

    def run(self, ctx: JobContext) -> dict[str, str]:
        self.runs += 1
        return self.work(ctx)
