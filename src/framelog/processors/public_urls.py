"""The addresses viewers use, as opposed to the ones framelog's own processes use.

Inside a deployment the API, the edges and the key endpoint are reached on loopback or service names
(``stack.host``, ports); viewers reach them through public names (a load balancer, a CDN domain). Every
URL handed to a viewer (signed edge URLs, the key URI, renewal and event URLs) is built here from the
``delivery`` section and each CDN provider's ``public_url``; left empty they follow the local ports,
so the embedded stack, and a private stack with moved ports, need no setting.

Stored playlists never name a host for the key: they carry ``hls_config.key_uri_base`` (a path,
``/v1/keys``), and the edges rewrite it to :func:`key_url_base` as they serve each playlist
(stack/nginx.py), so moving the API or changing its domain needs no re-transcode.
"""
from __future__ import annotations

from framelog.core.config import Config
from framelog.core.ids import validate_video_id

KEY_PATH_PREFIX = "/v1/keys"


def public_api_url(config: Config) -> str:
    """The API's base URL as viewers see it, without a trailing slash."""
    return (config.delivery.public_api_url or f"http://{config.stack.host}:{config.stack.api_port}").rstrip("/")


def key_url_base(config: Config) -> str:
    """The key endpoint's base as viewers see it (``<base>/<video_id>``), without a trailing slash."""
    return (config.delivery.key_url_base or public_api_url(config) + KEY_PATH_PREFIX).rstrip("/")


def key_url(config: Config, video_id: str) -> str:
    """The key URI a viewer's player fetches, the one the edges write into the playlists it gets."""
    return f"{key_url_base(config)}/{validate_video_id(video_id)}"


def stored_key_uri(config: Config, video_id: str) -> str:
    """The key URI written into stored playlists at packaging time (a path unless configured otherwise)."""
    return f"{config.hls.key_uri_base.rstrip('/')}/{validate_video_id(video_id)}"


def public_edge_url(provider_key: str, config: Config) -> str:
    """An edge's base URL as viewers see it (signed URLs point here)."""
    provider = config.cdn.providers[provider_key]
    return (provider.public_url or f"http://{config.stack.host}:{provider.edge_port}").rstrip("/")
