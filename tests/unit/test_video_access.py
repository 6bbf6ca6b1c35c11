"""Access decisions and the catalog fold, without Kafka: policies, share links, grants."""
from __future__ import annotations

import pytest

from framelog.core.config import get_config
from framelog.processors.access import Viewer, Visibility
from framelog.processors.tokens import issue_share_token
from framelog.processors.video_access import (
    CatalogFold,
    VideoPolicy,
    grant_viewer,
    key_access,
    narrows_access,
    parse_grant_viewer,
    stream_access,
    with_changes,
)

SECRET = b"unit-test-secret-0123456789"
OTHER_SECRET = b"another-secret-0123456789ab"
NOW = 1_800_000_000.0
VID = "vid_access_1"

OWNER = Viewer("alice")
MEMBER = Viewer("bob", frozenset({"ws-1"}))
STRANGER = Viewer("eve", frozenset({"ws-9"}))


@pytest.fixture(scope="module")
def config():
    return get_config()


def fold_with(*records: tuple[str, dict]) -> CatalogFold:
    fold = CatalogFold()
    for name, rec in records:
        fold.apply(name, {"video_id": VID, **rec})
    return fold


def policy(visibility: str, workspace: str | None = "ws-1") -> tuple[str, dict]:
    return "AccessPolicy", {"owner_id": "alice", "workspace_id": workspace, "visibility": visibility}


def issued(jti: str, exp_ms: int = int((NOW + 3600) * 1000)) -> tuple[str, dict]:
    return "ShareLink", {"token_id": jti, "action": "issued", "expires_at": exp_ms, "event_time": int(NOW * 1000)}


def revoked(jti: str) -> tuple[str, dict]:
    return "ShareLink", {"token_id": jti, "action": "revoked", "expires_at": None, "event_time": int(NOW * 1000)}


def decide(fold, viewer, token=None, now=NOW):
    entry = fold.get(VID)
    return stream_access(entry, entry.effective_policy("private"), viewer, token, secret=SECRET, now=now)


# ------------------------------------------------------------------ the fold

def test_latest_policy_wins_and_revocations_outlive_policy_changes():
    fold = fold_with(policy("share_link"), issued("j1"), revoked("j1"), policy("public"), policy("share_link"))
    entry = fold.get(VID)
    assert entry.policy == VideoPolicy("alice", "ws-1", Visibility.SHARE_LINK)
    assert entry.revoked("j1") and not entry.revoked("j2")


def test_uploader_with_default_visibility_when_no_policy_was_written():
    fold = fold_with(("UploadCompleted", {"owner_id": "carol"}))
    assert fold.get(VID).effective_policy("private") == VideoPolicy("carol", None, Visibility.PRIVATE)
    assert CatalogFold().get(VID) is None


def test_unknown_visibility_symbol_is_ignored_and_deletion_and_assets_are_kept():
    fold = fold_with(policy("public"), ("AccessPolicy", {"owner_id": "x", "visibility": "unknown"}),
                     ("AssetPublished", {"renditions": [{"name": "720p"}]}),
                     ("VideoDeleted", {"event_time": 5}), ("VideoDeleted", {"event_time": 3}))
    entry = fold.get(VID)
    assert entry.policy.visibility is Visibility.PUBLIC and entry.policy.owner_id == "alice"
    assert entry.deleted and entry.deleted_at_ms == 3
    assert entry.asset["renditions"][0]["name"] == "720p"


def test_get_returns_a_copy():
    fold = fold_with(policy("public"))
    fold.get(VID).share_links["x"] = None
    assert fold.get(VID).share_links == {}


# ------------------------------------------------------------------ stream decisions

@pytest.mark.parametrize("visibility,viewer,expected", [
    ("public", None, "public"), ("public", STRANGER, "public"),
    ("private", None, None), ("private", STRANGER, None), ("private", OWNER, "owner"), ("private", MEMBER, "workspace"),
    ("share_link", None, None), ("share_link", MEMBER, "workspace"), ("share_link", OWNER, "owner"),
])
def test_visibility_rules(visibility, viewer, expected):
    d = decide(fold_with(policy(visibility)), viewer)
    assert d.reason == expected
    if expected is None:
        assert d.refusal


def test_share_token_opens_a_share_link_video(config):
    tok = issue_share_token(VID, config.security, secret=SECRET, now=NOW, ttl=600)
    fold = fold_with(policy("share_link"), issued(tok.token_id))
    d = decide(fold, None, tok.token)
    assert d.reason == "share_token" and d.share.token_id == tok.token_id


