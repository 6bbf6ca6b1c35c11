"""Every door of the API asks who is knocking (issue 11, point 2), replayed against the real API.

The findings: anonymous 200 on a private video's analytics, a public /metrics
and /docs, POST /v1/sql without credentials, an anonymous upload naming its
owner, and another user's open upload completed or abandoned by an attacker.
Each case here fails if that door reopens. The API runs as `framelog api`
(both listeners, the stack's keyring); upload refusals also run in-process.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import time
import uuid
from dataclasses import replace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framelog.api import auth as auth_routes
from framelog.api import videos
from framelog.api.app import assemble
from framelog.api.upload_protocol import MIB, OFFSET_CONTENT_TYPE, encode_upload_metadata
from framelog.core.config import Config
from framelog.processors.identity import ANALYTICS_READ, OPS, VIDEOS_WRITE, Keyring, mint_token
from framelog.sinks.object_store import ObjectStore
from framelog.stack.services import ApiService
from tests.integration.support import running

pytestmark = pytest.mark.integration

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": OFFSET_CONTENT_TYPE}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_user(config: Config, sub: str, *scopes: str, ws: tuple[str, ...] = ()) -> dict[str, str]:
    return bearer(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                             sub, workspaces=ws, scopes=scopes or (VIDEOS_WRITE,)))


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(config: Config) -> dict[str, str]:
    """An analyst's token, broken every way an attacker would try."""
    keyring = Keyring(config.auth, config.stack.state_dir)
    key = keyring.current()
    now = int(time.time())
    body = {"iss": config.auth.issuer, "aud": config.auth.audience, "sub": "mallory", "ws": [],
            "scope": f"{ANALYTICS_READ} {OPS}", "iat": now, "nbf": now, "exp": now + 600}
    public_pem = key.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    hs_sig = base64.urlsafe_b64encode(hmac.new(public_pem, f"{hs_head}.{b64(body)}".encode(), hashlib.sha256)
                                      .digest()).rstrip(b"=").decode()
    genuine = mint_token(config.auth, keyring, "mallory", scopes=[VIDEOS_WRITE])
    head, _, sig = genuine.split(".")
    return {
        "other_key": jwt.encode(body, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA",
                                headers={"kid": key.kid}),
        "alg_none": f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{b64(body)}.",
        "hs256_with_public_key": f"{hs_head}.{b64(body)}.{hs_sig}",
        "tampered_payload": f"{head}.{b64(body)}.{sig}",
        "expired": jwt.encode({**body, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, key.private_key,
                              algorithm="EdDSA", headers={"kid": key.kid}),
        "wrong_audience": jwt.encode({**body, "aud": "some-other-api"}, key.private_key, algorithm="EdDSA",
                                     headers={"kid": key.kid}),
        "unknown_kid": jwt.encode(body, key.private_key, algorithm="EdDSA", headers={"kid": "made-up"}),
        "garbage": "forged.token",
    }


@pytest.fixture(scope="module")
def api(stack, config) -> str:
    with running(ApiService(config), 120) as service:
        yield service.address


@pytest.fixture(scope="module")
def ops_url(api, config) -> str:
    return f"http://{config.auth.ops_host}:{config.ops_port}"


def upload_video(api: str, headers: dict[str, str], **meta: str) -> str:
    """A tiny complete upload (the API only needs its access policy, not a playable file)."""
    body = os.urandom(64)
    r = httpx.post(f"{api}/videos", headers={**TUS, **headers, "Upload-Length": str(len(body)),
                                             "Upload-Metadata": encode_upload_metadata(meta)}, timeout=30)
    assert r.status_code == 201, r.text
    vid = r.json()["video_id"]
    r = httpx.patch(f"{api}/videos/{vid}/upload", content=body, headers={**PATCH, **headers, "Upload-Offset": "0"},
                    timeout=30)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(body)), r.text
    return vid


# ------------------------------------------------------------------ the operator listener

