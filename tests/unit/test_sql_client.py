"""framelog sql --param: NAME=VALUE pairs become bound parameters, never SQL text."""
import pytest

from framelog.sinks.clickhouse.queries import AnalyticsQueryError
from framelog.sql_client import parse_params


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
