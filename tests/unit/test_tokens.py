"""Share tokens and signed playback URLs: forged, expired, revoked, other-video, tampered."""
import base64
import copy
import json
import os
import stat
import threading
from urllib.parse import parse_qsl, urlencode

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.core.errors import ConfigError, FramelogError, InvalidIdError
from framelog.processors.tokens import (
    BadSignatureError,
    ExpiredTokenError,
    MalformedTokenError,
    RevokedTokenError,
    TokenError,
    WrongPathError,
    WrongVideoError,
    WrongViewerError,
    issue_share_token,
    load_or_create_secret,
    secret_path,
    sign_playback,
    verify_playback,
    verify_share_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
NOW = 1_750_000_000.0


def make_config(tmp_path=None, token_secret=""):
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    if tmp_path is not None:
        raw["stack"]["state_dir"] = str(tmp_path / "state")
    raw["security"]["token_secret"] = token_secret
    return build_config(raw)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("FRAMELOG_STATE_DIR", raising=False)
    monkeypatch.delenv("FRAMELOG_TOKEN_SECRET", raising=False)


@pytest.fixture(scope="module")
def cfg():
    return make_config()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ------------------------------------------------------------ share tokens

def test_share_token_round_trip(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    assert t.expires_at == int(NOW + cfg.security.share_token_ttl)
    claims = verify_share_token(t.token, secret=SECRET, now=NOW, video_id="vid1", revoked=set())
    assert (claims.video_id, claims.token_id, claims.expires_at) == ("vid1", t.token_id, t.expires_at)


def test_token_ids_are_unique_and_can_be_given(cfg):
    a = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    b = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    assert a.token_id != b.token_id and a.token != b.token
    c = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW, token_id="link-42")
    assert verify_share_token(c.token, secret=SECRET, now=NOW).token_id == "link-42"
    with pytest.raises(ValueError):
        issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW, token_id="bad id")


def test_expiry_boundary(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW, ttl=60)
    verify_share_token(t.token, secret=SECRET, now=NOW + 59.999)
    with pytest.raises(ExpiredTokenError) as e:
        verify_share_token(t.token, secret=SECRET, now=NOW + 60)
    assert e.value.reason == "expired"


def test_forged_with_another_secret(cfg):
    t = issue_share_token("vid1", cfg.security, secret=OTHER_SECRET, now=NOW)
    with pytest.raises(BadSignatureError) as e:
        verify_share_token(t.token, secret=SECRET, now=NOW)
    assert e.value.reason == "bad_signature"


def _resign_payload(token, change):
    payload, sig = token.split(".")
    data = json.loads(unb64(payload))
    change(data)
    return b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode()) + "." + sig


@pytest.mark.parametrize("field, value", [("vid", "vid2"), ("exp", 9_999_999_999), ("jti", "other")])
def test_tampered_fields_break_the_signature(cfg, field, value):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    forged = _resign_payload(t.token, lambda d: d.__setitem__(field, value))
    with pytest.raises(BadSignatureError):
        verify_share_token(forged, secret=SECRET, now=NOW)


def test_every_single_character_change_is_refused(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW).token
    for i, ch in enumerate(t):
        for repl in {"A", "B", "-", "_", "."} - {ch}:
            with pytest.raises((BadSignatureError, MalformedTokenError)):
                verify_share_token(t[:i] + repl + t[i + 1:], secret=SECRET, now=NOW)


