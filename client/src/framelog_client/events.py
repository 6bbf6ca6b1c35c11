"""The events producer: a client of ``POST /v1/events`` for server-side producers: batching, gzip, retries.

::

    client = AnalyticsClient("http://127.0.0.1:18000")
    client.track({"type": "share", "video_id": "v1", "session_id": "s1", "viewer_id": "u1"})
    client.flush(timeout=10)
    client.close()

The API believes events only with a credential: a player's playback session
(``headers={"X-Playback-Session": <GET /v1/stream's "session">}``; video,
session and viewer ids are then taken from it), or for a server-side
producer a token with the ``events:write`` scope (``Authorization``).

``track`` copies the event, fills ``event_id`` (a UUID4) and ``client_time``
(now, epoch ms) when missing, and queues it; the id and time are fixed at
that moment, so every retry resends the very same event and the sink counts it
once. A background thread sends batches of up to ``batch_size`` events,
gzip-compressed, as soon as a batch is full or its oldest event has waited
``flush_interval`` seconds (or ``flush`` is called).

Retries, with exponential backoff (``backoff_base`` x 2^n, capped at
``backoff_max``, jittered, at least any ``Retry-After``), up to
``max_retries`` times per batch: connection errors and timeouts, 408, 429 and
5xx (503 = the broker did not acknowledge). Not retried:

* 400: the server names the one bad event (``event_index``); that event is
  logged and dropped with the server's reason and the rest of the batch is
  sent again (the server rejects a batch as a whole). A 400 that names no
  event drops the batch.
* 413: the batch is split in halves and each half sent (a single event that
  is too large is dropped).
* other 4xx: the batch is dropped.

Dropped events are counted in ``stats`` and the most recent ones kept in
``dropped`` as (event_id, reason); ``on_drop(event, reason)`` is called too
if given. A full queue (``max_queue``) drops the new event the same way.
"""
from __future__ import annotations

import collections
import gzip
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

import httpx

from framelog_client.backoff import Backoff
from framelog_client.errors import error_of

log = logging.getLogger(__name__)

__all__ = ["AnalyticsClient", "ClientStats", "RETRYABLE_STATUSES"]

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
EVENTS_PATH = "/v1/events"


@dataclass
class ClientStats:
    tracked: int = 0          # events accepted by track()
    sent: int = 0             # events the server acknowledged (202)
    dropped: int = 0          # events given up on (400, retries exhausted, queue full, closed)
    requests: int = 0         # HTTP attempts
    retries: int = 0          # attempts that were retries of a failed one
    transport_errors: int = 0  # attempts that never got an HTTP answer (refused, reset, timeout)


