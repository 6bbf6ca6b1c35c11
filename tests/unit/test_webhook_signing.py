"""Standard Webhooks signing, ids, secrets, targets and retry timing (pure functions)."""
from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from framelog.processors import webhook_signing as ws
from framelog.processors.webhook_targets import TargetRefused, check_addresses, parse_target
from framelog.processors.webhooks import EndpointFold, WebhookEvent, backoff_delay, derive, subscribers

# The specification's test vector (standard-webhooks, libraries/python/tests/test_webhooks.py: test_sign_function)
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specification_vector():
    assert ws.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    assert ws.sign(SPEC_SECRET[len("whsec_"):], SPEC_ID, SPEC_TS, SPEC_BODY.encode()) == SPEC_SIG


def test_signed_headers_verify_with_the_reference_library_and_our_verifier():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    secret = ws.derive_secret(b"m" * 32, "ep_x", "salt")
    now = int(datetime.now(UTC).timestamp())
    headers = ws.signed_headers(secret, "msg_1", now, '{"a":1}')
    assert standardwebhooks.Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    assert ws.verify(secret, headers, '{"a":1}', now=now)
    assert not ws.verify(secret, headers, '{"a":2}', now=now)
    assert not ws.verify(secret, headers, '{"a":1}', now=now + 301)          # replayed too late
    other = ws.derive_secret(b"m" * 32, "ep_y", "salt")
    assert not ws.verify(other, headers, '{"a":1}', now=now)


def test_secrets_are_derived_per_endpoint_and_salt():
    a = ws.derive_secret(b"k" * 32, "ep_1", "s1")
    assert a.startswith("whsec_") and len(ws.secret_key(a)) == 32
    assert a == ws.derive_secret(b"k" * 32, "ep_1", "s1")
    assert len({a, ws.derive_secret(b"k" * 32, "ep_2", "s1"), ws.derive_secret(b"k" * 32, "ep_1", "s2"),
                ws.derive_secret(b"j" * 32, "ep_1", "s1")}) == 4


def test_message_ids_are_stable_per_endpoint_and_event():
    m = ws.message_id("ep_1", "video.ready", "evt-1")
    assert m == ws.message_id("ep_1", "video.ready", "evt-1") and m.startswith("msg_")
    assert m != ws.message_id("ep_2", "video.ready", "evt-1") != ws.message_id("ep_1", "video.ready", "evt-2")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x", "javascript:alert(1)",
                                 "http://user:pw@example.com/", "http:///nohost", "//example.com", "",
                                 "http://exa mple.com/", "http://example.com/#frag", "x" * 3000])
def test_only_plain_http_urls(url):
    with pytest.raises(TargetRefused):
        parse_target(url)


def test_urls_parse():
    assert parse_target("https://Hooks.Example.com/a?b=c").port == 443
    assert parse_target("http://127.0.0.1:8080/x").host == "127.0.0.1"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1",
                                     "100.64.0.1", "240.0.0.1"])
def test_non_public_addresses_are_refused(address):
    with pytest.raises(TargetRefused):
        check_addresses("h", [address], ())


def test_one_bad_address_among_good_ones_refuses_the_host():
    with pytest.raises(TargetRefused):
        check_addresses("h", ["93.184.216.34", "127.0.0.1"], ())
    check_addresses("h", ["93.184.216.34"], ())


def test_allow_list_admits_only_its_networks():
    check_addresses("h", ["127.0.0.1"], ("127.0.0.1/32",))
    with pytest.raises(TargetRefused):
        check_addresses("h", ["127.0.0.2"], ("127.0.0.1/32",))
    with pytest.raises(TargetRefused):
        check_addresses("h", ["10.0.0.1"], ("127.0.0.0/8",))


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    assert [backoff_delay(n, 5, 60, 0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    rng = random.Random(7)
    for n in range(1, 10):
        d = backoff_delay(n, 5, 60, 0.2, rng)
        base = min(60, 5 * 2 ** (n - 1))
        assert base <= d <= base * 1.2


def _rec(**kw):
    return {"event_id": "e1", "video_id": "v1", "event_time": 1_700_000_000_000, **kw}


def test_derivation_from_source_records():
    assert derive("UploadCompleted", _rec(size_bytes=3, owner_id="alice"), "validation").type == "upload.completed"
    assert derive("StageTransition", _rec(stage="validation", state="queued", attempt=1), "validation").type \
        == "video.processing"
    assert derive("StageTransition", _rec(stage="transcoding", state="queued", attempt=1), "validation") is None
    assert derive("StageTransition", _rec(stage="transcoding", state="started"), "validation") is None
    failed = derive("StageTransition", _rec(stage="transcoding", state="failed", error_type="timeout"), "validation")
    assert failed.type == "video.failed" and failed.data["stage"] == "transcoding"
    assert derive("AssetPublished", _rec(renditions=[]), "validation").type == "video.ready"
    assert derive("TierTransition", _rec(from_tier="hot", to_tier="warm"), "validation").type == "tier.changed"
    assert derive("VideoDeleted", _rec(), "validation").type == "video.deleted"
    assert derive("PlaybackEvent", _rec(), "validation") is None
    body = derive("VideoDeleted", _rec(), "validation").body()
    assert body == derive("VideoDeleted", _rec(), "validation").body() and '"type":"video.deleted"' in body


def test_routing_by_owner_workspace_type_and_registration_time():
    fold = EndpointFold()
    base = dict(action="registered", url="https://x", secret_salt="s", created_at=1000)
    fold.apply(dict(base, endpoint_id="ep_own", owner_id="alice"))
    fold.apply(dict(base, endpoint_id="ep_ws", owner_id="bob", workspace_id="team"))
    fold.apply(dict(base, endpoint_id="ep_ready", owner_id="alice", event_types=["video.ready"]))
    fold.apply(dict(base, endpoint_id="ep_late", owner_id="alice", created_at=5000))
    fold.apply(dict(base, endpoint_id="ep_gone", owner_id="alice"))
    fold.apply(dict(base, endpoint_id="ep_gone", owner_id="alice", action="deleted"))
    ev = WebhookEvent("video.failed", "v1", 2000, "e", {})
    assert [e.endpoint_id for e in subscribers(fold.live(), ev, "alice", "team")] == ["ep_own", "ep_ws"]
    assert [e.endpoint_id for e in subscribers(fold.live(), ev, "carol", None)] == []
    ready = WebhookEvent("video.ready", "v1", 6000, "e", {})
    assert [e.endpoint_id for e in subscribers(fold.live(), ready, "alice", None)] == ["ep_late", "ep_own", "ep_ready"]
