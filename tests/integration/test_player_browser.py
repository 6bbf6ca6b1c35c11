"""The web player in Debian's chromium (playwright-core), against the whole local stack.

One short clip goes through the real pipeline (encrypted HLS, two renditions
of two 10 s segments and an audio rendition of its own) and is played by
/player/{id} through the nginx edges: it plays (a screenshot shows a frame), a
slow top rendition makes the seed's ABR controller step down and the
quality_switch lands in ClickHouse,
a stopped primary edge hands playback to the fallback, and a purge through
cdn.commands removes what the edge cached. Every wait is a condition with a
deadline.
"""
from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from framelog.core.config import get_config
from framelog.demo.browser import Browser, missing_requirements
from framelog.processors import tier_ledger as ledger
from framelog.processors.cdn_routing import edge_base_url
from framelog.processors.identity import Keyring, mint_token
from framelog.schemas.events import new_event
from framelog.stack.services import ApiService, WorkerService
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog_client.upload import upload_resumable
from tests.integration.support import running, wait_for
from tests.integration.support.decoding import assert_decodes
from tests.integration.support.screenshots import frame_stddev
from tests.media.support import clips

pytestmark = pytest.mark.integration

PIPELINE_DEADLINE = 420.0
PLAY_DEADLINE = 60.0
SECOND_SEGMENT_DELAY = 8.0   # seconds the second segments are held in the fallback test
TOP_DELAY = 30.0          # seconds the top rendition's segments are held: longer than the clip's first segment
ANALYTICS_DEADLINE = 60.0
SESSION_ID = re.compile(r"^[0-9a-f-]{32,36}$")   # a UUID, with or without dashes

# Two renditions (480p, 360p): the ladder never goes above the 854x480 source.
CLIP = {"width": 854, "height": 480, "duration": 20}


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    why = missing_requirements()
    if why:
        pytest.fail(f"browser tests cannot run: {why}")


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    service = ApiService(config)
    was_running = service.is_running()
    service.start(timeout=120)
    yield service.address
    if not was_running:
        service.stop()


@pytest.fixture(scope="module")
def worker(stack, config):
    with running(WorkerService(config), timeout=300) as service:
        yield service


@pytest.fixture(scope="module")
def video_id(api, worker, config, tmp_path_factory) -> str:
    clip = clips.video(tmp_path_factory.mktemp("clip") / "player.mp4", **CLIP)
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                       "player-tests", scopes=["videos:write"])
    owner = {"Authorization": f"Bearer {token}"}
    vid = upload_resumable(api, clip, token=token, visibility="public")

    def state() -> str | None:
        r = httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10)
        return r.json().get("state") if r.status_code == 200 else None

    final = wait_for(lambda: state() in ("ready", "failed") and state(), f"video {vid} processed", PIPELINE_DEADLINE,
                     step=1.0)
    assert final == "ready", httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10).text
    # the stream API answers once the published asset reached its catalogue
    wait_for(lambda: httpx.get(f"{api}/v1/stream", params={"video_id": vid}, timeout=10).status_code == 200,
             "the stream API to know the video", 60)
    return vid


@pytest.fixture
def browser():
    with Browser() as b:
        yield b


def edge_base(config, provider: str) -> str:
    return edge_base_url(provider, config.cdn, config.stack.host) + "/"


def open_player(browser: Browser, api: str, video_id: str, country: str = "US") -> dict:
    browser.goto(f"{api}/player/{video_id}?country={country}")
    return browser.wait("window.framelogPlayer && (window.framelogPlayer.ready || window.framelogPlayer.error) "
                        "&& {ready: framelogPlayer.ready, error: framelogPlayer.error}", PLAY_DEADLINE)


