"""POST /v1/events without a broker: body decoding, batch parsing, per-event validation, the HTTP
error answers (nothing reaches a producer), and the AnalyticsClient against a mock transport."""
from __future__ import annotations

import dataclasses
import gzip
import json
import threading
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from framelog.api import events as ev
from framelog.api.app import assemble
from framelog.api.events import EventError, IngestSettings, RequestError
from framelog.clients.credentials import bearer
from framelog.processors.identity import EVENTS_WRITE, Keyring, mint_token
from framelog.schemas import current_version
from framelog_client.events import AnalyticsClient

NOW = 1_767_225_600_000          # 2026-01-01T00:00:00Z in ms


def playback(**extra):
    base = {"type": "progress", "event_id": str(uuid.uuid4()), "session_id": "sess-1", "viewer_id": "viewer-1",
            "video_id": "vid_1", "client_time": NOW - 1000, "position_seconds": 12.5, "watch_time_delta_seconds": 5}
    base.update(extra)
    return base


def switch(**extra):
    base = {"type": "quality_switch", "event_id": str(uuid.uuid4()), "session_id": "sess-1", "viewer_id": "viewer-1",
            "video_id": "vid_1", "timestamp": NOW - 500, "from_quality": "720p", "to_quality": "1080p",
            "bandwidth": 5_123_456.7, "buffer_level": 14.2, "reason": "bandwidth"}
    base.update(extra)
    return base


def parse(event, country="DE", ingest=NOW):
    return ev.parse_event(event, ingest_ms=ingest, country=country)


# ---------------------------------------------------------------- single events

def test_playback_event_record_and_server_fields():
    e = playback(country="US", ingest_time=1, event_time=2, schema_version=99, unknown_key="x")
    p = parse(e, country="FR")
    assert p.topic == "playback.events" and p.record_name == "PlaybackEvent" and p.key == "vid_1"
    r = p.record
    assert r["event_id"] == e["event_id"]
    assert r["country"] == "FR"                       # from the header, never the body
    assert r["ingest_time"] == NOW and r["client_time"] == NOW - 1000
    assert r["event_time"] == NOW - 1000              # event time is the client's
    assert r["schema_version"] == current_version("PlaybackEvent")
    assert r["position_seconds"] == 12.5 and r["watch_time_delta_seconds"] == 5.0
    assert r["rendition"] is None and r["device"] is None
    assert "unknown_key" not in r


def test_every_playback_type_and_seed_aliases():
    for t in ["view_start", "video_view", "progress", "pause", "seek", "rebuffer_start", "rebuffer_end", "error",
              "ended", "share", "like"]:
        assert parse(playback(type=t)).record["type"] == t
    assert parse(playback(type="video_share")).record["type"] == "share"
    assert parse(playback(type="video_like")).record["type"] == "like"


def test_quality_switch_record():
    p = parse(switch())
    assert p.topic == "playback.quality-switches" and p.record_name == "QualitySwitch"
    r = p.record
    assert r["bandwidth"] == 5_123_457 and isinstance(r["bandwidth"], int)   # seed sends an average (float)
    assert r["client_time"] == NOW - 500 and r["event_time"] == NOW - 500      # seed's 'timestamp' alias
    assert r["reason"] == "bandwidth"
    assert "type" not in r


def test_event_id_normalised_and_derived_stably():
    upper = str(uuid.uuid4()).upper()
    assert parse(playback(event_id=upper)).record["event_id"] == upper.lower()
    e = playback()
    del e["event_id"]
    a, b = parse(dict(e)).record["event_id"], parse(dict(e)).record["event_id"]
    assert a == b and uuid.UUID(a).version == 5
    assert parse(dict(e, position_seconds=13)).record["event_id"] != a


