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

from framelog.core.config import CdnConfig, DeliveryConfig, HlsConfig, StackConfig
from framelog.core.ids import validate_video_id

KEY_PATH_PREFIX = "/v1/keys"


# Each takes the sections it reads (``config.delivery, config.stack``; ``config.hls``; ``config.cdn``),
# not the whole Config (issue 12 pt 4).

def public_api_url(delivery: DeliveryConfig, stack: StackConfig) -> str:
    """The API's base URL as viewers see it, without a trailing slash."""
    return (delivery.public_api_url or f"http://{stack.host}:{stack.api_port}").rstrip("/")


def key_url_base(delivery: DeliveryConfig, stack: StackConfig) -> str:
    """The key endpoint's base as viewers see it (``<base>/<video_id>``), without a trailing slash."""
    return (delivery.key_url_base or public_api_url(delivery, stack) + KEY_PATH_PREFIX).rstrip("/")


def key_url(delivery: DeliveryConfig, stack: StackConfig, video_id: str) -> str:
    """The key URI a viewer's player fetches, the one the edges write into the playlists it gets."""
    return f"{key_url_base(delivery, stack)}/{validate_video_id(video_id)}"


def stored_key_uri(hls: HlsConfig, video_id: str) -> str:
    """The key URI written into stored playlists at packaging time (a path unless configured otherwise)."""
    return f"{hls.key_uri_base.rstrip('/')}/{validate_video_id(video_id)}"


def public_edge_url(provider_key: str, cdn: CdnConfig, host: str) -> str:
    """An edge's base URL as viewers see it (signed URLs point here); ``host``: ``config.stack.host``."""
    provider = cdn.providers[provider_key]
    return (provider.public_url or f"http://{host}:{provider.edge_port}").rstrip("/")
