"""POST /v1/sql against the running API: refusals, the concurrency cap, bombs, and the API staying up.

Functional assertions only, with generous deadlines; the timings are measured by
bench/bench_sql_isolation.py (bench/results/sql_isolation.md).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from framelog.core.config import get_config
from framelog.processors.identity import ANALYTICS_READ, Keyring, mint_token
from framelog.stack.services import ApiService
from tests.integration.support import running, wait_for

pytestmark = pytest.mark.integration

LONG = ("SELECT count() FROM (SELECT arrayJoin(range(100000)) AS a) AS l "
        "CROSS JOIN (SELECT arrayJoin(range(100000)) AS b) AS r WHERE cityHash64(a, b) % 1000003 = 0")
MEMORY_BOMB = "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(200000000)) AS x)"
DEADLINE = 120.0


@pytest.fixture(scope="module")
def api(stack, config):
    with running(ApiService(config), 120) as service:
        yield service


def analyst() -> dict[str, str]:
    """An analyst's bearer token (analytics:read), signed with the stack's keyring."""
    token = mint_token(get_config().auth, Keyring(get_config().auth, get_config().stack.state_dir),
                       "analyst", scopes=[ANALYTICS_READ])
    return {"Authorization": f"Bearer {token}"}


def sql(api_url: str, statement: str, timeout: float = DEADLINE, **parameters) -> httpx.Response:
    return httpx.post(f"{api_url}/v1/sql", json={"sql": statement, "parameters": parameters}, timeout=timeout,
                      headers=analyst())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def pool_idle(api_url: str) -> bool:
    return sql(api_url, "SELECT 1").status_code == 200


def test_the_issues_attacks_are_refused_with_400_naming_the_offender(api, listener, config):
    url, hits = listener
    secret = config.stack.state_dir / "secret"
    cases = {
        f"SELECT file('{secret}')": "file()",
        "SELECT file('/etc/hostname')": "file()",
        f"DESCRIBE url('{url}/x', 'CSVWithNames')": "only SELECT",
        f"SELECT * FROM url('{url}/y', 'CSVWithNames')": "url()",
        "SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 250000000)": "system",
        "SELECT sleep(1)": "sleep()",
        "SELECT getSetting('readonly')": "getSetting()",
        "SELECT 1 SETTINGS readonly = 0": "SETTINGS",
        "SELECT 1; DROP TABLE playback_events": "one statement",
    }
    for statement, named in cases.items():
        r = sql(api.address, statement)
        assert r.status_code == 400, (statement, r.text)
        assert named in r.json()["error"]["message"], (statement, r.text)
        assert "s3cr" not in r.text
    assert hits == []
    # parameters still bind server-side
    r = sql(api.address, "SELECT count() FROM playback_events WHERE video_id = {v:String}", v="nope")
    assert r.status_code == 200 and r.json()["rows"] == [[0]]


def test_memory_bomb_is_stopped_by_the_engine_not_the_host(api):
    wait_for(lambda: pool_idle(api.address), "the analysts' pool to be free", DEADLINE)
    before = rss_mib(api.pid())
    r = sql(api.address, MEMORY_BOMB)
    assert r.status_code == 400 and "MEMORY_LIMIT_EXCEEDED" in r.json()["error"]["message"], r.text
    assert rss_mib(api.pid()) - before < 1024


def test_fifty_concurrent_queries_get_a_cap_and_429_while_the_api_answers(api, config):
    wait_for(lambda: pool_idle(api.address), "the analysts' pool to be free", DEADLINE)
    cap = config.analyst_sql.max_concurrent_queries
    statements = [LONG if i % 2 else MEMORY_BOMB for i in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(sql, api.address, s) for s in statements]
        # while they run: health, the analytics endpoint and event ingestion answer
        for _ in range(10):
            health = httpx.get(f"{api.address}/healthz", timeout=5)
            assert health.status_code == 200
        analytics = httpx.get(f"{api.address}/v1/videos/vnope/analytics", timeout=30, headers=analyst())
        assert analytics.status_code == 200, analytics.text
        answers = [f.result(timeout=DEADLINE) for f in futures]
    refused = [r for r in answers if r.status_code == 429]
    ran = [r for r in answers if r.status_code != 429]
    codes = [r.status_code for r in answers]
    assert ran and refused, codes
    # a long query holds its slot until the engine stops it (max_execution_time): no more than the cap of them ran
    long_ran = [r for s, r in zip(statements, answers) if s == LONG and r.status_code != 429]
    assert 1 <= len(long_ran) <= cap, codes
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1 and "retry" in r.json()["error"]["message"]
    for r in ran:          # the engine ended them: timeout, memory limit, or a result
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            assert "TIMEOUT_EXCEEDED" in r.text or "MEMORY_LIMIT_EXCEEDED" in r.text, r.text
    wait_for(lambda: pool_idle(api.address), "the analysts' pool to drain", DEADLINE)