def test_metrics_and_docs_only_on_the_operator_listener(api, ops_url, config):
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        assert httpx.get(f"{api}{path}", timeout=10).status_code == 404, path
    metrics = httpx.get(f"{ops_url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    assert httpx.get(f"{ops_url}/docs", timeout=10).status_code == 200
    paths = httpx.get(f"{ops_url}/openapi.json", timeout=10).json()["paths"]
    assert "/v1/sql" in paths and "/metrics" not in paths
    assert config.auth.ops_host == "127.0.0.1" and config.ops_port != config.stack.api_port


def test_the_operator_listener_is_not_reachable_on_other_interfaces(ops_url, config):
    """Bound to loopback: through the host's own non-loopback address the port is closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))          # no packet is sent: this only picks the outgoing address
            address = probe.getsockname()[0]
        except OSError:
            pytest.skip("no non-loopback IPv4 address on this machine")
    if address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address on this machine")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{address}:{config.ops_port}/metrics", timeout=5)


def test_jwks_lets_a_customer_back_end_verify_framelogs_tokens(api, config):
    token = mint_token(config.auth, Keyring(config.auth, config.stack.state_dir), "alice", scopes=[VIDEOS_WRITE])
    keys = jwt.PyJWKSet.from_dict(httpx.get(f"{api}/.well-known/jwks.json", timeout=10).json())
    assert all("d" not in k._jwk_data for k in keys.keys)
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, keys[kid].key, algorithms=["EdDSA"], audience=config.auth.audience,
                        issuer=config.auth.issuer)
    assert claims["sub"] == "alice"


# ------------------------------------------------------------------ analyst SQL

def test_sql_needs_an_analyst(api, config):
    query = {"sql": "SELECT 1"}
    r = httpx.post(f"{api}/v1/sql", json=query, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] and r.json()["error"]["message"]
    r = httpx.post(f"{api}/v1/sql", json=query, headers=as_user(config, "owner-only"), timeout=30)
    assert r.status_code == 403 and "analytics:read" in r.json()["error"]["message"]
    r = httpx.post(f"{api}/v1/sql", json=query, headers=as_user(config, "analyst", ANALYTICS_READ), timeout=30)
    assert r.status_code == 200 and r.json()["rows"] == [[1]]


@pytest.mark.parametrize("kind", ["other_key", "alg_none", "hs256_with_public_key", "tampered_payload", "expired",
                                  "wrong_audience", "unknown_kid", "garbage"])
def test_forged_tokens_are_401(api, config, kind):
    token = forged_tokens(config)[kind]
    for method, path, body in (("POST", "/v1/sql", {"sql": "SELECT 1"}),
                               ("GET", f"/v1/videos/{uuid.uuid4().hex}/analytics", None),
                               ("POST", "/videos", None)):
        r = httpx.request(method, f"{api}{path}", json=body, headers={**bearer(token), "Upload-Length": "10"},
                          timeout=30)
        assert r.status_code == 401, (kind, path, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer") and r.json()["error"]["message"]
    r = httpx.post(f"{api}/v1/sql", json={"sql": "SELECT 1"}, headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
                   timeout=30)
    assert r.status_code == 401


# ------------------------------------------------------------------ a video's analytics

def test_analytics_of_a_private_video_only_for_owner_workspace_and_analysts(api, config):
    alice = as_user(config, "alice-sec", ws=("ws-sec",))
    vid = upload_video(api, alice, visibility="private", workspace="ws-sec")
    url = f"{api}/v1/videos/{vid}/analytics"
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    stranger = httpx.get(url, headers=as_user(config, "eve-sec", ws=("ws-other",)), timeout=30)
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "forbidden"
    assert httpx.get(url, headers=as_user(config, "eve-sec", OPS), timeout=30).status_code == 403
    assert httpx.get(url, headers=alice, timeout=30).status_code == 200
    assert httpx.get(url, headers=as_user(config, "bob-sec", ws=("ws-sec",)), timeout=30).status_code == 200
    r = httpx.get(url, headers=as_user(config, "analyst", ANALYTICS_READ), timeout=30)
    assert r.status_code == 200 and r.json()["video_id"] == vid
    # the status of the video follows the same rule
    assert httpx.get(f"{api}/videos/{vid}", timeout=30).status_code == 401
    assert httpx.get(f"{api}/videos/{vid}", headers=as_user(config, "eve-sec"), timeout=30).status_code == 403
    assert httpx.get(f"{api}/videos/{vid}", headers=alice, timeout=30).status_code == 200


# ------------------------------------------------------------------ uploads

def test_anonymous_upload_is_refused_and_params_cannot_name_another_owner(api, config):
    headers = {**TUS, "Upload-Length": "10"}
    r = httpx.post(f"{api}/videos", params={"owner": "someone", "workspace": "theirs"}, headers=headers, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = httpx.post(f"{api}/videos", headers={**headers, "Upload-Metadata": encode_upload_metadata(
        {"owner": "someone"})}, timeout=30)
    assert r.status_code == 401
    mallory = as_user(config, "mallory", ws=("mallory-ws",))
    r = httpx.post(f"{api}/videos", params={"owner": "someone"}, headers={**headers, **mallory}, timeout=30)
    assert r.status_code == 403
    r = httpx.post(f"{api}/videos", headers={**headers, **mallory, "Upload-Metadata": encode_upload_metadata(
        {"owner": "someone"})}, timeout=30)
    assert r.status_code == 403
    r = httpx.post(f"{api}/videos", params={"workspace": "theirs"}, headers={**headers, **mallory}, timeout=30)
    assert r.status_code == 403
    viewer_only = as_user(config, "mallory", ANALYTICS_READ)            # no videos:write
    assert httpx.post(f"{api}/videos", headers={**headers, **viewer_only}, timeout=30).status_code == 403
    r = httpx.post(f"{api}/videos", params={"owner": "mallory"}, headers={**headers, **mallory}, timeout=30)
    assert r.status_code == 201 and r.json()["owner"] == "mallory"      # naming oneself is fine
    assert httpx.delete(f"{api}/videos/{r.json()['video_id']}/upload", headers={**TUS, **mallory},
                        timeout=30).status_code == 204


def test_an_open_upload_cannot_be_hijacked(api, config):
    alice, mallory = as_user(config, "alice-up"), as_user(config, "mallory-up")
    first, rest = os.urandom(5 * MIB), os.urandom(MIB)
    r = httpx.post(f"{api}/videos", headers={**TUS, **alice, "Upload-Length": str(len(first) + len(rest))},
                   timeout=30)
    assert r.status_code == 201
    vid, loc = r.json()["video_id"], f"{api}{r.headers['Location']}"
    r = httpx.patch(loc, content=first, headers={**PATCH, **alice, "Upload-Offset": "0"}, timeout=60)
    assert r.status_code == 204
    unknown = f"{api}/videos/{uuid.uuid4().hex}/upload"

    # another user: exactly the answers of an upload that does not exist (no leak), and nothing changes
    evil = os.urandom(len(rest))
    for target in (loc, unknown):
        head = httpx.head(target, headers={**TUS, **mallory}, timeout=30)
        patch = httpx.patch(target, content=evil, headers={**PATCH, **mallory, "Upload-Offset": str(len(first))},
                            timeout=30)
        delete = httpx.delete(target, headers={**TUS, **mallory}, timeout=30)
        assert (head.status_code, patch.status_code, delete.status_code) == (404, 404, 404), target
        assert patch.json()["error"]["message"].startswith("no upload for video")
    # anonymous: 401 before anything is looked up
    assert httpx.head(loc, headers=TUS, timeout=30).status_code == 401
    assert httpx.patch(loc, content=evil, headers={**PATCH, "Upload-Offset": str(len(first))},
                       timeout=30).status_code == 401
    assert httpx.delete(loc, headers=TUS, timeout=30).status_code == 401

    head = httpx.head(loc, headers={**TUS, **alice}, timeout=30)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(first))
    done = httpx.patch(loc, content=rest, headers={**PATCH, **alice, "Upload-Offset": str(len(first))}, timeout=120)
    assert done.status_code == 204, done.text
    receipt = ObjectStore(config.object_storage, config.stack.state_dir).get_json(f"uploads/{vid}/_receipt.json")
    assert receipt["sha256"] == hashlib.sha256(first + rest).hexdigest() and receipt["owner"] == "alice-up"
    # and a completed upload stays hidden from others
    assert httpx.head(loc, headers={**TUS, **mallory}, timeout=30).status_code == 404
    assert httpx.patch(loc, content=b"", headers={**PATCH, **mallory, "Upload-Offset": "0"},
                       timeout=30).status_code == 404
    assert vid in loc


# ------------------------------------------------------------------ anonymous upload, when an operator turns it on

def anonymous_app(config: Config) -> FastAPI:
    return assemble(replace(config, auth=replace(config.auth, anonymous_upload=True)),
                    [auth_routes.router, videos.router])


def test_anonymous_upload_when_enabled_never_names_an_owner(stack, config):
    with TestClient(anonymous_app(config)) as client:
        headers = {**TUS, "Upload-Length": "32"}
        assert client.post("/videos", params={"owner": "someone"}, headers=headers).status_code == 403
        assert client.post("/videos", params={"workspace": "theirs"}, headers=headers).status_code == 403
        r = client.post("/videos", headers=headers)
        assert r.status_code == 201
        vid, owner, token = r.json()["video_id"], r.json()["owner"], r.json()["upload_token"]
        assert owner.startswith("anon-")
        other = client.post("/videos", headers=headers).json()
        assert other["owner"] != owner
        loc = f"/videos/{vid}/upload"
        body = os.urandom(32)
        # without its token, or with another anonymous upload's token: not found
        assert client.patch(loc, content=body, headers={**PATCH, "Upload-Offset": "0"}).status_code == 401
        assert client.patch(loc, content=body, headers={**PATCH, **bearer(other["upload_token"]),
                                                        "Upload-Offset": "0"}).status_code == 404
        done = client.patch(loc, content=body, headers={**PATCH, **bearer(token), "Upload-Offset": "0"})
        assert done.status_code == 204 and done.headers["Upload-Offset"] == "32"
        store = ObjectStore(config.object_storage, config.stack.state_dir)
        assert store.get_json(f"uploads/{vid}/_receipt.json")["owner"] == owner
        assert client.delete(f"/videos/{other['video_id']}/upload",
                             headers={**TUS, **bearer(other["upload_token"])}).status_code == 204


# ------------------------------------------------------------------ key rotation, in a running app

def test_rotation_keeps_old_tokens_until_their_key_is_retired(stack, config, tmp_path):
    """Its own keyring (the stack's is shared by the other tests): rotate, old kid verifies, retire, refused."""
    cfg = replace(config, auth=replace(config.auth, keyring_file=str(tmp_path / "keyring.json")))
    app = assemble(cfg, [auth_routes.router, videos.router])
    keyring = Keyring(cfg.auth, cfg.stack.state_dir)
    old = bearer(mint_token(cfg.auth, keyring, "operator", scopes=[OPS]))
    old_kid = keyring.current().kid
    unknown = f"/videos/{uuid.uuid4().hex}"
    with TestClient(app) as client:
        assert client.get(unknown, headers=old).status_code == 404       # authenticated: the video is unknown
        new_kid = keyring.rotate().kid
        new = bearer(mint_token(cfg.auth, keyring, "operator", scopes=[OPS]))
        assert client.get(unknown, headers=old).status_code == 404
        assert client.get(unknown, headers=new).status_code == 404
        assert {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]} == {old_kid, new_kid}
        keyring.retire(old_kid)
        r = client.get(unknown, headers=old)
        assert r.status_code == 401 and "retired_key" in r.json()["error"]["message"]
        assert client.get(unknown, headers=new).status_code == 404
        assert [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]] == [new_kid]