@pytest.mark.parametrize("case", ["forged", "expired", "revoked", "other_video", "garbage", "private"])
def test_share_token_refusals(config, case):
    tok = issue_share_token(VID, config.security, secret=SECRET, now=NOW, ttl=600)
    records = [policy("private" if case == "private" else "share_link"), issued(tok.token_id)]
    token, now = tok.token, NOW
    if case == "forged":
        token = issue_share_token(VID, config.security, secret=OTHER_SECRET, now=NOW, ttl=600).token
    elif case == "expired":
        now = NOW + 601
    elif case == "revoked":
        records.append(revoked(tok.token_id))
    elif case == "other_video":
        token = issue_share_token("another_video", config.security, secret=SECRET, now=NOW, ttl=600).token
    elif case == "garbage":
        token = "not-a-token"
    d = decide(fold_with(*records), None, token, now=now)
    assert not d.allowed
    expected = {"forged": "bad_signature", "expired": "expired", "revoked": "revoked",
                "other_video": "wrong_video", "garbage": "malformed", "private": "private"}[case]
    assert expected in d.refusal


def test_a_bad_share_token_does_not_stop_the_owner(config):
    d = decide(fold_with(policy("share_link")), OWNER, "forged.token")
    assert d.reason == "owner"


# ------------------------------------------------------------------ grants and key-time checks

def test_grant_viewer_claims_round_trip():
    from framelog.processors.tokens import ShareClaims
    from framelog.processors.video_access import AccessDecision

    share = ShareClaims("jti-9", VID, 0)
    assert grant_viewer(None, AccessDecision("public")) is None
    assert grant_viewer(OWNER, AccessDecision("owner")) == "alice"
    assert grant_viewer(None, AccessDecision("share_token", share=share)) == "+jti-9"
    assert grant_viewer(MEMBER, AccessDecision("share_token", share=share)) == "bob+jti-9"
    for claim, parsed in [(None, (None, None)), ("alice", ("alice", None)), ("+jti-9", (None, "jti-9")),
                          ("bob+jti-9", ("bob", "jti-9"))]:
        assert parse_grant_viewer(claim) == parsed


def key_decision(records, claim, viewer):
    entry = fold_with(*records).get(VID)
    return key_access(entry, entry.effective_policy("private"), claim, viewer)


def test_key_access_rechecks_the_basis_of_the_grant():
    assert key_decision([policy("public")], None, None).allowed
    assert not key_decision([policy("private")], None, None).allowed                  # made private since
    assert key_decision([policy("private")], "alice", OWNER).reason == "owner"
    assert not key_decision([policy("private")], "alice", None).allowed               # bound, no token sent
    assert not key_decision([policy("private")], "alice", STRANGER).allowed           # bound to another viewer
    assert key_decision([policy("share_link"), issued("j1")], "+j1", None).reason == "share_token"
    d = key_decision([policy("share_link"), issued("j1"), revoked("j1")], "+j1", None)
    assert not d.allowed and "revoked" in d.refusal
    assert not key_decision([policy("share_link")], "+never-issued", None).allowed
    assert not key_decision([policy("private"), issued("j1")], "+j1", None).allowed   # private disables links


def test_narrowing_access():
    pub, shr, prv = (VideoPolicy("alice", "ws-1", v) for v in (Visibility.PUBLIC, Visibility.SHARE_LINK,
                                                                 Visibility.PRIVATE))
    assert narrows_access(pub, shr) and narrows_access(pub, prv) and narrows_access(shr, prv)
    assert not narrows_access(prv, pub) and not narrows_access(shr, pub) and not narrows_access(None, prv)
    assert narrows_access(prv, with_changes(prv, workspace_id="ws-2"))
    assert not narrows_access(with_changes(prv, workspace_id=None), with_changes(prv, workspace_id="ws-2"))
    assert with_changes(prv, visibility=Visibility.PUBLIC).workspace_id == "ws-1"


def test_status_fold_says_deleted_for_good():
    from framelog.schemas.events import new_event
    from framelog.views.status import StatusFold

    fold = StatusFold(("validation", "cdn_upload"))
    fold.apply(new_event("StageTransition", video_id=VID, job_id="j", stage="validation", state="started",
                         event_time=1_000))
    fold.delete(VID, 2_000)
    fold.apply(new_event("StageTransition", video_id=VID, job_id="j", stage="cdn_upload", state="succeeded",
                         event_time=3_000))                  # a job still running at deletion finishes
    view = fold.view(VID)
    assert view["state"] == "deleted" and view["deleted_at"].startswith("1970-01-01T00:00:02")
    fold.delete("only-uploaded", 5_000)                      # deleted before any transition
    assert fold.view("only-uploaded")["state"] == "deleted" and fold.view("never") is None
