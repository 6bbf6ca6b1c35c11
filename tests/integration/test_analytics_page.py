"""The owner's analytics (issue 15 pt 4) against the real stack: the API process with its embedded
ClickHouse sink, playback events on the real broker (some produced onto the log, likes and shares
posted through POST /v1/events), and the page in Debian's chromium (playwright-core).

Checked: likes and shares are accepted and make engagement_rate non-zero; the series and
retention routes answer the owner, an analyst, and refuse others (401/403) and bad parameters
(400 with the reason); the page draws its four uPlot charts and its tables, and a screenshot
of each chart is not blank. Every wait is a condition with a deadline.
"""
from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest

from framelog.core import object_keys
from framelog.demo.browser import Browser, missing_requirements
from framelog.processors.identity import ANALYTICS_READ, EVENTS_WRITE, Keyring, mint_token
from framelog.processors.media import analysis
from framelog.schemas.events import new_event
from framelog.sinks.object_store import ObjectStore
from framelog.stack.services import ApiService
from framelog.streams import topics
from framelog.streams.producer import EventProducer
from framelog_client import ApiError, Client
from framelog_client.events import AnalyticsClient
from tests.integration.support import wait_for
from tests.integration.support.screenshots import frame_stddev
from tests.media.support import clips

pytestmark = pytest.mark.integration

DEADLINE = 90.0
OWNER = f"studio-owner-{uuid.uuid4().hex[:8]}"
DURATION = 60.0
NOW = dt.datetime.now(dt.UTC)
HOUR0 = NOW.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
# (session, viewer, country, hour, rendition, watched stretches, startup ms, rebuffer ms)
SESSIONS = [
    ("s1", "v1", "US", 0, "720p", [(0, 20), (20, 40), (40, 60)], 350, 0),
    ("s2", "v2", "US", 0, "480p", [(0, 20), (20, 30)], 600, 1500),
    ("s3", "v3", "DE", 1, "720p", [(0, 20), (20, 40)], 420, 0),
    ("s4", "v1", "FR", 2, "360p", [(0, 15)], 900, 3000),
    ("s5", "v4", "JP", 2, "720p", [(0, 20), (20, 40), (40, 60)], 300, 0),
]


def token(config, sub: str, *scopes: str) -> str:
    return mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), sub, scopes=list(scopes))


def at(hour: int, minute: float) -> int:
    return int((HOUR0 + dt.timedelta(hours=hour, minutes=minute)).timestamp() * 1000)


def playback_records(video_id: str) -> list[dict]:
    out = []
    for sid, viewer, country, hour, rendition, stretches, startup, rebuffer in SESSIONS:
        session = f"{video_id}-{sid}"
        common = {"video_id": video_id, "session_id": session, "viewer_id": viewer, "country": country,
                  "device": "web", "rendition": rendition, "duration_seconds": DURATION}
        out.append(new_event("PlaybackEvent", type="view_start", event_time=at(hour, 1), client_time=at(hour, 1),
                             startup_time_ms=startup, **common))
        for i, (a, b) in enumerate(stretches):
            out.append(new_event("PlaybackEvent", type="progress", event_time=at(hour, 2 + i),
                                 client_time=at(hour, 2 + i), position_seconds=float(b),
                                 watch_time_delta_seconds=float(b - a), **common))
        if rebuffer:
            out.append(new_event("PlaybackEvent", type="rebuffer_end", event_time=at(hour, 9), client_time=at(hour, 9),
                                 rebuffer_duration_ms=rebuffer, **common))
        if stretches[-1][1] >= DURATION:
            out.append(new_event("PlaybackEvent", type="ended", event_time=at(hour, 10), client_time=at(hour, 10),
                                 position_seconds=DURATION, **common))
    return out


def publish_analysis(config, video_id: str) -> None:
    """What the publish stage writes for the owner's page (pipeline/jobs/handlers.py), without the pipeline."""
    result = analysis.Analysis(
        duration=2.0, scene_changes=(1.0,), scene_scores=(0.6,),
        chapters=(analysis.Chapter(0, 0.0, 1.0, "Chapter 1"), analysis.Chapter(1, 1.0, 2.0, "Chapter 2")),
        black_segments=(analysis.Interval(0.0, 0.5),), silence_segments=(),
        loudness=analysis.Loudness(-16.0, 3.5, -1.2), wall_seconds=0.1)
    ObjectStore(config.object_storage, config.stack.state_dir).put_bytes(
        object_keys.analysis_report(video_id), result.to_json().encode(), "application/json")


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
def owner(config) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(config, OWNER, 'videos:write')}"}


