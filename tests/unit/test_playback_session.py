"""Playback sessions, the event trust helpers and the session binding of POST /v1/events (no broker)."""
from __future__ import annotations

import gzip
import uuid

import pytest

from framelog.api import events as ev
from framelog.api.event_trust import RateLimiter, client_address, parse_networks, retry_after, viewer_country
from framelog.api.events import EventError, RequestError
from framelog.processors.playback_session import issue_session, verify_session
from framelog.processors.tokens import TokenError

SECRET = b"unit-test-secret-0123456789abcdef"
NOW = 1_767_225_600.0


def session(**kw):
    args = dict(secret=SECRET, now=NOW, ttl=600, session_id="sid1", video_id="vid_1", viewer_id="alice",
                country="DE", basis="alice+jti1", share_expires_at=int(NOW) + 3600, view_recorded=True)
    args.update(kw)
    return issue_session(**args)


def test_session_round_trip_and_renewal():
    token, claims = session()
    got = verify_session(token, secret=SECRET, now=NOW + 1, video_id="vid_1")
    assert got == claims and got.expires_at == int(NOW) + 600
    renewed, again = issue_session(got, secret=SECRET, now=NOW + 300, ttl=600)
    assert renewed != token and again.expires_at == int(NOW) + 900
    assert (again.session_id, again.viewer_id, again.country, again.basis) == ("sid1", "alice", "DE", "alice+jti1")


@pytest.mark.parametrize("mutate,reason", [
    (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "bad_signature"),
    (lambda t: "x" + t, "bad_signature"),
    (lambda t: t.replace(".", ""), "malformed"),
    (lambda t: "", "malformed"),
])
def test_forged_sessions_are_refused(mutate, reason):
    token, _ = session()
    with pytest.raises(TokenError) as info:
        verify_session(mutate(token), secret=SECRET, now=NOW)
    assert info.value.reason == reason


def test_expired_other_secret_and_other_video():
    token, _ = session()
    with pytest.raises(TokenError) as info:
        verify_session(token, secret=SECRET, now=NOW + 600)
    assert info.value.reason == "expired"
    with pytest.raises(TokenError) as info:
        verify_session(token, secret=b"another-secret-0123456789abcdef!", now=NOW)
    assert info.value.reason == "bad_signature"
    with pytest.raises(TokenError) as info:
        verify_session(token, secret=SECRET, now=NOW, video_id="vid_2")
    assert info.value.reason == "wrong_video"


def test_session_binds_the_events():
    _, claims = session()
    p = ev.parse_event({"type": "progress", "client_time": int(NOW * 1000)}, ingest_ms=int(NOW * 1000),
                       country="DE", session=claims)
    assert (p.record["video_id"], p.record["session_id"], p.record["viewer_id"]) == ("vid_1", "sid1", "alice")
    with pytest.raises(EventError) as info:
        ev.parse_event({"type": "progress", "video_id": "vid_2", "client_time": int(NOW * 1000)},
                       ingest_ms=int(NOW * 1000), country=None, session=claims)
    assert (info.value.status, info.value.reason, info.value.field) == (403, "session_wrong_video", "video_id")
    with pytest.raises(EventError) as info:
        ev.parse_events([{"type": "pause", "client_time": int(NOW * 1000)},
                         {"type": "pause", "viewer_id": "mallory", "client_time": int(NOW * 1000)}],
                        ingest_ms=int(NOW * 1000), country=None, session=claims)
    assert (info.value.status, info.value.reason, info.value.event_index) == (400, "session_mismatch", 1)
    with pytest.raises(EventError) as info:
        ev.parse_event({"type": "view_start", "client_time": int(NOW * 1000)}, ingest_ms=int(NOW * 1000),
                       country=None, session=claims)
    assert info.value.reason == "view_already_recorded"
    _, unrecorded = session(view_recorded=False)              # the stream API could not record the start
    assert ev.parse_event({"type": "view_start", "client_time": int(NOW * 1000)}, ingest_ms=int(NOW * 1000),
                          country=None, session=unrecorded).record["type"] == "view_start"


def test_gzip_member_limit():
    one = gzip.compress(b'{"events": [1]}')
    assert ev.decode_body(one * 2, "gzip", 1 << 20, max_gzip_members=2)
    with pytest.raises(RequestError) as info:
        ev.decode_body(gzip.compress(b" ") * 3, "gzip", 1 << 20, max_gzip_members=2)
    assert (info.value.status, info.value.reason) == (413, "too_many_gzip_members")


def test_body_session_field():
    assert ev.parse_body(b'{"session": "tok", "events": [{}]}', 10) == ([{}], "tok")
    assert ev.parse_body(b'[{}]', 10) == ([{}], None)
    with pytest.raises(RequestError):
        ev.parse_body(b'{"session": 5, "events": [{}]}', 10)


def test_rate_limiter_token_bucket():
    t = [0.0]
    limiter = RateLimiter(rate=2, burst=3, size=2, clock=lambda: t[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)
    t[0] = 0.5
    assert limiter.take("a") == 0
    assert limiter.take("b", 10) == 0                        # more than the burst: the whole bucket
    assert limiter.take("b") > 0
    limiter.take("c")                                        # size 2: "a" is dropped (least recently used)
    assert limiter.take("a", 3) == 0
    assert retry_after(0.2) == "1" and retry_after(2.1) == "3"


def test_client_address_and_country_believe_trusted_proxies_only():
    trusted = parse_networks(("10.0.0.0/8", "::1/128"))
    assert client_address("192.0.2.1", "203.0.113.9", trusted) == "192.0.2.1"          # untrusted peer
    assert client_address("10.1.1.1", "203.0.113.9, 10.2.2.2", trusted) == "203.0.113.9"
    assert client_address("10.1.1.1", "198.51.100.1, 203.0.113.9", trusted) == "203.0.113.9"   # right-most
    assert client_address("10.1.1.1", "garbage", trusted) == "10.1.1.1"
    assert client_address("::1", "[2001:db8::1]:443", trusted) == "2001:db8::1"
    assert client_address("10.1.1.1", None, ()) == "10.1.1.1"
    assert viewer_country("AQ") == "AQ" and viewer_country("aq") is None and viewer_country("XX") is None


def test_event_ids_stay_stable_under_binding():
    _, claims = session()
    e = {"type": "pause", "client_time": int(NOW * 1000), "event_id": str(uuid.uuid4())}
    parsed = ev.parse_event(e, ingest_ms=int(NOW * 1000), country=None, session=claims)
    assert parsed.record["event_id"] == e["event_id"]
