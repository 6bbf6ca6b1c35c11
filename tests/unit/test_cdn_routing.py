"""CDN routing: the seed's rules and default, failover, paths and invalidation."""
import copy

import pytest
import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config
from framelog.core.errors import InvalidIdError
from framelog.processors.cdn_routing import (
    Route,
    UnknownProviderError,
    edge_base_url,
    edge_url,
    invalidation_paths,
    normalize_country,
    route,
)


@pytest.mark.parametrize("country", ["US", "GB", "DE", "FR", "us", " fr "])
def test_listed_countries_go_to_cloudfront_first(cfg, country):
    r = route(country, cfg.cdn)
    assert (r.primary, r.fallback, r.failed_over) == ("primary_cdn", "secondary_cdn", False)
    assert cfg.cdn.providers[r.primary].provider == "AWS CloudFront"
    assert r.rule.startswith("countries:")


@pytest.mark.parametrize("country", ["JP", "BR", None, "", "USA", "??", "1A"])
def test_everyone_else_takes_the_default_route(cfg, country):
    r = route(country, cfg.cdn)
    assert (r.primary, r.fallback, r.rule) == ("secondary_cdn", "primary_cdn", "default")
    assert cfg.cdn.providers[r.primary].provider == "Cloudflare"


def test_unhealthy_primary_is_replaced_by_the_fallback(cfg):
    r = route("US", cfg.cdn, healthy={"secondary_cdn"})
    assert r == Route("secondary_cdn", "primary_cdn", r.rule, failed_over=True)
    r = route("JP", cfg.cdn, healthy=lambda key: key != "secondary_cdn")
    assert (r.primary, r.fallback, r.failed_over) == ("primary_cdn", "secondary_cdn", True)


def test_healthy_primary_is_kept(cfg):
    assert route("US", cfg.cdn, healthy={"primary_cdn", "secondary_cdn"}).failed_over is False
    assert route("US", cfg.cdn, healthy=lambda key: True).primary == "primary_cdn"
    assert route("US", cfg.cdn, healthy={"primary_cdn"}).primary == "primary_cdn"


def test_both_down_keeps_the_configured_order(cfg):
    r = route("US", cfg.cdn, healthy=set())
    assert (r.primary, r.fallback, r.failed_over) == ("primary_cdn", "secondary_cdn", False)


def test_rules_come_from_config():
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    raw["cdn_strategy"]["routing_rules"] = [{"countries": ["JP"], "primary": "secondary_cdn",
                                             "fallback": "primary_cdn"}]
    raw["cdn_strategy"]["default_route"] = {"primary": "primary_cdn", "fallback": "secondary_cdn"}
    c = build_config(raw)
    assert route("JP", c.cdn).primary == "secondary_cdn"
    assert route("US", c.cdn).primary == "primary_cdn" and route("US", c.cdn).rule == "default"


def test_normalize_country():
    assert normalize_country(" gb") == "GB"
    assert normalize_country("GBR") is None
    assert normalize_country(None) is None


def test_edge_urls_use_the_configured_ports(cfg):
    for key, p in cfg.cdn.providers.items():
        assert edge_base_url(key, cfg.cdn, cfg.stack.host) == f"http://127.0.0.1:{p.edge_port}"
    assert edge_url("primary_cdn", "/hls/a/master.m3u8", cfg.cdn, cfg.stack.host) == \
        f"http://127.0.0.1:{cfg.cdn.providers['primary_cdn'].edge_port}/hls/a/master.m3u8"
    with pytest.raises(UnknownProviderError, match="akamai"):
        edge_base_url("akamai", cfg.cdn, cfg.stack.host)


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "", "x" * 65, None, "abc\n"])
def test_video_ids_are_validated(bad_id):
    with pytest.raises(InvalidIdError):
        invalidation_paths(bad_id)
