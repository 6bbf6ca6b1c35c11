"""`framelog demo`: the main job end to end on the local stack.

1. start the API (with the embedded analytics sink) and the pipeline worker;
2. generate a clip with ffmpeg and upload it through the resumable API;
3. follow its six stages from the stage-transition log until it is ready;
4. play it the way a player does: ``GET /v1/stream`` (refused anonymously,
   the owner gets signed edge URLs), master, playlists and segments through
   the edge (its X-Edge / X-Cache-Status), the key with the playback grant
   (refused without), every rendition decrypted and decoded with ffmpeg;
5. share it: a share link, opened by one real viewer in headless chromium
   through the web player, whose own playback events go to ClickHouse;
6. simulated viewers open the share link through ``GET /v1/stream`` (each
   gets the playback session that carries its view) and post their events
   (heartbeats, likes, shares, rebuffers) with that session;
7. query the analytics (the seed's get_video_analytics) from ClickHouse.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from framelog.clients.credentials import bearer
from framelog.clients.edge_fetch import download_hls
from framelog.core.config import Config
from framelog.core.ids import validate_video_id
from framelog.demo.viewer import (
    PLAY_SECONDS,
    BrowserError,
    BrowserSession,
    missing_requirements,
    play_share_link,
    player_url,
)
from framelog.processors.identity import ANALYTICS_READ, VIDEOS_WRITE
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import MASTER_NAME, write_local_playlist
from framelog.stack.services import ApiService, WorkerService
from framelog_client.events import AnalyticsClient
from framelog_client.upload import upload_resumable

PIPELINE_DEADLINE = 900.0
ANALYTICS_DEADLINE = 120.0
WORKER_START_TIMEOUT = 300.0
VIEWERS = (("viewer-us-1", "US"), ("viewer-us-2", "US"), ("viewer-de-1", "DE"), ("viewer-gb-1", "GB"))
DEMO_OWNER = "demo"               # uploads the clip (private): plays it as its owner, then shares it


def say(text: str) -> None:
    print(text, flush=True)


def start_services(config: Config) -> str:
    api, worker = ApiService(config), WorkerService(config)
    launched = {api.name: api.launch(), worker.name: worker.launch()}
    say(f"api      {api.finish_start(launched['api'])}; {api.address}; log {api.log_path}")
    say(f"worker   {worker.finish_start(launched['worker'], WORKER_START_TIMEOUT)}; log {worker.log_path}")
    return api.address


def follow_pipeline(api_url: str, video_id: str, owner: dict[str, str]) -> dict[str, Any]:
    """Print each stage change as the status table sees it; return the final status."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + PIPELINE_DEADLINE
    with httpx.Client(base_url=api_url, timeout=15, headers=owner) as http:
        while time.monotonic() < deadline:
            r = http.get(f"/videos/{video_id}")
            status = r.json() if r.status_code == 200 else {}
            for stage, info in (status.get("stages") or {}).items():
                line = f"{info.get('state')} (attempt {info.get('attempt')})"
                if seen.get(stage) != line and info.get("state") != "progress":
                    seen[stage] = line
                    extra = f" in {info['duration_ms'] / 1000:.1f}s" if info.get("duration_ms") else ""
                    err = f": {info.get('error_type')}: {info.get('error_message')}" if info.get("error_type") else ""
                    say(f"  {stage:<22} {line}{extra}{err}")
            if status.get("state") in ("ready", "failed"):
                return status
            time.sleep(1.0)          # polling interval of a condition with a deadline
    raise TimeoutError(f"video {video_id} not processed within {PIPELINE_DEADLINE:.0f}s")


def demo_token(config: Config, *scopes: str) -> str:
    """A token of the demo owner, signed with the stack's keyring (what a login would hand out)."""
    from framelog.processors.identity import Keyring, mint_token

    return mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), DEMO_OWNER, scopes=list(scopes))


def owner_headers(config: Config) -> dict[str, str]:
    return bearer(demo_token(config, VIDEOS_WRITE))


def analyst_headers(config: Config) -> dict[str, str]:
    """An analyst's token (analytics:read): POST /v1/sql; the demo owner reads its own analytics anyway."""
    from framelog.processors.identity import Keyring, mint_token

    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                             "demo-analyst", scopes=[ANALYTICS_READ]))


def viewer_headers(config: Config, user: str) -> dict[str, str]:
    """A signed-in viewer's token (no scope: it may watch what its user may watch)."""
    from framelog.processors.identity import Keyring, mint_token

    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), user, scopes=[]))