def test_other_video(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    with pytest.raises(WrongVideoError) as e:
        verify_share_token(t.token, secret=SECRET, now=NOW, video_id="vid2")
    assert e.value.reason == "wrong_video"


def test_revoked_by_set_and_by_callback(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    with pytest.raises(RevokedTokenError) as e:
        verify_share_token(t.token, secret=SECRET, now=NOW, revoked={t.token_id})
    assert e.value.reason == "revoked"
    asked = []
    with pytest.raises(RevokedTokenError):
        verify_share_token(t.token, secret=SECRET, now=NOW, revoked=lambda jti: asked.append(jti) or True)
    assert asked == [t.token_id]
    verify_share_token(t.token, secret=SECRET, now=NOW, revoked=lambda jti: False)


def test_forged_tokens_never_reach_the_revocation_callback(cfg):
    t = issue_share_token("vid1", cfg.security, secret=OTHER_SECRET, now=NOW)

    def revoked(jti):
        raise AssertionError("callback called for a forged token")
    with pytest.raises(BadSignatureError):
        verify_share_token(t.token, secret=SECRET, now=NOW, revoked=revoked)


@pytest.mark.parametrize("bad", [
    "", "abc", "a.b.c", ".sig", "payload.", "pay load.sig", "päyload.sig", 42, None, "x" * 5000 + ".y",
])
def test_malformed_tokens(bad):
    with pytest.raises(MalformedTokenError) as e:
        verify_share_token(bad, secret=SECRET, now=NOW)
    assert e.value.reason == "malformed"


def test_validly_signed_garbage_is_malformed():
    from framelog.processors.tokens import _SHARE_DOMAIN, _mac
    for payload in [b"not json", b"[]", b'{"v":2,"typ":"share"}',
                    b'{"v":1,"typ":"share","vid":"../x","jti":"a","exp":1}',
                    b'{"v":1,"typ":"share","vid":"v","jti":"a","exp":"1"}',
                    b'{"v":1,"typ":"share","vid":"v","jti":"a b","exp":1}']:
        p = b64(payload)
        with pytest.raises(MalformedTokenError):
            verify_share_token(p + "." + _mac(SECRET, _SHARE_DOMAIN + p.encode()), secret=SECRET, now=0)


def test_errors_are_framelog_errors():
    assert issubclass(TokenError, FramelogError)
    for cls in (MalformedTokenError, BadSignatureError, ExpiredTokenError, WrongVideoError,
                RevokedTokenError, WrongPathError, WrongViewerError):
        assert issubclass(cls, TokenError)


def test_issue_validates_inputs(cfg):
    with pytest.raises(InvalidIdError):
        issue_share_token("../x", cfg.security, secret=SECRET, now=NOW)
    with pytest.raises(ValueError):
        issue_share_token("vid1", cfg.security, secret=b"short", now=NOW)
    with pytest.raises(ValueError):
        issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW, ttl=0)


# ------------------------------------------------------------ signed playback URLs

def sign(cfg, **kw):
    args = dict(secret=SECRET, now=NOW)
    args.update(kw)
    return sign_playback("vid1", "/hls/vid1/", cfg.security, **args)


def test_playback_round_trip(cfg):
    q = sign(cfg, viewer_id="bob")
    params = dict(parse_qsl(q))
    assert set(params) == {"video", "prefix", "exp", "viewer", "sig"}
    assert params["exp"] == str(int(NOW + cfg.security.stream_url_ttl))
    claims = verify_playback(q, video_id="vid1", path="/hls/vid1/720p/seg_001.ts", secret=SECRET, now=NOW,
                             viewer_id="bob")
    assert (claims.video_id, claims.path_prefix, claims.viewer_id) == ("vid1", "/hls/vid1/", "bob")
    # a Mapping (a web framework's query params) works as well as the raw string
    verify_playback(params, video_id="vid1", path="/hls/vid1/master.m3u8", secret=SECRET, now=NOW)
    verify_playback("?" + q, video_id="vid1", path="/hls/vid1/master.m3u8", secret=SECRET, now=NOW)


def test_playback_without_viewer(cfg):
    q = sign(cfg)
    assert "viewer" not in dict(parse_qsl(q))
    assert verify_playback(q, video_id="vid1", path="/hls/vid1/x.ts", secret=SECRET, now=NOW,
                           viewer_id="anyone").viewer_id is None


def test_playback_expiry(cfg):
    q = sign(cfg, ttl=10)
    verify_playback(q, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW + 9)
    with pytest.raises(ExpiredTokenError):
        verify_playback(q, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW + 10)


def test_playback_forged(cfg):
    q = sign(cfg, secret=OTHER_SECRET)
    with pytest.raises(BadSignatureError):
        verify_playback(q, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)


@pytest.mark.parametrize("field, value", [
    ("video", "vid2"), ("prefix", "/hls/"), ("exp", "9999999999"), ("viewer", "mallory")])
def test_playback_tampered_fields(cfg, field, value):
    params = dict(parse_qsl(sign(cfg, viewer_id="bob")))
    params[field] = value
    with pytest.raises(BadSignatureError):
        verify_playback(urlencode(params), video_id=params["video"], path="/hls/vid2/a.ts", secret=SECRET, now=NOW)


def test_playback_dropping_the_viewer_breaks_the_signature(cfg):
    params = dict(parse_qsl(sign(cfg, viewer_id="bob")))
    del params["viewer"]
    with pytest.raises(BadSignatureError):
        verify_playback(params, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)


def test_playback_other_video(cfg):
    with pytest.raises(WrongVideoError):
        verify_playback(sign(cfg), video_id="vid2", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)


@pytest.mark.parametrize("path", [
    "/thumbnails/vid1/p.jpg", "/hls/vid2/a.ts", "/hls/vid1/../vid2/a.ts", "/hls/vid1/%2e%2e/x",
    "hls/vid1/a.ts", "/hls/vid1/a.ts\n", ""])
def test_playback_wrong_path(cfg, path):
    with pytest.raises(WrongPathError) as e:
        verify_playback(sign(cfg), video_id="vid1", path=path, secret=SECRET, now=NOW)
    assert e.value.reason == "wrong_path"


def test_prefix_without_trailing_slash_stops_at_a_segment_boundary(cfg):
    q = sign_playback("vid1", "/hls/vid1", cfg.security, secret=SECRET, now=NOW)
    verify_playback(q, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)
    verify_playback(q, video_id="vid1", path="/hls/vid1", secret=SECRET, now=NOW)
    with pytest.raises(WrongPathError):
        verify_playback(q, video_id="vid1", path="/hls/vid10/a.ts", secret=SECRET, now=NOW)


def test_playback_wrong_viewer(cfg):
    with pytest.raises(WrongViewerError) as e:
        verify_playback(sign(cfg, viewer_id="bob"), video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET,
                        now=NOW, viewer_id="mallory")
    assert e.value.reason == "wrong_viewer"


@pytest.mark.parametrize("query", [
    "", "exp=1&sig=abc", "video=vid1&prefix=/hls/vid1/&exp=soon&sig=abc",
    "video=vid1&prefix=/hls/vid1/&exp=1&sig=a+b", "video=../x&prefix=/hls/&exp=1&sig=abc",
    "video=vid1&prefix=/hls/../&exp=1&sig=abc", "video=vid1&video=vid1&prefix=/hls/vid1/&exp=1&sig=abc",
    "video=vid1&prefix=/hls/vid1/&exp=1&viewer=a%20b&sig=abc", "&&&", {"video": 1},
])
def test_playback_malformed(query):
    with pytest.raises(MalformedTokenError):
        verify_playback(query, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)


def test_sign_playback_validates_inputs(cfg):
    for prefix in ["hls/vid1/", "/hls/../vid1/", "/hls/", "/hls/vid1?x", "/hls/vid10/"]:
        with pytest.raises(ValueError):
            sign_playback("vid1", prefix, cfg.security, secret=SECRET, now=NOW)
    with pytest.raises(ValueError):
        sign_playback("vid1", "/hls/vid1/", cfg.security, secret=SECRET, now=NOW, viewer_id="a b")


def test_share_and_playback_signatures_do_not_cross(cfg):
    t = issue_share_token("vid1", cfg.security, secret=SECRET, now=NOW)
    params = dict(parse_qsl(sign(cfg)))
    params["sig"] = t.token.split(".")[1]
    with pytest.raises(BadSignatureError):
        verify_playback(params, video_id="vid1", path="/hls/vid1/a.ts", secret=SECRET, now=NOW)


# ------------------------------------------------------------ secret

def test_configured_secret_wins(tmp_path):
    c = make_config(tmp_path, token_secret="a-configured-secret-of-enough-length")
    assert load_or_create_secret(c.security, c.stack.state_dir) == b"a-configured-secret-of-enough-length"
    assert not secret_path(c.stack.state_dir).exists()


def test_short_configured_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="security.token_secret"):
        c = make_config(tmp_path, token_secret="short")
        load_or_create_secret(c.security, c.stack.state_dir)