@pytest.fixture(scope="module")
def video_id(api, config, owner, tmp_path_factory) -> str:
    """A video of OWNER's (uploaded; no worker needed) and its playback: sessions over three hours
    produced onto playback.events, likes and shares posted through POST /v1/events."""
    from framelog_client.upload import upload_resumable

    clip = clips.video(tmp_path_factory.mktemp("studio") / "clip.mp4", duration=2)
    vid = upload_resumable(api, clip, token=owner["Authorization"].split()[1], visibility="public")
    wait_for(lambda: httpx.get(f"{api}/v1/videos/{vid}/analytics", headers=owner, timeout=10).status_code == 200,
             "the API to know the owner's video", DEADLINE, step=0.5)
    with EventProducer(config.streams) as producer:
        for record in playback_records(vid):
            producer.send(topics.PLAYBACK_EVENTS, "PlaybackEvent", record, key=vid)
        producer.flush()
    producer_headers = {"Authorization": f"Bearer {token(config, 'studio-tests-producer', EVENTS_WRITE)}"}
    with AnalyticsClient(api, headers=producer_headers, flush_interval=0.05) as client:
        for sid, kind, minute in (("s1", "like", 11), ("s3", "like", 11), ("s3", "share", 12),
                                  ("s5", "video_share", 12)):      # the seed's name for a share is accepted too
            hour = next(s[3] for s in SESSIONS if s[0] == sid)
            client.track({"type": kind, "video_id": vid, "session_id": f"{vid}-{sid}", "viewer_id": "v1",
                          "client_time": at(hour, minute), "position_seconds": 30.0})
        assert client.flush(timeout=DEADLINE) and client.stats.sent == 4, (client.stats, list(client.dropped))

    def totals() -> dict:
        return httpx.get(f"{api}/v1/videos/{vid}/analytics", headers=owner, timeout=10).json()

    wait_for(lambda: (lambda t: t["total_views"] == len(SESSIONS) and t["likes"] == 2 and t["shares"] == 2)(totals()),
             "the sink to write the video's events", DEADLINE, step=0.5)
    return vid


@pytest.fixture
def browser():
    with Browser() as b:
        yield b


def test_likes_and_shares_make_engagement_non_zero(api, owner, video_id):
    t = httpx.get(f"{api}/v1/videos/{video_id}/analytics", headers=owner, timeout=10).json()
    assert (t["likes"], t["shares"]) == (2, 2)
    assert t["engagement_rate"] == pytest.approx(4 / len(SESSIONS))
    assert {g["country"] for g in t["geographic_distribution"]} == {"US", "DE", "FR", "JP"}
    assert t["qoe"]["rebuffer_seconds"] == pytest.approx(4.5)


