"""`framelog events tail TOPIC`: print decoded events as JSON lines.

Tailing uses a throwaway consumer group and never commits, so it never moves
any real consumer's position.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime
from typing import Any, TextIO

from framelog.core.config import StreamsConfig
from framelog.core.ids import validate_video_id
from framelog.streams.consumer import EventConsumer
from framelog.streams.topics import topic_spec


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value[:64].hex() + ("…" if len(value) > 64 else "")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def tail_topic(streams: StreamsConfig, topic: str, *, from_beginning: bool = False, limit: int = 0,
               timeout: float = 0, video_id: str | None = None, out: TextIO = sys.stdout) -> int:
    """Print ``topic``'s records as JSON lines (``config.streams``)."""
    topic_spec(topic, streams.topics)                       # unknown topic: a clear KeyError, not a silent wait
    if video_id is not None:
        validate_video_id(video_id)
    consumer = EventConsumer(streams, f"framelog-tail-{uuid.uuid4().hex[:8]}", [topic],
                             **{"auto.offset.reset": "earliest" if from_beginning else "latest"})
    shown = 0
    idle_since = time.monotonic()
    try:
        while not limit or shown < limit:
            records = consumer.poll_batch(500, timeout=0.5)
            if records:
                idle_since = time.monotonic()
            elif timeout and time.monotonic() - idle_since > timeout:
                break
            for r in records:
                if video_id and r.key != video_id:
                    continue
                out.write(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset,
                                      "event": r.name, "value": _jsonable(r.value)}) + "\n")
                out.flush()
                shown += 1
                if limit and shown >= limit:
                    break
    finally:
        consumer.close()
    return 0
