"""Every route of the public app runs the auth dependency: a forged bearer token gets 401 everywhere.

A route added without ``api.auth`` (or one that drops it) would answer something
else here and fail this test, unless it is deliberately public and listed below
with the reason. No stack: a refused token never reaches a handler, and the lifespan starts nothing here.
"""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from framelog.api.app import create_app
from tests.unit.support.api_routes import routes

PUBLIC = {                                   # (method, path): why no token is asked for
    ("GET", "/healthz"): "load balancers' health probe",
    ("GET", "/.well-known/jwks.json"): "public keys, for anyone verifying framelog's tokens",
    ("OPTIONS", "/videos"): "tus capability discovery, no data",
    ("GET", "/player/assets/vendor/{name}"): "static page code from node_modules (hls.js, uPlot)",
    ("GET", "/player/assets/{name}"): "static player code",
    ("POST", "/v1/events"): "players post with the playback session GET /v1/stream issued (issue 11 point 3)",
}


@pytest.fixture(scope="module")
def app(config):
    return create_app(config, warm=())          # the lifespan builds Services and starts nothing: no stack


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_the_public_list_names_only_existing_routes(app):
    existing = {(m, r.path) for r in routes(app) for m in r.methods}
    assert set(PUBLIC) <= existing, set(PUBLIC) - existing


def test_every_other_route_refuses_a_forged_token_with_401(app, client):
    checked = []
    for route in routes(app):
        for method in route.methods:
            if (method, route.path) in PUBLIC:
                continue
            path = re.sub(r"\{[^}]+\}", "abc123", route.path)
            r = client.request(method, path, headers={"Authorization": "Bearer forged.token.here"})
            assert r.status_code == 401, (method, route.path, r.status_code, r.text[:200])
            assert r.headers["WWW-Authenticate"].startswith("Bearer"), (method, route.path)
            if method != "HEAD":
                assert r.json()["error"]["code"] == "invalid_token", (method, route.path, r.text[:200])
            checked.append((method, route.path))
    assert len(checked) >= 20, checked