def sql(api: str, statement: str, **parameters: Any) -> list[list[Any]]:
    """POST /v1/sql as an analyst, with the values bound server-side ({name:Type} in the statement)."""
    analyst = mint_token(get_config().auth, Keyring(get_config().auth, get_config().stack.state_dir),
                         "player-tests-analyst", scopes=["analytics:read"])
    r = httpx.post(f"{api}/v1/sql", json={"sql": statement, "parameters": parameters}, timeout=30,
                   headers={"Authorization": f"Bearer {analyst}"})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def session_of(browser: Browser) -> str:
    session = browser.eval("framelogPlayer.sessionId")
    assert SESSION_ID.match(session), session          # checked before it is written into SQL
    return session


def flush_events(browser: Browser) -> None:
    browser.wait("framelogPlayer.flush().then(() => true)", 30)


# ------------------------------------------------------------------ it plays

def test_encrypted_video_plays_through_the_edge(config, api, video_id, browser, tmp_path):
    assert open_player(browser, api, video_id)["ready"], browser.log()
    browser.wait("document.getElementById('video').currentTime > 3", PLAY_DEADLINE)
    browser.screenshot(tmp_path / "player.png")                    # the page, kept with the test's tmp dir
    frame = browser.screenshot(tmp_path / "video.png", "#video")
    assert frame_stddev(frame) > 20, "the video element shows no picture"

    state = browser.eval("({frags: framelogPlayer.loadedFragments, info: framelogPlayer.info, "
                         "error: framelogPlayer.error, failover: framelogPlayer.failover})")
    assert state["error"] is None and state["failover"] is None
    primary = edge_base(config, "primary_cdn")                     # US viewers: primary_cdn first
    assert state["info"]["manifestUrl"].startswith(primary + "s/")  # signature in the path
    assert state["frags"] and all(f["url"].startswith(primary + "s/") for f in state["frags"])
    assert state["info"]["keyGrant"]                               # the key came with the grant
    assert httpx.get(state["info"]["keyUri"], timeout=10).status_code in (401, 403)

    # the quality menu: a manual choice overrides the controller until "auto" again
    choose = ("(v) => { const m = document.getElementById('quality'); m.value = v; "
              "m.dispatchEvent(new Event('change')); }")
    options = browser.eval("[...document.getElementById('quality').options].map(o => o.value)")
    current = browser.eval("framelogPlayer.quality")
    assert options[0] == "auto" and current in options, (options, current)
    other = next(name for name in options[1:] if name != current)
    browser.eval(f"({choose})('{other}')")
    manual = browser.eval("framelogPlayer.switches.at(-1)")
    assert (manual["fromQuality"], manual["toQuality"], manual["reason"]) == (current, other, "manual")
    assert browser.eval(f"framelogPlayer.hls.manualLevel === "
                        f"framelogPlayer.levels.find(l => l.name === '{other}').index")
    browser.eval(f"({choose})('auto')")
    assert browser.eval("framelogPlayer.hls.manualLevel") == -1

    browser.eval("document.getElementById('video').pause()")
    flush_events(browser)
    sent = browser.eval("framelogPlayer.sent.map(e => e.type)")
    assert "pause" in sent and "quality_switch" in sent
    session = session_of(browser)
    # a seek that waits in the queue goes out by sendBeacon when the page is left (the periodic
    # send is stopped first, or it could take the seek before the page goes away)
    browser.eval("framelogPlayer.batcher.close()")
    browser.eval("document.getElementById('video').currentTime = 1")
    browser.wait("framelogPlayer.batcherQueue().some(e => e.type === 'seek')", PLAY_DEADLINE)
    browser.goto("about:blank")

    def types() -> set[str]:
        return set(sql(api, "SELECT groupUniqArray(type) FROM playback_events "
                            "WHERE video_id = {v:String} AND session_id = {s:String}", v=video_id, s=session)[0][0])

    # view_start is emitted by GET /v1/stream for the session; the player adds pause, seek (by beacon), ...
    wait_for(lambda: {"view_start", "pause", "seek"} <= types(), "the session's events in ClickHouse",
             ANALYTICS_DEADLINE)
    def reasons() -> set[str]:       # quality_switches is another topic: the sink may reach it a little later
        return {r[0] for r in sql(api, "SELECT reason FROM quality_switches "
                                       "WHERE video_id = {v:String} AND session_id = {s:String}",
                                  v=video_id, s=session)}

    wait_for(lambda: {"startup", "manual"} <= reasons(), "the session's quality switches in ClickHouse",
             ANALYTICS_DEADLINE)
    startups = sql(api, "SELECT count() FROM playback_events WHERE startup_time_ms IS NOT NULL "
                        "AND video_id = {v:String} AND session_id = {s:String}", v=video_id, s=session)[0][0]
    assert startups == 1, "the first frame's startup time reaches the analytics once"


