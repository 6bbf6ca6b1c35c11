"""Trending detection: a hopping window of views per (video, country), warm once per rewarm period."""
from __future__ import annotations

from framelog.core.config import TrendingConfig
from framelog.processors.trending import observe, split_key, trending_key

S = TrendingConfig(window=600, step=60, min_views=3, rewarm_after=3600)


def _feed(times_s, state=None):
    warms = []
    for t in times_s:
        o = observe(state, int(t * 1000), S)
        state = o.state
        warms.append(o.warm)
    return state, warms


def test_min_views_inside_the_window_warm_once():
    state, warms = _feed([0, 100, 200, 300, 400])
    assert warms == [False, False, True, False, False]


def test_views_spread_wider_than_the_window_never_trend():
    _, warms = _feed([0, 700, 1400, 2100])
    assert not any(warms)


def test_a_video_trending_again_after_the_rewarm_period_is_warmed_again():
    state, warms = _feed([0, 10, 20])
    assert warms[-1]
    _, later = _feed([4000, 4010, 4020], state)
    assert later == [False, False, True]


def test_a_view_older_than_the_window_counts_for_nothing_and_state_stays_bounded():
    state, _ = _feed([10_000, 10_010])
    o = observe(state, 0, S)                        # late by hours
    assert not o.warm and o.views_in_window == 2
    state, _ = _feed(range(0, 36_000, 30))        # ten hours of views: only a window's buckets kept
    assert len(state["buckets"]) <= 10


def test_state_survives_a_json_round_trip():
    import json

    state, _ = _feed([0, 10])
    o = observe(json.loads(json.dumps(state)), 20_000, S)
    assert o.warm and o.views_in_window == 3


def test_keys():
    assert split_key(trending_key("v1", "DE")) == ("v1", "DE")
    assert split_key(trending_key("v1", None)) == ("v1", None)
