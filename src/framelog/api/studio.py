"""The owner's analytics page: ``GET /studio/{video_id}/analytics``.

The page (web/analytics.html and web/analytics.js) holds no data: it carries its
settings (the API paths, the default range, the series bound) and asks
``GET /v1/videos/{id}/analytics``, ``.../analytics/series``,
``.../analytics/retention`` and the AI stage's ``GET /v1/videos/{id}/analysis``
with the signed-in user's bearer token (the page's ``#viewer_token=``
fragment, kept in localStorage, as the player does), so access is decided by
those routes: the video's owner, its workspace, or ``analytics:read``. Charts
are drawn by uPlot, served from node_modules like hls.js
(``/player/assets/vendor/uplot.mjs``); nothing comes from a CDN.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from framelog.api.auth import current_principal
from framelog.api.errors import responses
from framelog.api.player import NO_CACHE, render_template
from framelog.api.services import Svc
from framelog.core.config import AnalyticsConfig
from framelog.core.ids import validate_video_id
from framelog.sinks.clickhouse.queries import SERIES_INTERVALS

router = APIRouter(tags=["studio"], dependencies=[Depends(current_principal)])

ANALYTICS_PATH = "/v1/videos/{id}/analytics"
ANALYSIS_PATH = "/v1/videos/{id}/analysis"
PLAYER_PATH = "/player/{id}"


def studio_settings(analytics: AnalyticsConfig, video_id: str) -> dict:
    """The JSON the page reads: where to ask, the default range and the series bound (``config.analytics``)."""
    return {
        "videoId": video_id,
        "analyticsPath": ANALYTICS_PATH.format(id=video_id),
        "analysisPath": ANALYSIS_PATH.format(id=video_id),
        "playerPath": PLAYER_PATH.format(id=video_id),
        "defaultTimeframeSeconds": int(analytics.default_timeframe),
        "maxSeriesPoints": analytics.max_series_points,
        "intervals": {name: int(step.total_seconds()) for name, (step, _) in SERIES_INTERVALS.items()},
    }


@router.get("/studio/{video_id}/analytics", response_class=HTMLResponse, responses=responses(400, 401))
async def analytics_page(video_id: str, svc: Svc) -> Response:
    """The owner's analytics page (its data comes from the analytics routes, with the viewer's token)."""
    validate_video_id(video_id)
    page = render_template("analytics.html", studio_settings(svc.engine_settings.analytics, video_id), video_id)
    return HTMLResponse(page, headers=NO_CACHE)