def test_client_time_forms():
    assert ev.parse_client_time(NOW) == NOW
    assert ev.parse_client_time(float(NOW) + 0.4) == NOW
    assert ev.parse_client_time(str(NOW)) == NOW
    assert ev.parse_client_time("2026-01-01T00:00:00Z") == NOW
    assert ev.parse_client_time("2026-01-01T01:00:00.000+01:00") == NOW
    for bad in ["2026-01-01T00:00:00", "yesterday", True, None, [], NOW // 1000, -5, float("inf")]:
        with pytest.raises(EventError) as info:
            ev.parse_client_time(bad)
        assert info.value.field == "client_time"
    with pytest.raises(EventError, match="seconds"):
        ev.parse_client_time(NOW // 1000)


def test_future_client_clock_is_clamped_to_ingest_time():
    skew = IngestSettings().max_future_skew_ms
    ok = parse(playback(client_time=NOW + skew)).record
    assert ok["event_time"] == NOW + skew
    clamped = parse(playback(client_time=NOW + skew + 1)).record
    assert clamped["event_time"] == NOW and clamped["client_time"] == NOW + skew + 1
    old = parse(playback(client_time=NOW - 86_400_000)).record
    assert old["event_time"] == NOW - 86_400_000       # late events keep their time


@pytest.mark.parametrize("change, field, reason", [
    ({"type": "dance"}, "type", "unknown_type"),
    ({"type": None}, "type", "missing_field"),
    ({"type": 5}, "type", "invalid_enum"),
    ({"type": "unknown"}, "type", "unknown_type"),
    ({"event_id": "not-a-uuid"}, "event_id", "invalid_event_id"),
    ({"event_id": 42}, "event_id", "invalid_event_id"),
    ({"video_id": "../etc/passwd"}, "video_id", "invalid_video_id"),
    ({"video_id": None}, "video_id", "missing_field"),
    ({"session_id": ""}, "session_id", "invalid_field"),
    ({"viewer_id": None}, "viewer_id", "missing_field"),
    ({"viewer_id": "x" * 200}, "viewer_id", "invalid_field"),
    ({"position_seconds": -1}, "position_seconds", "invalid_field"),
    ({"position_seconds": "12"}, "position_seconds", "invalid_field"),
    ({"position_seconds": True}, "position_seconds", "invalid_field"),
    ({"watch_time_delta_seconds": -0.5}, "watch_time_delta_seconds", "invalid_field"),
    ({"rendition": 720}, "rendition", "invalid_field"),
    ({"client_time": None}, "client_time", "missing_field"),
    ({"client_time": "soon"}, "client_time", "invalid_timestamp"),
])
def test_bad_playback_fields_are_named(change, field, reason):
    with pytest.raises(EventError) as info:
        parse(playback(**change))
    assert (info.value.field, info.value.reason) == (field, reason)
    assert info.value.status == 400


@pytest.mark.parametrize("change, field", [
    ({"reason": None}, "reason"),                  # 'unknown' is never written: the client must say why
    ({"reason": "unknown"}, "reason"),
    ({"reason": "boredom"}, "reason"),
    ({"from_quality": None}, "from_quality"),
    ({"bandwidth": -1}, "bandwidth"),
    ({"bandwidth": "fast"}, "bandwidth"),
    ({"buffer_level": None}, "buffer_level"),
    ({"timestamp": None}, "client_time"),
])
def test_bad_quality_switch_fields_are_named(change, field):
    with pytest.raises(EventError) as info:
        parse(switch(**change))
    assert info.value.field == field


def test_non_object_event():
    with pytest.raises(EventError) as info:
        parse(["progress"])
    assert info.value.reason == "invalid_event"


def test_parse_events_names_the_index():
    with pytest.raises(EventError) as info:
        ev.parse_events([playback(), switch(), playback(position_seconds=-3), playback(video_id="bad id")],
                        ingest_ms=NOW, country=None)
    body = info.value.body()["error"]
    assert body["event_index"] == 2 and body["field"] == "position_seconds" and body["code"] == "invalid_field"
    assert body["message"].startswith("event 2:")


def test_optional_schema_fields_pass_through_only_if_the_schema_has_them(monkeypatch):
    original = ev.record_fields
    has_startup = any(f.name == "startup_time_ms" for f in original("PlaybackEvent"))
    if not has_startup:     # the schema does not have the field (yet): the parser ignores it
        assert "startup_time_ms" not in parse(playback(startup_time_ms=850)).record
    extended = tuple(f for f in original("PlaybackEvent") if f.name not in ("startup_time_ms", "error_code")) + (
        ev.FieldSpec("startup_time_ms", "long", True, True, None),
        ev.FieldSpec("error_code", "string", True, True, None))
    monkeypatch.setattr(ev, "record_fields", lambda name: extended if name == "PlaybackEvent" else original(name))
    r = parse(playback(type="view_start", startup_time_ms=850.2, error_code="E42")).record
    assert r["startup_time_ms"] == 850 and r["error_code"] == "E42"
    assert parse(playback()).record["startup_time_ms"] is None
    with pytest.raises(EventError) as info:
        parse(playback(startup_time_ms=-1))
    assert info.value.field == "startup_time_ms"


# ---------------------------------------------------------------- bodies and headers

def test_country_header():
    assert ev.country_from_header("DE") == "DE"
    assert ev.country_from_header(" US ") == "US"
    for bad in [None, "", "de", "DEU", "T1", "XX", "D1"]:
        assert ev.country_from_header(bad) is None


def test_parse_batch_shapes():
    assert ev.parse_batch(b'{"events": [{"a": 1}]}', 10) == [{"a": 1}]
    assert ev.parse_batch(b'[{"a": 1}, {"b": 2}]', 10) == [{"a": 1}, {"b": 2}]
    for body, status, field in [(b"{", 400, None), (b'{"x": []}', 400, "events"), (b'"hi"', 400, "events"),
                                (b"[]", 400, "events"), (b'[{"a": NaN}]', 400, None),
                                (json.dumps([{}] * 11).encode(), 413, "events"),
                                (b"[" * 100_000 + b"]" * 100_000, 400, None)]:
        with pytest.raises(RequestError) as info:
            ev.parse_batch(body, 10)
        assert (info.value.status, info.value.field) == (status, field), body[:20]


def test_gzip_decoding_declared_sniffed_and_multi_member():
    data = json.dumps([playback()]).encode()
    assert ev.decode_body(gzip.compress(data), "gzip", 1 << 20) == data
    assert ev.decode_body(gzip.compress(data), None, 1 << 20) == data          # a beacon cannot set the header
    assert ev.decode_body(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip", 1 << 20) == data
    assert ev.decode_body(data, "identity", 1 << 20) == data
    with pytest.raises(RequestError) as info:
        ev.decode_body(data, "br", 1 << 20)
    assert info.value.status == 415
    with pytest.raises(RequestError) as info:
        ev.decode_body(gzip.compress(data)[:-12], "gzip", 1 << 20)
    assert info.value.reason == "invalid_gzip"
    with pytest.raises(RequestError) as info:
        ev.decode_body(b"\x1f\x8bnot gzip at all", "gzip", 1 << 20)
    assert info.value.reason == "invalid_gzip"


def test_gzip_bomb_is_capped_without_inflating_it():
    bomb = gzip.compress(b"\x00" * (64 << 20), compresslevel=9)      # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 200_000
    with pytest.raises(RequestError) as info:
        ev.gunzip_capped(bomb, 10 << 20)
    assert info.value.status == 413


def test_content_types():
    for ok in [None, "application/json", "text/plain;charset=UTF-8", "application/octet-stream",
               "application/vnd.framelog+json"]:
        ev.check_content_type(ok)
    for bad in ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "image/png"]:
        with pytest.raises(RequestError) as info:
            ev.check_content_type(bad)
        assert info.value.status == 415


# ---------------------------------------------------------------- the endpoint, refusing (no broker needed)

def producer(config, tmp_path):
    """(config with a keyring of its own, a server-side producer's headers: a token with events:write)."""
    own = dataclasses.replace(config, auth=dataclasses.replace(config.auth,
                                                               keyring_file=str(tmp_path / "keyring.json")))
    return own, bearer(mint_token(own.auth, Keyring(own.auth, own.stack.state_dir),
                                  "unit-producer", scopes=[EVENTS_WRITE]))


@pytest.fixture()
def app(config, tmp_path):
    own, headers = producer(config, tmp_path)
    app = assemble(own, [ev.router], warm=(),          # nothing started: the refusals need no broker
                   ingest=IngestSettings(max_body_bytes=64 * 1024, max_decoded_bytes=256 * 1024, max_events=5))
    with TestClient(app) as client:
        client.producer_headers = headers                # a producer's token: no session needed
        yield client


def test_endpoint_refusals_never_create_a_producer(app):
    client = app
    assert client.post("/v1/events", json=[playback()]).json()["error"]["code"] == "session_required"
    client.headers.update(client.producer_headers)
    r = client.post("/v1/events", json={"events": [playback(), playback(video_id="no/slash")]})
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "invalid_video_id", "message": r.json()["error"]["message"],
                                  "event_index": 1, "field": "video_id"}}
    assert client.post("/v1/events", json=[playback()] * 6).status_code == 413
    assert client.post("/v1/events", content=b"x" * (65 * 1024)).status_code == 413
    assert client.post("/v1/events", content=gzip.compress(b" " * (300 * 1024)),
                       headers={"Content-Encoding": "gzip"}).status_code == 413
    assert client.post("/v1/events", content=b"a=b",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    assert client.post("/v1/events", content=b"{oops", headers={"Content-Type": "text/plain"}).status_code == 400
    assert not client.app_state["services"].started("sender")


def test_endpoint_answers_503_when_the_broker_does_not_acknowledge(config, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMELOG_KAFKA_USERNAME", "api")        # any credentials: nothing answers
    monkeypatch.setenv("FRAMELOG_KAFKA_PASSWORD", "unused")
    own, headers = producer(config, tmp_path)
    dead = dataclasses.replace(own, kafka=dataclasses.replace(config.kafka, bootstrap_servers="127.0.0.1:9"))
    app = assemble(dead, [ev.router], warm=(), ingest=IngestSettings(
        delivery_timeout=1.0, producer_overrides={"message.timeout.ms": 1500, "log_level": 0}))
    with TestClient(app, headers=headers) as client:
        r = client.post("/v1/events", json=[playback()])
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1" and r.json()["error"]["retryable"] is True
        svc = client.app_state["services"]
        assert svc.started("sender")
    assert not svc.started("sender")                  # closed by the app's lifespan


# ---------------------------------------------------------------- AnalyticsClient against a mock server

class FakeServer:
    """A /v1/events stand-in: scripted failures first, then 202; validates like the real parser."""

    def __init__(self, script=()):
        self.script = list(script)
        self.batches: list[list[dict]] = []
        self.lock = threading.Lock()
        self.attempts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.attempts += 1
            step = self.script.pop(0) if self.script else None
        if step == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(step, int):
            return httpx.Response(step, json={"error": "scripted"}, headers={"Retry-After": "0"})
        assert request.headers["content-encoding"] == "gzip"
        events = json.loads(gzip.decompress(request.content))["events"]
        try:
            ev.parse_events(events, ingest_ms=NOW, country=None)
        except EventError as exc:
            return httpx.Response(400, json=exc.body())
        with self.lock:
            self.batches.append(events)
        return httpx.Response(202, json={"accepted": len(events)})

    @property
    def ids(self):
        return [e["event_id"] for b in self.batches for e in b]


def client_for(server, **kw):
    kw.setdefault("backoff_base", 0.001)
    return AnalyticsClient("http://ingest.test", transport=httpx.MockTransport(server), **kw)


def no_id_event(i):
    e = playback(position_seconds=float(i))
    del e["event_id"]
    return e


def test_client_batches_and_fills_stable_ids():
    server = FakeServer()
    c = client_for(server, batch_size=4, flush_interval=60)
    ids = [c.track(no_id_event(i)) for i in range(10)]
    assert c.flush(timeout=10)
    assert sorted(server.ids) == sorted(ids) and len(set(ids)) == 10
    assert [len(b) for b in server.batches][:2] == [4, 4]
    assert c.stats.sent == 10 and c.stats.dropped == 0
    assert c.close()


def test_client_sends_a_partial_batch_after_flush_interval():
    server = FakeServer()
    c = client_for(server, batch_size=100, flush_interval=0.05)
    c.track(no_id_event(1))
    deadline = time.monotonic() + 10
    while not server.batches:
        assert time.monotonic() < deadline, "partial batch never sent"
        time.sleep(0.01)
    c.close()


def test_client_retries_connection_errors_and_503_with_the_same_ids():
    server = FakeServer(["refuse", "refuse", 503, 500])
    c = client_for(server, batch_size=3)
    ids = [c.track(no_id_event(i)) for i in range(3)]
    assert c.flush(timeout=10)
    assert server.ids == ids                       # sent once, after four failed attempts, ids unchanged
    assert c.stats.retries == 4 and c.stats.transport_errors == 2
    c.close()


def test_client_gives_up_after_max_retries():
    server = FakeServer(["refuse"] * 10)
    c = client_for(server, max_retries=2)
    c.track(no_id_event(0))
    assert c.flush(timeout=10)
    assert server.attempts == 3 and c.stats.dropped == 1 and "gave up after 2 retries" in c.dropped[0][1]
    c.close()


def test_client_drops_only_the_event_the_server_names_on_400():
    server = FakeServer()
    dropped = []
    c = client_for(server, batch_size=5, on_drop=lambda e, why: dropped.append((e["event_id"], why)))
    good = [c.track(no_id_event(i)) for i in range(2)]
    bad = c.track(playback(position_seconds=-1))
    good += [c.track(no_id_event(i)) for i in range(2, 4)]
    assert c.flush(timeout=10)
    assert sorted(server.ids) == sorted(good)
    assert [d[0] for d in dropped] == [bad] and "position_seconds" in dropped[0][1]
    c.close()


def test_client_splits_a_batch_on_413():
    server = FakeServer([413])
    c = client_for(server, batch_size=4)
    ids = [c.track(no_id_event(i)) for i in range(4)]
    assert c.flush(timeout=10)
    assert sorted(server.ids) == sorted(ids) and [len(b) for b in server.batches] == [2, 2]
    c.close()


def test_client_rejects_bad_input_and_use_after_close():
    c = client_for(FakeServer())
    with pytest.raises(ValueError):
        c.track({"video_id": "v"})
    with pytest.raises(TypeError):
        c.track(["x"])
    with pytest.raises(ValueError):
        c.track({"type": "progress", "x": float("nan")})
    c.close()
    with pytest.raises(RuntimeError):
        c.track(playback())


def test_client_against_the_real_endpoint_refusal_path(app):
    """The client speaks the endpoint's wire format: gzip JSON, 400 names the event it then drops."""
    http = app
    http.headers.update(app.producer_headers)
    c = AnalyticsClient("", http_client=http, backoff_base=0.001)
    c.track(playback(video_id="bad id"))
    assert c.flush(timeout=10)
    assert c.stats.dropped == 1 and "video_id" in c.dropped[0][1]
    c.close()


def test_a_player_session_likes_once_and_shares_freely():
    """One like per playback session (issue 15 pt 4: engagement_rate must not be pumped by one page);
    the seed's video_like is the same like; a refused batch gives its claims back."""
    from framelog.api.event_trust import ViewClaims
    from framelog.processors.playback_session import PlaybackSession

    session = PlaybackSession("sess-like", "vid-1", "viewer-1", None, None, None, True, 2**40)
    claims = ViewClaims(100)

    def batch(*types: str) -> list[ev.ParsedEvent]:
        return [ev.ParsedEvent("playback.events", "PlaybackEvent", {"type": t, "video_id": "vid-1"}) for t in types]

    assert ev._claim_views(batch("share", "like", "share"), session, claims) == ["sess-like#like"]
    with pytest.raises(EventError) as refused:
        ev._claim_views(batch("progress", "like"), session, claims)
    assert (refused.value.reason, refused.value.event_index, refused.value.field) == ("like_already_recorded", 1,
                                                                                     "type")
    assert ev._claim_views(batch("share", "share"), session, claims) == []
    other = PlaybackSession("sess-2", "vid-1", "viewer-1", None, None, None, False, 2**40)
    with pytest.raises(EventError) as refused:
        ev._claim_views(batch("like", "view_start", "video_view"), other, claims)
    assert (refused.value.reason, refused.value.event_index) == ("view_already_recorded", 2)
    assert ev._claim_views(batch("like"), other, claims) == ["sess-2#like"]     # the refused batch let go of it
    assert ev._claim_views(batch("like"), None, claims) == []                 # server-side producers: not limited