def verify_playable(api_url: str, video_id: str, owner: dict[str, str]) -> list[str]:
    """Fetch the HLS through the owner's signed edge URLs and the key with the grant; decode every rendition."""
    work = Path(tempfile.mkdtemp(prefix="framelog-demo-"))
    try:
        anonymous = httpx.get(f"{api_url}/v1/stream", params={"video_id": video_id}, timeout=10)
        stream = httpx.get(f"{api_url}/v1/stream", params={"video_id": video_id}, headers=owner, timeout=10)
        stream.raise_for_status()
        info = stream.json()
        say(f"  stream API: {anonymous.status_code} for an anonymous viewer of the private video, "
            f"{stream.status_code} for its owner (edge {info['cdn']['primary']}, fallback {info['cdn']['fallback']})")
        say(f"  master: {info['manifest_url']}")
        fetched = download_hls(info["manifest_url"], work / "hls")
        for line in fetched.summary():
            say(f"    {line}")
        grant = info["encryption"]["grant"]
        no_grant = httpx.get(f"{api_url}/v1/keys/{video_id}", timeout=10)
        key = httpx.get(f"{api_url}/v1/keys/{video_id}?{grant}", headers=owner, timeout=10)
        key.raise_for_status()
        say(f"  key endpoint: {no_grant.status_code} without a grant, {key.status_code} with the owner's "
            f"({len(key.content)}-byte AES-128 key)")
        (work / "key").write_bytes(key.content)
        renditions = []
        for variant in fetched.variants():
            name = Path(variant).parent.name
            local = write_local_playlist(fetched.root / variant, work / "key", work / f"{name}.m3u8")
            fc.run_ffmpeg(fc.decode_hls_args(local))
            say(f"  {name:<6} decrypts and decodes end to end")
            renditions.append(name)
        return renditions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def share_link(api_url: str, video_id: str, owner: dict[str, str]) -> str:
    """The owner opens the video to share links (PATCH access) and issues one; returns its token."""
    with httpx.Client(base_url=api_url, headers=owner, timeout=15) as http:
        http.patch(f"/videos/{video_id}/access", json={"visibility": "share_link"}).raise_for_status()
        r = http.post(f"/videos/{video_id}/share", json={})
        r.raise_for_status()
    return r.json()["token"]


def browser_viewer(config: Config, api_url: str, video_id: str, token: str) -> BrowserSession | None:
    """One real viewer plays the share link in chromium; None (said why) if no browser can run here."""
    why = missing_requirements()
    if why:
        say(f"  SKIPPED the browser viewer: {why}")
        return None
    shot = config.stack.state_dir / "demo" / f"player-{video_id}.png"
    session = play_share_link(player_url(api_url, video_id, token), shot)
    switches = ", ".join(f"{s.get('fromQuality') or '-'}->{s.get('toQuality')} ({s.get('reason')})"
                         for s in session.switches)
    say(f"  session {session.session_id}: {session.fragments} segments through {session.manifest_url.split('/s/')[0]}, "
        f"quality {session.quality}; switches: {switches or 'none'}")
    say(f"  sent while playing: {', '.join(sorted(set(session.sent)))}; by sendBeacon on leaving: "
        f"{', '.join(session.beaconed) or 'nothing'}")
    say(f"  screenshot after {PLAY_SECONDS:.0f}s: {session.screenshot}")
    return session


def open_session(config: Config, api_url: str, video_id: str, share: str, viewer: str, country: str
                 ) -> dict[str, Any]:
    """A signed-in viewer opens the share link: ``GET /v1/stream`` records the view_start and issues the session.

    ``country=`` only steers the edge choice: analytics take the country from a
    trusted proxy's header (none here), so the demo's viewers have none.
    """
    r = httpx.get(f"{api_url}/v1/stream", params={"video_id": video_id, "share": share, "country": country},
                  headers=viewer_headers(config, viewer), timeout=15)
    r.raise_for_status()
    return r.json()


def simulate_viewers(config: Config, api_url: str, video_id: str, share: str, duration: float) -> int:
    """Each viewer: a stream session, heartbeats, a quality switch, a rebuffer, likes/shares, the end."""
    sessions = 0
    for i, (viewer, country) in enumerate(VIEWERS):
        stream = open_session(config, api_url, video_id, share, viewer, country)
        client = AnalyticsClient(api_url, headers={"X-Playback-Session": stream["session"]})
        now = int(time.time() * 1000)

        def track(t: str, at: float, **fields: Any) -> None:
            # video, session and viewer ids come from the playback session
            base = {"type": t, "client_time": now + int(at * 1000),  # noqa: B023 - called in this iteration only
                    "position_seconds": min(at, duration),
                    "watch_time_delta_seconds": 0.0, "rendition": "720p", "device": "web",
                    "duration_seconds": duration}
            base.update(fields)
            client.track(base)  # noqa: B023 - called in this iteration only

        # the stream API recorded the view_start; the startup time rides on the first heartbeat
        first = "progress" if stream["analytics"]["stream_start_recorded"] else "view_start"
        track(first, 0, startup_time_ms=350 + 100 * i)
        for t in range(5, int(duration) + 1, 5):
            track("progress", t, watch_time_delta_seconds=5.0, rendition="720p" if t < 10 else "480p")
            if t == 10:
                track("quality_switch", t, from_quality="720p", to_quality="480p", bandwidth=1_800_000,
                      buffer_level=3.5, reason="low_buffer")
                track("rebuffer_start", t)
                track("rebuffer_end", t + 0.8, rebuffer_duration_ms=800)
        if i % 2 == 0:
            track("like", duration / 2)
        if i == 0:
            track("share", duration / 2)
        track("ended", duration, position_seconds=duration)
        if not client.flush(30):
            raise RuntimeError(f"playback events of {viewer} not accepted: {client.stats}")
        client.close()
        sessions += 1
    return sessions