# ------------------------------------------------------------------ playable while it processes

PROCESSING_CLIP = {"width": 854, "height": 480, "duration": 80}    # 8 chunks of the test overlay's 10 s


def test_the_player_starts_while_a_chunked_video_processes_with_every_rung(config, api, worker, browser, tmp_path):
    """Issue 13 pt 4: the page plays a video whose chunks are still coming (growing EVENT playlists on the
    edge), and the master it loads lists both rungs of a 480p source, so hls.js and the ABR controller get two
    levels from the start."""
    if not (config.media.transcoding.chunked and config.media.transcoding.playable_while_processing
            and config.media.transcoding.chunk_seconds <= 10):
        pytest.skip("needs chunked transcoding, playable while processing, chunk_seconds 10s (the test overlay)")
    clip = clips.video(tmp_path / "processing.mp4", **PROCESSING_CLIP)
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "player-tests",
                       scopes=["videos:write"])
    owner = {"Authorization": f"Bearer {token}"}
    vid = upload_resumable(api, clip, token=token, visibility="public")
    uploaded = time.monotonic()

    def state() -> str | None:
        r = httpx.get(f"{api}/videos/{vid}", headers=owner, timeout=10)
        return r.json().get("state") if r.status_code == 200 else None

    def two_rungs_while_processing() -> dict | None:
        r = httpx.get(f"{api}/v1/stream", params={"video_id": vid}, timeout=10)
        assert r.status_code in (200, 409), r.text
        answer = r.json() if r.status_code == 200 else {}
        assert state() != "ready", "published before it was playable while processing: nothing was tested"
        return answer if answer.get("processing") and len(answer["qualities"]) >= 2 else None

    answer = wait_for(two_rungs_while_processing, "two rungs playable while processing", PIPELINE_DEADLINE, step=0.5)
    two_rungs = time.monotonic() - uploaded
    assert [q["name"] for q in answer["qualities"]] == ["360p", "480p"], answer["qualities"]
    assert open_player(browser, api, vid)["ready"], browser.log()
    browser.wait("document.getElementById('video').currentTime > 1", PLAY_DEADLINE)
    playing_while, playing = state(), time.monotonic() - uploaded
    levels = browser.eval("framelogPlayer.levels.map(l => l.name)")
    hls_levels = browser.eval("framelogPlayer.hls.levels.map(l => [l.width, l.height, l.details ? "
                              "l.details.live : null])")
    frame = browser.screenshot(tmp_path / "processing.png", "#video")
    frags = browser.eval("framelogPlayer.loadedFragments")
    assert playing_while not in ("ready", "failed"), f"the video was {playing_while} when the player played"
    assert sorted(levels) == ["360p", "480p"], levels                  # more than one level from the start
    assert sorted((w, h) for w, h, _ in hls_levels) == [(q["width"], q["height"]) for q in answer["qualities"]]
    assert any(live for _, _, live in hls_levels), hls_levels          # an EVENT playlist: hls.js reloads it
    assert browser.eval("[...document.getElementById('quality').options].map(o => o.value)")[0] == "auto"
    assert frame_stddev(frame) > 20, "the video element shows no picture"
    assert frags and all(f["url"].startswith(edge_base(config, "primary_cdn") + "s/") for f in frags)
    assert browser.eval("framelogPlayer.error") is None, browser.log()
    final = wait_for(lambda: state() in ("ready", "failed") and state(), f"video {vid} processed", PIPELINE_DEADLINE,
                     step=1.0)
    assert final == "ready"
    print(f"\nvideo {vid} (80 s 854x480, 8 chunks): 2 rungs playable {two_rungs:.1f}s after the upload, the player "
          f"past 1 s at {playing:.1f}s, published {time.monotonic() - uploaded:.1f}s")


