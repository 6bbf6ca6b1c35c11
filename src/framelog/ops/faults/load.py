"""The load generator: uploads and playback events through the API, and the ledger of what was acknowledged.

Two threads. The uploader uploads a small clip again and again through the
resumable protocol (framelog's own upload client, which retries and resumes);
an upload is acknowledged when the client saw its last byte accepted. The
viewer opens a playback session on each published video (``GET /v1/stream``
as its owner) and posts batches of ``progress`` events; a batch is retried,
the very same events, until the API answers 202 (then its event ids go in the
ledger) or ``give_up_after`` passes (then they are "unconfirmed": they may or
may not have reached the broker). Every answer of the API is counted by
status, and a 5xx without ``Retry-After`` is noted: an API that cannot hand an
event to the broker must say 503 and when to come back, never 202. A third
thread issues a share link on a published video and revokes it at once, every
``revoke_interval`` seconds: narrowing access purges the video from the edges
(a ``CacheInvalidate`` on ``cdn.commands``), so purges meet the faults too and
the suite's "every CDN command applied" judges them.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from framelog.core.backoff import Backoff
from framelog_client.upload import UploadError, upload_resumable_outcome

EVENT_TYPE = "progress"            # the only type the generator sends: the checks count it per video
BATCH = 10                          # events per request; one session may post 5 per second (playback_trust)
SESSIONS = 4                        # videos watched at once
# the resumable client's own read timeout waits 15 minutes for a final PATCH; here a request the API
# holds longer than this is a finding (it should have answered 503), and the next upload goes on
UPLOAD_TIMEOUT = httpx.Timeout(10.0, read=120.0)


@dataclass
class Ledger:
    """What the API acknowledged, and what it answered, as the generator saw it."""

    started: float = field(default_factory=time.monotonic)
    uploads: dict[str, float] = field(default_factory=dict)              # video id -> acknowledged at (s)
    upload_failures: list[tuple[float, str]] = field(default_factory=list)
    events: dict[str, set[str]] = field(default_factory=dict)            # video id -> acknowledged event ids
    unconfirmed: dict[str, set[str]] = field(default_factory=dict)       # given up: may or may not have landed
    answers: Counter = field(default_factory=Counter)                    # "events 202", "upload 503", ...
    bare_5xx: list[tuple[float, str]] = field(default_factory=list)      # 5xx without Retry-After
    acks: list[tuple[float, str, int]] = field(default_factory=list)     # (t, "upload"|"events", n) for the timeline
    revoked: list[tuple[float, str]] = field(default_factory=list)       # (t, video id) of each share link revoked
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.started

    def answer(self, kind: str, response: httpx.Response | None, error: str | None = None) -> None:
        with self.lock:
            if response is None:
                self.answers[f"{kind} no answer"] += 1
                return
            self.answers[f"{kind} {response.status_code}"] += 1
            if response.status_code >= 500 and "Retry-After" not in response.headers:
                self.bare_5xx.append((self.now(), f"{kind} {response.status_code}: {response.text[:200]}"))

    def acknowledged_events(self) -> int:
        return sum(len(ids) for ids in self.events.values())


class LoadGenerator:
    """Uploads every ``upload_interval`` seconds and ``SESSIONS`` viewers posting events, until stopped."""

    def __init__(self, api_url: str, clip: Path, *, owner_token: str, upload_interval: float = 10.0,
                 event_interval: float = 2.0, give_up_after: float = 300.0, revoke_interval: float = 15.0):
        self.api_url = api_url.rstrip("/")
        self.clip = clip
        self.owner = {"Authorization": f"Bearer {owner_token}"}
        self.owner_token = owner_token
        self.upload_interval = upload_interval
        self.event_interval = event_interval
        self.give_up_after = give_up_after
        self.revoke_interval = revoke_interval
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._uploads, name="faults-uploader", daemon=True),
                         threading.Thread(target=self._viewers, name="faults-viewer", daemon=True),
                         threading.Thread(target=self._revocations, name="faults-revoker", daemon=True)]
        self._published: list[str] = []
        self.errors: list[str] = []

    def start(self) -> LoadGenerator:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float) -> None:
        """Stop generating; a batch being retried is finished first (acknowledged or given up)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    # ---------------------------------------------------------------- uploads
    def upload_once(self) -> str | None:
        """One upload through the resumable protocol; its video id once acknowledged, None if it failed."""
        try:
            with httpx.Client(timeout=UPLOAD_TIMEOUT) as http:
                outcome = upload_resumable_outcome(self.api_url, self.clip, token=self.owner_token, max_retries=20,
                                                   backoff_max=5.0, http=http)
        except (UploadError, httpx.HTTPError, OSError) as exc:
            with self.ledger.lock:
                self.ledger.upload_failures.append((self.ledger.now(), f"{type(exc).__name__}: {exc}"))
            return None
        with self.ledger.lock:
            self.ledger.uploads[outcome.video_id] = self.ledger.now()
            self.ledger.acks.append((self.ledger.now(), "upload", 1))
        return outcome.video_id

    def warm_up(self, timeout: float) -> str:
        """One video uploaded and published before any fault, so the viewers have something to watch."""
        deadline = time.monotonic() + timeout
        video_id = None
        with httpx.Client(base_url=self.api_url, timeout=15) as http:
            while time.monotonic() < deadline:
                if video_id is None:
                    video_id = self.upload_once()
                else:
                    try:
                        r = http.get(f"/videos/{video_id}", headers=self.owner)
                        state = r.json().get("state") if r.status_code == 200 else None
                    except httpx.HTTPError:
                        state = None
                    if state == "ready":
                        return video_id
                    if state == "failed":
                        raise RuntimeError(f"the warm-up video {video_id} failed: {r.json().get('error')}")
                time.sleep(1.0)          # polling interval of a condition with a deadline
        raise RuntimeError(f"no warm-up video published within {timeout:.0f}s (uploaded: {video_id})")

    def _uploads(self) -> None:
        while not self._stop.is_set():
            self.upload_once()
            self._stop.wait(self.upload_interval)

    # ---------------------------------------------------------------- playback events
    def _viewers(self) -> None:
        sessions: dict[str, str] = {}
        position: Counter = Counter()
        with httpx.Client(base_url=self.api_url, timeout=15) as http:
            while not self._stop.is_set():
                if len(sessions) < SESSIONS:
                    self._open_sessions(http, sessions)
                for video_id, session in list(sessions.items()):
                    if self._stop.is_set():
                        break
                    position[video_id] += 1
                    if not self._post_batch(http, video_id, session, position[video_id]):
                        sessions.pop(video_id, None)          # the session is no good: open another
                self._stop.wait(self.event_interval)

    def _open_sessions(self, http: httpx.Client, sessions: dict[str, str]) -> None:
        with self.ledger.lock:
            candidates = [v for v in self.ledger.uploads if v not in sessions]
        for video_id in candidates[:SESSIONS - len(sessions)]:
            try:
                status = http.get(f"/videos/{video_id}", headers=self.owner)
                if status.status_code != 200 or status.json().get("state") != "ready":
                    continue
                stream = http.get("/v1/stream", params={"video_id": video_id}, headers=self.owner)
            except httpx.HTTPError:
                return
            self.ledger.answer("stream", stream)
            if stream.status_code == 200:
                sessions[video_id] = stream.json()["session"]

    def _post_batch(self, http: httpx.Client, video_id: str, session: str, n: int) -> bool:
        """Post one batch until 202 (True) or a refusal of the session / giving up (False)."""
        now_ms = int(time.time() * 1000)
        batch: list[dict[str, Any]] = [
            {"event_id": str(uuid.uuid4()), "type": EVENT_TYPE, "client_time": now_ms + i,
             "position_seconds": float(n), "watch_time_delta_seconds": 0.2, "rendition": "360p", "device": "web",
             "duration_seconds": 3600.0} for i in range(BATCH)]
        ids = {e["event_id"] for e in batch}
        deadline = time.monotonic() + self.give_up_after
        backoff = Backoff(0.5, 5.0, jitter=0.5)
        attempt = 0
        while True:
            response: httpx.Response | None
            try:
                response = http.post("/v1/events", json={"events": batch}, headers={"X-Playback-Session": session})
            except httpx.HTTPError:
                response = None
            self.ledger.answer("events", response)
            if response is not None and response.status_code == 202:
                with self.ledger.lock:
                    self.ledger.events.setdefault(video_id, set()).update(ids)
                    self.ledger.acks.append((self.ledger.now(), "events", len(ids)))
                return True
            if response is not None and response.status_code in (400, 401, 403, 404):
                self.errors.append(f"events for {video_id} refused: {response.status_code} {response.text[:200]}")
                self._unconfirmed(video_id, ids)
                return False
            attempt += 1
            if time.monotonic() >= deadline:
                self._unconfirmed(video_id, ids)
                return False
            retry_after = float(response.headers.get("Retry-After", 0) or 0) if response is not None else 0.0
            time.sleep(min(max(backoff.jittered(attempt), retry_after), 10.0))   # retry pacing, not synchronisation

    # ---------------------------------------------------------------- share links revoked (edge purges)
    def _revocations(self) -> None:
        shared: set[str] = set()
        turn = 0
        with httpx.Client(base_url=self.api_url, timeout=15) as http:
            while not self._stop.wait(self.revoke_interval):
                with self.ledger.lock:
                    uploads = list(self.ledger.uploads)
                turn += 1
                k = turn % max(len(uploads), 1)
                for video_id in uploads[k:] + uploads[:k]:       # starting from another video each turn
                    try:
                        if self._revoke_one(http, video_id, shared):
                            break
                    except httpx.HTTPError:
                        break                 # the API is away: next turn

    def _revoke_one(self, http: httpx.Client, video_id: str, shared: set[str]) -> bool:
        """Open ``video_id`` to share links (once), issue one and revoke it; True once revoked (False: the
        video is not published yet, or the API refused, which the answers count)."""
        status = http.get(f"/videos/{video_id}", headers=self.owner)
        if status.status_code != 200 or status.json().get("state") != "ready":
            return False
        if video_id not in shared:
            opened = http.patch(f"/videos/{video_id}/access", json={"visibility": "share_link"}, headers=self.owner)
            self.ledger.answer("access", opened)
            if opened.status_code != 200:
                return False
            shared.add(video_id)
        link = http.post(f"/videos/{video_id}/share", json={}, headers=self.owner)
        self.ledger.answer("share", link)
        if link.status_code != 201:
            return False
        revoked = http.delete(f"/videos/{video_id}/share/{link.json()['token_id']}", headers=self.owner)
        self.ledger.answer("revoke", revoked)
        if revoked.status_code != 204:
            return False
        with self.ledger.lock:
            self.ledger.revoked.append((self.ledger.now(), video_id))
        return True

    def _unconfirmed(self, video_id: str, ids: set[str]) -> None:
        with self.ledger.lock:
            self.ledger.unconfirmed.setdefault(video_id, set()).update(ids)
