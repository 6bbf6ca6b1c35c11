"""core.backoff is the formula the retry loops hand-wrote; core.ids answers for every id alphabet."""
from __future__ import annotations

import random

import pytest

from framelog.core.backoff import Backoff
from framelog.core.ids import is_event_id, is_opaque_id, is_viewer_id, new_event_id, validate_video_id
from framelog.processors.webhooks import backoff_delay


def test_delay_doubles_from_initial_up_to_the_cap():
    b = Backoff(0.5, 10.0)
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.delay(0) == 0.5                      # "no failure yet" waits like the first


@pytest.mark.parametrize("attempt", range(1, 12))
def test_jitter_matches_the_webhooks_rule(attempt):
    initial, maximum, jitter = 1.0, 60.0, 0.2
    expected_rng, rng = random.Random(attempt), random.Random(attempt)
    base = min(maximum, initial * 2 ** (attempt - 1))
    expected = min(maximum * (1 + jitter), base * (1 + expected_rng.random() * jitter))
    assert backoff_delay(attempt, initial, maximum, jitter, rng) == expected


def test_id_predicates():
    assert is_opaque_id("abc_DEF-09") and not is_opaque_id("") and not is_opaque_id("a/b")
    assert is_opaque_id("x" * 64) and not is_opaque_id("x" * 65) and is_opaque_id("x" * 65, 65)
    assert not is_opaque_id("abc\n") and not is_opaque_id(None)
    assert is_event_id(new_event_id()) and is_event_id(new_event_id().upper())
    assert not is_event_id(new_event_id() + "\n") and not is_event_id("not-a-uuid")
    assert is_viewer_id("user@example.com", 128) and is_viewer_id("anon:a+b", 128)
    assert not is_viewer_id("a b", 128) and not is_viewer_id("x" * 129, 128)
    assert validate_video_id("v-1") == "v-1"