# ------------------------------------------------------------------ ABR under a slow rendition

def test_chapters_show_and_like_and_share_reach_the_analytics(config, api, video_id, browser):
    """The AI stage's chapters are listed beside the player (and a chapters text track added); the like
    and share buttons send their events, which the owner's analytics count (issue 15 pt 4)."""
    assert open_player(browser, api, video_id)["ready"], browser.log()
    chapters = browser.wait("framelogPlayer.chapters.length > 0 && framelogPlayer.chapters", PLAY_DEADLINE)
    assert chapters[0]["start"] == 0 and chapters[-1]["end"] == pytest.approx(CLIP["duration"], abs=0.5)
    shown = browser.eval("[...document.querySelectorAll('#chapters li .name')].map(e => e.textContent)")
    assert shown == [c["title"] for c in chapters]
    cues = browser.eval("[...document.getElementById('video').textTracks].filter(t => t.kind === 'chapters')"
                        ".map(t => t.cues.length)")
    assert cues == [len(chapters)]
    browser.wait("document.getElementById('video').currentTime > 1", PLAY_DEADLINE)
    browser.eval("document.querySelector('#chapters li:first-child button').click()")     # back to its start
    browser.wait("document.getElementById('video').currentTime < 1", PLAY_DEADLINE)

    assert browser.eval("document.getElementById('like').disabled") is False
    browser.eval("document.getElementById('like').click()")
    browser.eval("document.getElementById('like').click()")                              # once only
    browser.eval("document.getElementById('share').click()")
    assert browser.eval("[document.getElementById('like').disabled, framelogPlayer.engagement]") == [
        True, {"liked": True, "shares": 1}]
    browser.wait("framelogPlayer.engagement.shares === 1 && framelogPlayer.flush().then(() => "
                 "framelogPlayer.sent.filter(e => e.type === 'like' || e.type === 'share').length === 2)", 30)
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "player-tests",
                       scopes=["videos:write"])
    owner = {"Authorization": f"Bearer {token}"}

    def engagement() -> tuple[int, int, float]:
        t = httpx.get(f"{api}/v1/videos/{video_id}/analytics", headers=owner, timeout=10).json()
        return t["likes"], t["shares"], t["engagement_rate"]

    wait_for(lambda: engagement()[0] >= 1 and engagement()[1] >= 1, "the like and the share in the analytics",
             ANALYTICS_DEADLINE)
    assert engagement()[2] > 0
    browser.goto(f"{api}/player/{video_id}?country=US")            # the like is remembered in this browser
    browser.wait("window.framelogPlayer && framelogPlayer.engagement", PLAY_DEADLINE)
    assert browser.eval("document.getElementById('like').disabled") is True


