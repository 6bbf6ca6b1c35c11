"""Per-client limits on the whole API (api/protection.py): a bounded burst from one loopback address
gets 429 with Retry-After while another address keeps getting answers; in-flight requests per
client are capped; /healthz is never limited."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from framelog.api.protection import ApiProtection
from framelog.core.config import get_config
from framelog.stack.services import ApiService
from tests.integration.support import running


@pytest.fixture(scope="module")
def api(stack, config):
    with running(ApiService(config), 120) as service:
        yield service.address


@pytest.mark.integration
def test_a_burst_from_one_client_is_limited_and_another_client_is_not(api, config):
    url = f"{api}/.well-known/jwks.json"
    p = config.api_protection
    total = int(p.burst + p.requests_per_second * 4)            # bounded: the burst plus ~4 s of refill, at once

    def burst(n: int) -> list[int]:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=30) as c:
            return [c.get(url).status_code for _ in range(n)]

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(burst, total // 16) for _ in range(16)]
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4"), timeout=30) as other:
            others = [other.get(url).status_code for _ in range(20)]
        codes = [c for f in futures for c in f.result()]
    assert codes.count(429) > 0 and codes.count(200) >= p.burst * 0.9, (codes.count(200), codes.count(429))
    assert set(others) == {200}
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=30) as c:
        r = c.get(url)
        assert r.status_code in (200, 429)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
        assert c.get(f"{api}/healthz").status_code == 200              # never limited


def test_requests_in_progress_per_client_are_capped():
    config = get_config()
    cap = config.api_protection.max_concurrent_per_client
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = ApiProtection(slow_app, config.api_protection, config.playback_trust)
    guard.limiter.take = lambda key, n=1: 0.0                       # only the in-flight cap is under test

    async def call(host: str) -> int:
        sent = []

        async def send(message):
            if message["type"] == "http.response.start":
                sent.append(message["status"])
        await guard({"type": "http", "path": "/v1/stream", "client": (host, 1234), "headers": []}, None, send)
        return sent[0]

    async def scenario():
        held = [asyncio.create_task(call("10.0.0.1")) for _ in range(cap)]
        await asyncio.sleep(0)                                        # let them take their slots
        refused = await call("10.0.0.1")
        other = asyncio.create_task(call("10.0.0.2"))
        release.set()
        return refused, await asyncio.gather(*held), await other

    refused, held, other = asyncio.run(scenario())
    assert refused == 429 and set(held) == {200} and other == 200


def test_a_json_body_is_read_only_up_to_the_cap_even_without_credentials(config):
    """FastAPI parses a route's body before the token check: the API reads at most max_json_body bytes of it
    (by Content-Length, or counted when chunked) and answers 413 in the one error shape; no stack needed."""
    from fastapi.testclient import TestClient

    from framelog.api.app import create_app

    cap = config.api_protection.max_json_body
    big = b'{"visibility": "' + b"x" * cap + b'"}'
    forged = {"Authorization": "Bearer forged.token.here", "Content-Type": "application/json"}
    with TestClient(create_app(config, warm=()), raise_server_exceptions=False) as client:
        r = client.patch("/videos/abc123/access", content=big, headers=forged)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text

        def chunks():                                   # no Content-Length: counted as it arrives
            for i in range(0, len(big), 16384):
                yield big[i:i + 16384]

        r = client.post("/v1/webhooks", content=chunks(), headers=forged)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text
        small = client.patch("/videos/abc123/access", content=b'{"visibility": "public"}', headers=forged)
        assert small.status_code == 401 and small.json()["error"]["code"] == "invalid_token"
