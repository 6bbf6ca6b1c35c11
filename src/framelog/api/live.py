"""Live progress: ``GET /videos/{id}/events``, the video's stage transitions as server-sent events.

The stream first replays what happened so far (each stage's latest transition
in the order they happened, ``"replayed": true``), then follows the log as the
API's status table folds new transitions (``streams.status.StatusTable.watch``:
no transition falls between the replay and the follow). Events:

    event: transition   {"stage", "state", "attempt", "progress", "at", "error_type", ...}
    event: status       the video's status (as GET /videos/{id}) after the change
    event: end          the final status, once the video is ready, failed or deleted; then the stream closes

A comment line (``: keepalive``) every ``live_progress.heartbeat_interval``
keeps proxies from closing an idle stream; a stream lasts at most
``live_progress.max_stream_duration``. Only the video's owner, a member of its
workspace (or an ops principal) may watch.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from framelog.api.access_state import video_id_param
from framelog.api.auth import require
from framelog.api.errors import responses
from framelog.api.services import Services, Svc
from framelog.processors.identity import OPS, Principal

router = APIRouter(tags=["live"])

FINAL = frozenset({"ready", "failed", "deleted"})
CATALOG_SYNC_TIMEOUT = 5.0
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in json.dumps(data, separators=(",", ":")).splitlines()]
    return ("\n".join(lines) + "\n\n").encode()


def replayed(view: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each stage's latest transition, in the order they happened."""
    stages = sorted((view or {}).get("stages", {}).values(), key=lambda s: s.get("updated_at") or "")
    return [{"stage": s["stage"], "state": s["state"], "attempt": s["attempt"], "progress": s["progress"],
             "job_id": s.get("job_id"), "error_type": s.get("error_type"), "error_message": s.get("error_message"),
             "duration_ms": s.get("duration_ms"), "at": s.get("updated_at"), "replayed": True} for s in stages]


async def event_stream(request: Request, svc: Services, video_id: str) -> AsyncIterator[bytes]:
    config = svc.config
    table = svc.status
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[dict[str, Any] | None, dict[str, Any]]] = asyncio.Queue()

    def notify(change: dict[str, Any] | None, view: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (change, view))

    view, unwatch = table.watch(video_id, notify)
    seq = 0
    try:
        for change in replayed(view):
            seq += 1
            yield sse("transition", change, seq)
        if view is not None:
            seq += 1
            yield sse("status", view, seq)
            if view.get("state") in FINAL:
                yield sse("end", view, seq + 1)
                return
        heartbeat = config.live_progress.heartbeat_interval
        deadline = time.monotonic() + config.live_progress.max_stream_duration
        while time.monotonic() < deadline:
            try:
                change, view = await asyncio.wait_for(queue.get(), timeout=heartbeat)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keepalive\n\n"
                continue
            if change is not None:
                seq += 1
                yield sse("transition", {**change, "replayed": False}, seq)
            seq += 1
            yield sse("status", view, seq)
            if view.get("state") in FINAL:
                seq += 1
                yield sse("end", view, seq)
                return
    finally:
        unwatch()


@router.get("/videos/{video_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}},
          "description": "server-sent events: transition, status, end (see the module docstring)"},
    **responses(400, 401, 403, 404, 503)})
async def video_events(video_id: str, request: Request, svc: Svc,
                       principal: Principal = Depends(require())) -> StreamingResponse:
    """The video's stage transitions as server-sent events: what happened so far, then live."""
    video_id = video_id_param(video_id)
    state = svc.access
    if await run_in_threadpool(state.entry, video_id) is None:     # just created: fold what the log has now
        await run_in_threadpool(state.catalog.sync, CATALOG_SYNC_TIMEOUT)
    # the video's owner, a member of its workspace, or ops: 404 unknown, 403 anyone else
    await run_in_threadpool(state.check_reader, principal, video_id, (OPS,))
    await run_in_threadpool(svc.ready_status)
    return StreamingResponse(event_stream(request, svc, video_id), media_type="text/event-stream",
                             headers=SSE_HEADERS)