def test_the_published_mp4_downloads_through_the_edge_by_ranges(config, api, video_id, tmp_path):
    """The progressive MP4 the pipeline published is at its download_url (the seed's CDN path), in ranges."""
    from framelog.sinks.object_store import ObjectStore

    s = httpx.get(f"{api}/v1/stream", params={"video_id": video_id}, timeout=10).json()
    url = s["download_url"]
    assert re.search(rf"/videos/\d{{4}}/\d{{2}}/480p/{video_id}\.mp4$", url), url
    head = httpx.head(url, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Type"] == "video/mp4"
    size, chunk, parts = int(head.headers["Content-Length"]), 256 * 1024, []
    for start in range(0, size, chunk):
        r = httpx.get(url, headers={"Range": f"bytes={start}-{min(start + chunk, size) - 1}"}, timeout=10)
        assert r.status_code == 206, (start, r.status_code)
        parts.append(r.content)
    body = b"".join(parts)
    key = url.split("/", 6)[-1]                                   # the object key: videos/<y>/<m>/<q>/<id>.mp4
    assert key.startswith("videos/")
    assert body == ObjectStore(config.object_storage, config.stack.state_dir).get_bytes(key)
    (tmp_path / "download.mp4").write_bytes(body)
    assert_decodes(tmp_path / "download.mp4")                      # every frame decodes


def test_slow_top_rendition_makes_the_controller_step_down(config, api, video_id, browser):
    """The lowest rendition's first segment measures enough to step up; the top rendition's segments are
    slow to come (each held TOP_DELAY), the buffer drains under abr.low_buffer_seconds and the controller
    steps down on its timer, abandoning the top segment in flight, and the lower one loads instead."""
    levels = {q.name: q for q in config.hls.quality_levels}
    top, lower = "480p", "360p"
    assert {top, lower} <= set(levels)
    browser.delay(f"**/{top}/segment_*.ts", TOP_DELAY)
    assert open_player(browser, api, video_id)["ready"], browser.log()
    up = browser.wait(f"framelogPlayer.switches.find(s => s.toQuality === '{top}')", PLAY_DEADLINE)
    assert up["reason"] == "bandwidth" and up["bandwidth"] >= levels[top].bandwidth * config.abr.switch_threshold
    down = browser.wait(f"framelogPlayer.switches.find(s => s.fromQuality === '{top}' && s.toQuality === '{lower}')",
                        PLAY_DEADLINE)
    assert down["reason"] == "low_buffer", down
    assert down["bufferLevel"] < config.abr.low_buffer_seconds
    browser.wait(f"framelogPlayer.loadedFragments.some(f => f.level === "
                 f"framelogPlayer.levels.find(l => l.name === '{lower}').index && f.sn > 0)", PLAY_DEADLINE)
    flush_events(browser)
    session = session_of(browser)
    rows = wait_for(lambda: sql(api, "SELECT from_quality, to_quality, reason, direction FROM quality_switches "
                                     "WHERE video_id = {v:String} AND session_id = {s:String} "
                                     "AND from_quality = {f:String} AND to_quality = {t:String}",
                                v=video_id, s=session, f=top, t=lower),
                    "the step down in ClickHouse", ANALYTICS_DEADLINE)
    assert rows[0][2] == "low_buffer" and rows[0][3] == "down", rows


# ------------------------------------------------------------------ the fallback edge

def test_playback_continues_from_the_fallback_when_the_primary_edge_stops(config, stack, api, video_id, browser):
    primary = next(e for e in stack.edges if e.provider_key == "primary_cdn")
    fallback_base = edge_base(config, "secondary_cdn")
    browser.delay("**/segment_00001.ts", SECOND_SEGMENT_DELAY)   # still to come when the edge goes away
    assert open_player(browser, api, video_id)["ready"], browser.log()
    browser.wait("framelogPlayer.loadedFragments.length >= 1 && !document.getElementById('video').paused",
                 PLAY_DEADLINE)
    primary.stop()
    try:
        failover = browser.wait("framelogPlayer.failover", PLAY_DEADLINE)
        assert failover["to"].startswith(fallback_base + "s/"), failover
        browser.wait(f"framelogPlayer.loadedFragments.some(f => f.url.startsWith('{fallback_base}'))", PLAY_DEADLINE)
        browser.wait("document.getElementById('video').currentTime > 11", PLAY_DEADLINE)   # into the 2nd segment
        assert browser.eval("framelogPlayer.error") is None
    finally:
        primary.start()


# ------------------------------------------------------------------ purge

def test_purge_removes_what_the_edge_cached(config, api, video_id, browser):
    assert open_player(browser, api, video_id)["ready"], browser.log()
    browser.wait("framelogPlayer.loadedFragments.length >= 1", PLAY_DEADLINE)
    url = browser.eval("framelogPlayer.loadedFragments[0].url")
    assert url.startswith(edge_base(config, "primary_cdn"))

    def cache_status() -> str:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200, (r.status_code, url)
        return r.headers.get("X-Cache-Status", "")

    assert wait_for(lambda: cache_status() == "HIT", "the segment cached on the edge", 30)
    producer = EventProducer(config.streams)
    try:
        producer.send(topics.CDN_COMMANDS, "CacheInvalidate",
                      new_event("CacheInvalidate", video_id=video_id, paths=[f"/hls/{video_id}/*"], providers=[],
                                reason="player test"), key=video_id)
        producer.flush()
    finally:
        producer.close()
    # the next request after the purge misses (and caches it again)
    wait_for(lambda: cache_status() == "MISS", "the purge to remove the segment", 60, step=0.5)


# ------------------------------------------------------------------ errors are reported

def test_a_key_that_cannot_be_fetched_is_reported_as_an_error(config, api, video_id, browser):
    browser.block("**/v1/keys/**")
    assert open_player(browser, api, video_id)["ready"], browser.log()
    code = browser.wait("framelogPlayer.error", PLAY_DEADLINE)
    assert code.startswith("key"), code                        # hls.js keyLoadError / keyLoadTimeOut
    assert browser.eval("document.getElementById('status').textContent").startswith("Playback failed")
    flush_events(browser)
    session = session_of(browser)
    rows = wait_for(lambda: sql(api, "SELECT error_code FROM playback_events WHERE type = 'error' "
                                     "AND video_id = {v:String} AND session_id = {s:String}", v=video_id, s=session),
                    "the error event in ClickHouse", ANALYTICS_DEADLINE)
    assert rows[0][0] == code, rows


# ------------------------------------------------------------------ a rendition in a cold tier

def _tier_move(video_id: str, rendition: str, from_tier: str, to_tier: str, rule: str, config) -> None:
    with EventProducer(config.streams) as producer:
        producer.send(topics.TIER_TRANSITIONS, "TierTransition", new_event(
            "TierTransition", video_id=video_id, rendition=rendition,
            object_keys=[f"hls/{video_id}/{rendition}/playlist.m3u8"], object_count=1, size_bytes=1,
            from_tier=from_tier, to_tier=to_tier, storage_class=config.storage_tiers[to_tier].storage_class,
            rule=rule, age_days=400.0, access_count=0))


def test_the_player_leaves_out_a_rendition_in_a_cold_tier(config, api, video_id, browser):
    """The static master playlist still lists a rendition the tiering job moved to a cold tier; the stream
    API marks it archived (without restoring it: another rendition plays), and the player neither offers
    it nor loads a fragment of it."""
    top, lower = "480p", "360p"
    entry = ledger.entry_tier(config.tiering)
    cold = next(name for name in config.storage_tiers if ledger.needs_restore(name, config.tiering))

    def top_archived() -> bool:
        r = httpx.get(f"{api}/v1/stream", params={"video_id": video_id}, timeout=10)
        q = {x["name"]: x["availability"] for x in r.json().get("qualities", [])}
        return q.get(top) == "archived" and q.get(lower) == "available"

    _tier_move(video_id, top, entry, cold, "Archive", config)
    try:
        wait_for(top_archived, f"the stream API to mark {top} archived", PLAY_DEADLINE)
        assert open_player(browser, api, video_id)["ready"], browser.log()
        assert browser.eval("framelogPlayer.levels.map(l => l.name)") == [lower]
        assert browser.eval("[...document.getElementById('quality').options].map(o => o.value)") == ["auto", lower]
        browser.wait("framelogPlayer.loadedFragments.some(f => f.sn > 0)", PLAY_DEADLINE)   # two of the clip's
        lower_index = browser.eval(f"framelogPlayer.levels.find(l => l.name === '{lower}').index")
        assert {f["level"] for f in browser.eval("framelogPlayer.loadedFragments")} == {lower_index}
        assert all(s["toQuality"] == lower for s in browser.eval("framelogPlayer.switches"))
    finally:                                               # the other tests' video is whole again
        _tier_move(video_id, top, cold, entry, "restore", config)
        wait_for(lambda: not top_archived(), f"{top} available again", PLAY_DEADLINE)