def test_env_secret_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMELOG_TOKEN_SECRET", "from-the-environment-0123")
    c = make_config(tmp_path)
    assert load_or_create_secret(c.security, c.stack.state_dir) == b"from-the-environment-0123"


def test_generated_secret_is_persisted_with_0600(tmp_path):
    c = make_config(tmp_path)
    s1 = load_or_create_secret(c.security, c.stack.state_dir)
    path = secret_path(c.stack.state_dir)
    assert path == tmp_path / "state" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(s1) >= 32
    assert load_or_create_secret(c.security, c.stack.state_dir) == s1
    assert os.listdir(path.parent) == ["secret"]   # no temporary files left behind
    other = make_config(tmp_path / "elsewhere")
    assert load_or_create_secret(other.security, other.stack.state_dir) != s1


def test_loose_permissions_are_tightened(tmp_path):
    c = make_config(tmp_path)
    load_or_create_secret(c.security, c.stack.state_dir)
    os.chmod(secret_path(c.stack.state_dir), 0o644)
    load_or_create_secret(c.security, c.stack.state_dir)
    assert stat.S_IMODE(secret_path(c.stack.state_dir).stat().st_mode) == 0o600


def test_truncated_secret_file_is_refused(tmp_path):
    c = make_config(tmp_path)
    secret_path(c.stack.state_dir).parent.mkdir(parents=True)
    secret_path(c.stack.state_dir).write_text("tiny\n")
    with pytest.raises(FramelogError, match="shorter"):
        load_or_create_secret(c.security, c.stack.state_dir)


def test_concurrent_creation_agrees(tmp_path):
    c = make_config(tmp_path)
    results, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(load_or_create_secret(c.security, c.stack.state_dir))
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