def wait_for_analytics(api_url: str, video_id: str, views: int, completed: int,
                       owner: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + ANALYTICS_DEADLINE
    with httpx.Client(base_url=api_url, timeout=15, headers=owner) as http:
        while time.monotonic() < deadline:
            result = http.get(f"/v1/videos/{video_id}/analytics").json()
            if result.get("total_views", 0) >= views and result.get("completed_views", 0) >= completed:
                return result
            time.sleep(0.5)
    raise TimeoutError(f"analytics for {video_id} did not reach {views} views ({completed} completed) "
                       f"in {ANALYTICS_DEADLINE:.0f}s")


_SESSION_SQL = {       # the session's values are bound server-side
    "playback_events": "SELECT type, count() FROM playback_events "
                       "WHERE video_id = {video:String} AND session_id = {session:String} GROUP BY type ORDER BY type",
    "quality_switches": "SELECT reason, count() FROM quality_switches "
                        "WHERE video_id = {video:String} AND session_id = {session:String} "
                        "GROUP BY reason ORDER BY reason",
}


def session_events(api_url: str, video_id: str, session: BrowserSession,
                   analyst: dict[str, str]) -> dict[str, list[list[Any]]]:
    """The browser session's rows in ClickHouse: events by type, quality switches by reason."""
    params = {"video": validate_video_id(video_id), "session": session.session_id}
    out = {}
    for table, sql in _SESSION_SQL.items():
        r = httpx.post(f"{api_url}/v1/sql", timeout=30, json={"sql": sql, "parameters": params}, headers=analyst)
        r.raise_for_status()
        out[table] = r.json()["rows"]
    return out


def run_demo(config: Config) -> int:
    say("== 1. services")
    api_url = start_services(config)

    say("== 2. a clip goes in")
    clip = config.stack.state_dir / "demo" / "sample.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    fc.run_ffmpeg(fc.sample_clip_args(clip))
    video_id = upload_resumable(api_url, clip, token=demo_token(config, VIDEOS_WRITE))
    say(f"  uploaded {clip.name} ({clip.stat().st_size:,} bytes) as video {video_id}")

    say("== 3. the pipeline (events on video.stage-transitions)")
    started = time.monotonic()
    status = follow_pipeline(api_url, video_id, owner_headers(config))
    if status.get("state") != "ready":
        say(f"  FAILED: {json.dumps(status.get('error'))}")
        return 1
    say(f"  ready in {time.monotonic() - started:.1f}s")

    say("== 4. encrypted HLS through the edge (GET /v1/stream as the owner: signed edge URLs)")
    owner = owner_headers(config)
    renditions = verify_playable(api_url, video_id, owner)
    say(f"  s3://{config.object_storage.bucket}/hls/{video_id}/{MASTER_NAME} with {', '.join(renditions)}")

    say("== 5. a share link, played in chromium through the web player (GET /player/{id}?share=)")
    token = share_link(api_url, video_id, owner)
    url = player_url(api_url, video_id, token)
    say(f"  POST /videos/{video_id}/share -> a share link (visibility now share_link)")
    try:
        browser = browser_viewer(config, api_url, video_id, token)
    except BrowserError as exc:
        say(f"  FAILED: the browser viewer: {exc}")
        return 1

    say("== 6. simulated viewers (GET /v1/stream for a session, events to POST /v1/events → playback.events)")
    sessions = simulate_viewers(config, api_url, video_id, token, duration=24.0)
    say(f"  {sessions} sessions sent")

    say("== 7. analytics from ClickHouse (GET /v1/videos/{id}/analytics)")
    real = 1 if browser else 0
    views = sessions + 1 + real          # + the owner's GET /v1/stream (its view_start) + the browser's
    say(f"  waiting for {views} views: {sessions} simulated, the owner's stream request"
        + (", the browser's" if browser else ""))
    result = wait_for_analytics(api_url, video_id, views, sessions + real, owner)
    if browser:
        for table, rows in session_events(api_url, video_id, browser, analyst_headers(config)).items():
            say(f"  browser session in {table}: " + ", ".join(f"{t} x{n}" for t, n in rows))
    json.dump(result, sys.stdout, indent=2)
    say("")
    say("")
    say(f"Watch it yourself (the share link; while the demo's API runs): {url}")
    say(f"Try: framelog sql --param v={video_id} "
        "\"SELECT type, count() FROM playback_events WHERE video_id = {v:String} GROUP BY type\"")
    say(f"     framelog status {video_id}      framelog events tail video.assets --from-beginning --limit 1")
    say("     framelog services status        framelog services stop      framelog stack down")
    return 0
