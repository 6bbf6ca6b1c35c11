"""Multi-CDN routing (seed §3.1/§3.2): which edge serves a viewer, the CDN
paths of a video's files, and what to invalidate when a video changes.

Pure decisions: no HTTP. Providers, edge ports and routing rules come from
``config.cdn``; the edges are local stand-ins reached at
``http://<stack.host>:<edge_port>``.

``route`` ports the seed's ``selectPrimaryCDN``/``selectFallbackCDN``: the
first routing rule listing the viewer's country wins, else the default route
(the seed falls back to Cloudflare). Unlike the seed, health is taken into
account: when the primary is down and the fallback is up, they swap.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from framelog.core import object_keys
from framelog.core.config import CdnConfig, CdnProvider, RoutingRule
from framelog.core.errors import FramelogError
from framelog.core.ids import validate_video_id
from framelog.processors.public_urls import public_edge_url

Health = Callable[[str], bool] | Collection[str] | None

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_INVALIDATION = re.compile(r"^/[A-Za-z0-9_.*/-]{0,1023}$")


class UnknownProviderError(FramelogError, KeyError):
    def __init__(self, key: str, known: Iterable[str]):
        self.provider = key
        super().__init__(f"unknown CDN provider {key!r}; known: {sorted(known)}")

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Route:
    primary: str
    fallback: str
    rule: str            # "countries:US" / "default": which routing rule matched
    failed_over: bool = False  # primary and fallback swapped because the primary is unhealthy


# ------------------------------------------------------------ routing

def normalize_country(country: str | None) -> str | None:
    """'us ' -> 'US'; anything that is not a two-letter code -> None (use the default route)."""
    if country is None:
        return None
    code = country.strip().upper()
    return code if _COUNTRY.fullmatch(code) else None


def _is_healthy(healthy: Health, provider: str) -> bool:
    if healthy is None:
        return True
    if callable(healthy):
        return bool(healthy(provider))
    return provider in healthy


def matching_rule(country: str | None, cdn: CdnConfig) -> tuple[RoutingRule, str]:
    code = normalize_country(country)
    if code is not None:
        for rule in cdn.routing_rules:
            if code in rule.countries:
                return rule, "countries:" + ",".join(rule.countries)
    return cdn.default_route, "default"


def route(country: str | None, cdn: CdnConfig, healthy: Health = None) -> Route:
    """Primary and fallback provider keys for a viewer in ``country``.

    ``healthy`` is a predicate over provider keys or the set of healthy keys
    (``None``: all healthy). If the primary is unhealthy and the fallback is
    healthy, the fallback is promoted. If both are down the configured order is
    kept: there is nothing better to offer.
    """
    rule, name = matching_rule(country, cdn)
    if not _is_healthy(healthy, rule.primary) and _is_healthy(healthy, rule.fallback):
        return Route(rule.fallback, rule.primary, name, failed_over=True)
    return Route(rule.primary, rule.fallback, name)


# ------------------------------------------------------------ URLs and paths

def provider(provider_key: str, cdn: CdnConfig) -> CdnProvider:
    try:
        return cdn.providers[provider_key]
    except KeyError:
        raise UnknownProviderError(provider_key, cdn.providers) from None


def edge_base_url(provider_key: str, cdn: CdnConfig, host: str) -> str:
    """Where framelog's own processes reach an edge (health probes, purges, warming): never a viewer's URL.
    ``cdn``: ``config.cdn``; ``host``: ``config.stack.host``."""
    return f"http://{host}:{provider(provider_key, cdn).edge_port}"


def edge_url(provider_key: str, path: str, cdn: CdnConfig, host: str) -> str:
    """A viewer's URL of ``path`` on an edge (its public base: processors/public_urls.py)."""
    provider(provider_key, cdn)
    return f"{public_edge_url(provider_key, cdn, host)}/{path.lstrip('/')}"


@dataclass(frozen=True)
class AdaptiveUrls:
    master: str
    renditions: dict[str, str]  # quality name -> playlist URL


@dataclass(frozen=True)
class StreamUrls:
    route: Route
    primary: AdaptiveUrls
    fallback: AdaptiveUrls


def adaptive_urls(video_id: str, provider_key: str, cdn: CdnConfig, host: str,
                  qualities: Iterable[str]) -> AdaptiveUrls:
    """The seed's ``generateAdaptiveStreamingUrls`` (``qualities``: the seed's default is the HLS ladder's
    names, ``config.hls.quality_levels``; ``cdn``: ``config.cdn``; ``host``: ``config.stack.host``)."""
    return AdaptiveUrls(
        master=edge_url(provider_key, object_keys.master_playlist(video_id), cdn, host),
        renditions={q: edge_url(provider_key, object_keys.rendition_playlist(video_id, q), cdn, host)
                    for q in qualities})


def stream_urls(video_id: str, country: str | None, cdn: CdnConfig, host: str, qualities: Iterable[str],
                healthy: Health = None) -> StreamUrls:
    """The seed's ``getOptimalCDNUrl``, on the edges chosen by :func:`route`."""
    names = list(qualities)
    r = route(country, cdn, healthy)
    return StreamUrls(r, adaptive_urls(video_id, r.primary, cdn, host, names),
                      adaptive_urls(video_id, r.fallback, cdn, host, names))


# ------------------------------------------------------------ invalidation

def default_invalidation_paths(video_id: str) -> tuple[str, ...]:
    """The seed's ``invalidateCache`` defaults for one video."""
    vid = validate_video_id(video_id)
    return (f"/{object_keys.VIDEOS}/*/{vid}*", object_keys.edge_path(object_keys.hls_root(vid)) + "*",
            object_keys.edge_path(object_keys.thumbnails_root(vid)) + "*")


def invalidation_paths(video_id: str, paths: Iterable[str] = ()) -> tuple[str, ...]:
    """Default paths plus ``paths`` (each absolute, no '..'), without duplicates, in order."""
    out = list(default_invalidation_paths(video_id))
    for p in paths:
        if not isinstance(p, str) or not _INVALIDATION.fullmatch(p) or "/../" in p + "/" or "/./" in p + "/":
            raise ValueError(f"invalid invalidation path {p!r}: expected an absolute path of [A-Za-z0-9_.*/-]")
        if p not in out:
            out.append(p)
    return tuple(out)