def test_series_and_retention_routes(api, config, owner, video_id):
    base = f"{api}/v1/videos/{video_id}/analytics"
    frm, to = int(HOUR0.timestamp()), int((HOUR0 + dt.timedelta(hours=3)).timestamp())
    s = httpx.get(f"{base}/series", params={"interval": "1h", "from": frm, "to": to}, headers=owner, timeout=10)
    assert s.status_code == 200, s.text
    s = s.json()
    assert s["time"] == [frm, frm + 3600, frm + 7200]
    assert s["views"] == [2, 1, 2] and s["likes"] == [1, 1, 0] and s["shares"] == [0, 1, 1]
    assert s["watch_time"] == pytest.approx([90, 40, 75])
    day = httpx.get(f"{base}/series", params={"interval": "1d", "from": frm, "to": to}, headers=owner,
                    timeout=10).json()
    assert sum(day["views"]) == len(SESSIONS) and len(day["time"]) in (1, 2)   # the three hours may span midnight

    r = httpx.get(f"{base}/retention", params={"from": frm, "to": to}, headers=owner, timeout=10).json()
    assert r["sessions"] == len(SESSIONS) and len(r["retention"]) == config.analytics.retention_points
    assert r["retention"][0] == 1.0 and r["retention"][-1] == pytest.approx(2 / 5)   # s1 and s5 watched to the end

    # the light client reads the same
    with Client(api, token=owner["Authorization"].split()[1]) as fl:
        assert fl.series(video_id, "1h", frm, to) == s
        assert fl.retention(video_id, HOUR0, HOUR0 + dt.timedelta(hours=3)) == r
        assert fl.analytics(video_id, frm, to)["likes"] == 2
        with pytest.raises(ApiError) as refused:
            fl.series(video_id, "5m")
        assert refused.value.status == 400 and "'interval' must be one of 1h, 1d" in refused.value.message
        assert refused.value.code == "invalid_query"

    analyst = {"Authorization": f"Bearer {token(config, 'studio-analyst', ANALYTICS_READ)}"}
    stranger = {"Authorization": f"Bearer {token(config, 'studio-stranger', 'videos:write')}"}
    assert httpx.get(f"{base}/series", headers=analyst, timeout=10).status_code == 200
    assert httpx.get(f"{base}/retention", headers=stranger, timeout=10).status_code == 403
    assert httpx.get(f"{base}/series", timeout=10).status_code == 401

    def bad(path: str, **params) -> str:
        """The refusal's message, in the API's one error shape, after checking its status and code."""
        answer = httpx.get(f"{base}{path}", params=params, headers=owner, timeout=10)
        assert answer.status_code == 400, (params, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_query", error
        return error["message"]

    assert "'interval' must be one of 1h, 1d, got '5m'" in bad("/series", interval="5m")
    assert "'from' must be ISO 8601 or epoch seconds" in bad("/series", **{"from": "yesterday"})
    assert "must be before" in bad("/retention", **{"from": to, "to": frm})
    assert "max_series_points" in bad("/series", interval="1h", **{"from": to - 2001 * 3600, "to": to})
    assert "max_timeframe" in bad("/series", interval="1d", **{"from": 0, "to": to})
    answer = httpx.get(f"{api}/v1/videos/bad%20id/analytics/series", headers=owner, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_id", answer.text


def test_the_ai_stage_analysis_is_served_to_the_owner(api, config, owner, video_id):
    url = f"{api}/v1/videos/{video_id}/analysis"
    assert httpx.get(url, headers=owner, timeout=10).status_code == 404        # not published yet
    publish_analysis(config, video_id)
    a = httpx.get(url, headers=owner, timeout=10)
    assert a.status_code == 200, a.text
    assert a.json()["loudness"]["integrated_lufs"] == -16.0 and len(a.json()["chapters"]) == 2
    stranger = {"Authorization": f"Bearer {token(config, 'studio-stranger', 'videos:write')}"}
    assert httpx.get(url, headers=stranger, timeout=10).status_code == 403
    assert httpx.get(url, timeout=10).status_code == 401


def test_owner_page_draws_the_charts(api, config, owner, video_id, browser, tmp_path):
    owner_token = owner["Authorization"].split()[1]
    publish_analysis(config, video_id)
    browser.goto(f"{api}/studio/{video_id}/analytics#viewer_token={owner_token}")
    state = browser.wait("window.framelogAnalytics && (framelogAnalytics.ready || framelogAnalytics.error) && "
                         "{ready: framelogAnalytics.ready, error: framelogAnalytics.error}", DEADLINE)
    assert state["ready"], (state, browser.log())
    tiles = browser.eval("Object.fromEntries([...document.querySelectorAll('#kpis .tile')].map(t => "
                         "[t.querySelector('.label').textContent, t.querySelector('.value').textContent]))")
    assert tiles["Views"] == str(len(SESSIONS)) and tiles["Likes"] == "2" and tiles["Shares"] == "2"
    assert tiles["Engagement rate"] == "80.0 %" and tiles["Unique viewers"] == "4"
    countries = browser.eval("[...document.querySelectorAll('#countries tbody tr td:first-child')]"
                             ".map(td => td.textContent)")
    assert sorted(countries) == ["DE", "FR", "JP", "US"]
    renditions = browser.eval("[...document.querySelectorAll('#renditions tbody tr td:first-child')]"
                              ".map(td => td.textContent)")
    assert set(renditions) == {"720p", "480p", "360p"}
    # every chart is a uPlot canvas with something drawn on it
    drawn = browser.eval("""Object.fromEntries(['views', 'watch', 'retention', 'qoe'].map(name => {
        const canvas = document.querySelector('#chart-' + name + ' canvas');
        if (!canvas) return [name, 0];
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return [name, painted];
    }))""")
    assert all(n > 2000 for n in drawn.values()), drawn
    browser.screenshot(tmp_path / "analytics.png")                 # the whole page, kept with the test's tmp dir
    for name in ("views", "watch", "retention", "qoe"):
        shot = browser.screenshot(tmp_path / f"{name}.png", f"#chart-{name}")
        assert frame_stddev(shot) > 8, f"the {name} chart looks blank"
    browser.wait("framelogAnalytics.analysisLoaded.then(() => true)", DEADLINE)
    analysis = browser.eval("Object.fromEntries([...document.querySelectorAll('#analysis tr')].map(tr => "
                            "[tr.cells[0].textContent, tr.cells[1].textContent]))")
    assert analysis["Integrated loudness"] == "-16.0 LUFS" and analysis["Black stretches"] == "0:00–0:01"
    assert analysis["Chapters"].startswith("2 (Chapter 1 at 0:00")
    assert not [line for line in browser.log() if line.startswith(("pageerror", "error"))], browser.log()


def test_page_without_the_owners_token_says_why(api, config, video_id, browser):
    stranger = token(config, "studio-stranger", "videos:write")
    browser.goto(f"{api}/studio/{video_id}/analytics#viewer_token={stranger}")
    state = browser.wait("window.framelogAnalytics && (framelogAnalytics.ready || framelogAnalytics.error) && "
                         "{ready: framelogAnalytics.ready, error: framelogAnalytics.error}", DEADLINE)
    assert not state["ready"] and state["error"].startswith("403"), state
    assert "cannot be read" in browser.eval("document.getElementById('status').textContent")