class AnalyticsClient:
    """Batches events to ``POST {base_url}/v1/events`` from a background thread; thread-safe."""

    def __init__(self, base_url: str, batch_size: int = 100, flush_interval: float = 1.0, max_retries: int = 5, *,
                 timeout: float = 10.0, max_queue: int = 100_000, backoff_base: float = 0.2,
                 backoff_max: float = 10.0, compress: bool = True, headers: Optional[Mapping[str, str]] = None,
                 http_client: Optional[httpx.Client] = None, transport: Optional[httpx.BaseTransport] = None,
                 on_drop: Optional[Callable[[Dict[str, Any], str], None]] = None, keep_dropped: int = 1000):
        """``http_client``: an httpx.Client to use (e.g. FastAPI's TestClient; not closed by us);
        otherwise one is made for ``base_url`` with ``transport`` if given."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.max_queue = max_queue
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.compress = compress
        self.on_drop = on_drop
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(
            timeout=timeout, transport=transport, headers=dict(headers or {}))
        self._extra_headers = dict(headers or {}) if http_client is not None else {}
        self._url = (self.base_url + EVENTS_PATH) if self._own_http or self.base_url else EVENTS_PATH

        self.stats = ClientStats()
        self.dropped: Deque[Tuple[str, str]] = collections.deque(maxlen=keep_dropped)
        self._cond = threading.Condition()
        self._queue: Deque[Tuple[float, Dict[str, Any]]] = collections.deque()
        self._pending = 0           # queued + being sent
        self._flushing = 0          # flush() calls waiting: send partial batches at once
        self._closing = False
        self._abort = threading.Event()   # close(): stop backing off, drop what is left
        self._thread = threading.Thread(target=self._run, name="analytics-client", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ public API

    def track(self, event: Mapping[str, Any]) -> Optional[str]:
        """Queue a copy of ``event``; returns its event_id (None when the queue was full and it was dropped)."""
        if not isinstance(event, Mapping):
            raise TypeError(f"event must be a mapping, got {type(event).__name__}")
        ev = dict(event)
        if "type" not in ev:
            raise ValueError("event has no 'type'")
        if ev.get("event_id") is None:
            ev["event_id"] = str(uuid.uuid4())
        if ev.get("client_time") is None and ev.get("timestamp") is None:
            ev["client_time"] = time.time_ns() // 1_000_000
        if isinstance(ev.get("client_time"), datetime):
            ev["client_time"] = ev["client_time"].isoformat()
        json.dumps(ev, allow_nan=False)            # fail here, in the caller, not later in the sender thread
        with self._cond:
            if self._closing:
                raise RuntimeError("AnalyticsClient is closed")
            self.stats.tracked += 1
            if len(self._queue) >= self.max_queue:
                full = True
            else:
                full = False
                self._queue.append((time.monotonic(), ev))
                self._pending += 1
                self._cond.notify_all()
        if full:
            self._drop([ev], f"queue full ({self.max_queue} events)")
            return None
        return ev["event_id"]

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what is queued now and wait until every tracked event was sent or dropped; False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._pending == 0, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (up to ``timeout``), then stop the sender; events still unsent are dropped. True if all went."""
        drained = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._abort.set()
        self._thread.join(timeout=max(timeout, 1.0))
        with self._cond:
            leftover = [ev for _, ev in self._queue]
            self._queue.clear()
            self._pending -= len(leftover)
        if leftover:
            self._drop(leftover, "client closed before the event was sent")
        if self._own_http:
            self._http.close()
        return drained and not leftover

    @property
    def pending(self) -> int:
        """Events tracked and not yet sent or dropped."""
        with self._cond:
            return self._pending

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ sender thread

    def _next_batch(self) -> Optional[List[Dict[str, Any]]]:
        with self._cond:
            while True:
                if self._queue:
                    if len(self._queue) >= self.batch_size or self._flushing or self._closing:
                        break
                    left = self._queue[0][0] + self.flush_interval - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            n = min(self.batch_size, len(self._queue))
            return [self._queue.popleft()[1] for _ in range(n)]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - the sender thread must survive anything
                log.exception("analytics client: unexpected error sending a batch")
                self._drop(batch, f"unexpected error: {exc}")
            finally:
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()

    def _body(self, events: List[Dict[str, Any]]) -> Tuple[bytes, Dict[str, str]]:
        body = json.dumps({"events": events}, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if self.compress:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def _send(self, events: List[Dict[str, Any]]) -> None:
        """Deliver ``events`` (sent, or dropped with a reason); retries the retryable failures."""
        events = list(events)
        attempt = 0
        while events:
            if self._abort.is_set():
                self._drop(events, "client closed while retrying")
                return
            body, headers = self._body(events)
            self.stats.requests += 1
            if attempt:
                self.stats.retries += 1
            retry_after = 0.0
            try:
                resp = self._http.post(self._url, content=body, headers=headers)
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    self.stats.sent += len(events)
                    return
                info = error_of(resp)
                reason = info.get("message") or resp.text[:200] or resp.reason_phrase
                if status == 400:
                    idx = info.get("event_index")
                    if isinstance(idx, int) and 0 <= idx < len(events):
                        self._drop([events[idx]], f"400 {info.get('code', '')}: {reason}".strip())
                        del events[idx]
                        attempt = 0
                        continue
                    self._drop(events, f"400: {reason}")
                    return
                if status == 413:
                    if len(events) == 1:
                        self._drop(events, f"413: {reason}")
                        return
                    half = len(events) // 2
                    self._send(events[:half])
                    self._send(events[half:])
                    return
                if status not in RETRYABLE_STATUSES:
                    self._drop(events, f"{status}: {reason}")
                    return
                problem = f"{status}: {reason}"
                retry_after = _retry_after(resp)
            attempt += 1
            if attempt > self.max_retries:
                self._drop(events, f"gave up after {self.max_retries} retries; last: {problem}")
                return
            delay = Backoff(self.backoff_base, self.backoff_max).delay(attempt) * (0.5 + random.random() / 2)
            delay = max(delay, min(retry_after, self.backoff_max))
            log.info("analytics client: %s; retry %d/%d in %.2fs", problem, attempt, self.max_retries, delay)
            self._abort.wait(delay)

    def _drop(self, events: List[Dict[str, Any]], reason: str) -> None:
        for ev in events:
            log.warning("analytics client: dropping event %s (%s): %s", ev.get("event_id"), ev.get("type"), reason)
            self.dropped.append((str(ev.get("event_id")), reason))
            if self.on_drop is not None:
                try:
                    self.on_drop(ev, reason)
                except Exception:  # noqa: BLE001
                    log.exception("analytics client: on_drop callback failed")
        with self._cond:
            self.stats.dropped += len(events)


def _retry_after(resp: httpx.Response) -> float:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0
