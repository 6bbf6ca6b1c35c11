"""framelog sql --param: NAME=VALUE pairs become bound parameters, never SQL text."""
import pytest

from framelog.clients.sql import parse_params
from framelog.sinks.clickhouse.queries import AnalyticsQueryError


def test_pairs_become_parameters_and_values_keep_their_equals_signs():
    assert parse_params(["v=abc", "n=5", "q=a=b", "empty="]) == {"v": "abc", "n": "5", "q": "a=b", "empty": ""}
    assert parse_params([]) == {}


@pytest.mark.parametrize("bad", ["novalue", "=x", "1abc=x", "a-b=x", "a b=x", "x'=1"])
def test_malformed_pairs_are_refused_with_the_pair_named(bad):
    with pytest.raises(AnalyticsQueryError, match="NAME=VALUE"):
        parse_params([bad])


def test_a_name_given_twice_is_refused():
    with pytest.raises(AnalyticsQueryError, match="twice"):
        parse_params(["v=1", "v=2"])


def test_a_429_is_retried_after_its_retry_after_and_a_long_wait_is_not(monkeypatch):
    import httpx

    from framelog.clients import sql as sql_client
    from framelog.core.config import load_config

    config = load_config()
    settings = sql_client.SqlClientSettings(dsn=config.clickhouse_dsn, api_url="http://api/v1/sql", auth=config.auth,
                                            state_dir=config.stack.state_dir, analyst_sql=config.analyst_sql)
    answers = [httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "busy"}),
               httpx.Response(200, json={"columns": [], "rows": [], "truncated": False})]
    calls = []

    def post(url, **kw):
        calls.append(kw["json"])
        return answers.pop(0)

    monkeypatch.setattr(sql_client.httpx, "post", post)
    assert sql_client._post_waiting_for_a_slot(settings, {"sql": "SELECT 1"}).status_code == 200
    assert len(calls) == 2
    too_long = str(int(config.analyst_sql.max_execution_time) + 60)
    answers[:] = [httpx.Response(429, headers={"Retry-After": too_long}, json={"error": "busy"})]
    assert sql_client._post_waiting_for_a_slot(settings, {"sql": "SELECT 1"}).status_code == 429
