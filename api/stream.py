"""``GET /v1/stream``: where and how to play a video (the seed's StreamingService.GetStreamURL).

    GET /v1/stream?video_id=&quality=&share=&country=
        Authorization: Bearer <token>           (optional: anonymous without it; api.auth)
        X-Viewer-Country: US                    (the trusted edge header; ``country=`` overrides it for
                                                 routing only: the view_start records the header's country)

Checks, in this order (each refusal says why, never cacheable):
400 missing or malformed ``video_id``; 401 a token that does not
verify; 404 unknown or deleted video; 403 no access (``share`` refused:
forged, expired, revoked, another video's; or the video is private); 409 not
playable yet, with the status from the stage-transition log (uploading,
processing, failed); 400 a malformed or unknown quality name, 404 a quality
that was not published; 409 a requested rendition being restored from a cold
tier (with the estimate).

Answer (200, ``Cache-Control: no-store``):

* ``stream_url`` / ``manifest_url``: signed edge URLs (signature in the path,
  checked by the edge) on the primary edge chosen for the viewer's country,
  the primary swapped for the fallback when its health probe fails;
  ``stream_url`` is the requested rendition's playlist, or the master;
  ``fallback`` holds the same two on the other edge.
* ``download_url``: the progressive MP4 the pipeline published, at the seed's
  CDN path (``videos/<yyyy>/<mm>/<quality>/<id>.mp4``, dated by the upload as
  the published asset names it), signed like the rest (null if none was
  published); ``fallback.download_url`` is the same on the other edge.
* ``qualities``: the renditions actually published (``AssetPublished``),
  with their playlist URLs and availability; ``subtitles`` (published tracks,
  if any), ``chapters_url``, ``poster_url``, ``duration_seconds``.
* ``encryption``: the key URI and the signed ``grant`` the player appends to
  every key request (bound to the viewer and/or share link it was issued
  for; see ``api.keys``).
* ``analytics``: where and how the player reports (``ingest_url``, the
  ``session_id``/``viewer_id`` to put on its events, the id of the
  ``view_start`` this request already emitted -- the player must not send a
  second one for the session).

Every URL and grant lives ``security.stream_url_ttl``, or less: never longer
than the share token it was issued on.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from framelog.api.auth import current_principal
from framelog.api.access_state import AccessState, ApiError, access_state, video_id_param
from framelog.api.events import COUNTRY_HEADER, ParsedEvent, get_sender, playback_types
from framelog.api.keys import key_grant, key_url
from framelog.api.stream_availability import RESTORING, Availability, rendition_availability
from framelog.api.videos import STATUS_READY_TIMEOUT, services, upload_view
from framelog.config import Config
from framelog.processors.access import Viewer
from framelog.processors.cdn_routing import Route, normalize_country, rendition_playlist_path, route
from framelog.processors.edge_signing import VIDEO_FILES, parse_object_path, signed_edge_url
from framelog.processors.video_access import AccessDecision, VideoEntry, grant_viewer, stream_access
from framelog.streams.events import new_event
from framelog.streams.topics import PLAYBACK_EVENTS

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"], dependencies=[Depends(current_principal)])     # who is asking: api.auth

AUTO_QUALITY = "auto"
STREAM_START_TYPE = "view_start"      # PlaybackEvent: "the player opened a playback session (stream requested)"
STREAM_START_TIMEOUT = 5.0            # how long the answer waits for the broker to acknowledge the view_start
NO_STORE = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
RETRY_UNKNOWN_SECONDS = 60            # Retry-After of a restore with no estimate


def _restoring(subject: str, estimate: float | None) -> ApiError:
    """409 for a rendition (or a whole video) being restored: says "restoring" and when to ask again.

    Retry-After is rounded up and at least 1 s: an estimate of 0 means "due now,
    the tiering worker is about to promote it", not "unknown".
    """
    retry = RETRY_UNKNOWN_SECONDS if estimate is None else max(1, math.ceil(estimate))
    return ApiError(409, f"{subject} is being restored from cold storage; ready in about {retry}s",
                    {"Retry-After": str(retry)}, {"availability": RESTORING, "restore_estimate_seconds": estimate})


def _quality_param(value: str | None, config: Config) -> str | None:
    """None for the adaptive master (absent or 'auto'); 400 for a malformed or unknown quality name."""
    if value is None or value == "" or value == AUTO_QUALITY:
        return None
    ladder = [q.name for q in config.hls.quality_levels]
    if value not in ladder:
        raise ApiError(400, f"unknown quality {value[:40]!r}; expected one of {[AUTO_QUALITY, *ladder]}")
    return value


def _not_playable(app: Any, video_id: str) -> ApiError:
    """409 with the video's processing status (or what the upload says)."""
    svc = services(app)
    table = svc.status
    view = None
    if table.ready or table.wait_ready(STATUS_READY_TIMEOUT):
        view = table.get(video_id)
    if view is None:
        view = upload_view(svc, video_id) or {"video_id": video_id, "state": "uploaded"}
    return ApiError(409, f"video {video_id} is not playable yet: {view.get('state')}", extra={"status": view})


def _share_ttl(decision: AccessDecision, config: Config, now: float) -> float:
    ttl = config.security.stream_url_ttl
    if decision.share is not None:
        ttl = min(ttl, decision.share.expires_at - now)
    return max(ttl, 1.0)


def _urls(provider: str, video_id: str, quality: str | None, config: Config, secret: bytes, now: float,
          ttl: float) -> dict[str, str]:
    manifest = signed_edge_url(provider, f"hls/{video_id}/master.m3u8", config, secret=secret, now=now, ttl=ttl)
    stream = manifest if quality is None else signed_edge_url(
        provider, rendition_playlist_path(video_id, quality), config, secret=secret, now=now, ttl=ttl)
    return {"provider": provider, "stream_url": stream, "manifest_url": manifest}


def _published(asset: dict[str, Any]) -> list[dict[str, Any]]:
    return list(asset.get("renditions") or [])


def _rendition_path(video_id: str, r: dict[str, Any]) -> str:
    return r.get("playlist_key") or rendition_playlist_path(video_id, r["name"])


def _download_path(asset: dict[str, Any], video_id: str) -> str | None:
    """The published MP4's key (``AssetPublished.metadata.source_key``) if the edges serve it, else None.

    Its y/m come from the upload, as the pipeline laid it out, never from the
    clock; an MP4 published under an older layout has no edge path.
    """
    key = (asset.get("metadata") or {}).get("source_key")
    try:
        obj = parse_object_path(key) if key else None
    except ValueError:
        return None
    return obj.key if obj is not None and obj.kind == VIDEO_FILES and obj.video_id == video_id else None


def _subtitles(asset: dict[str, Any], sign: Callable[[str], str]) -> list[dict[str, Any]]:
    """Published subtitle tracks: the captions the pipeline published (``AssetPublished.metadata``).

    ``playlist_url``: the WebVTT subtitle playlist (also named by the master
    playlist's EXT-X-MEDIA, so hls.js finds it on its own); ``vtt_url``: the
    whole track as one WebVTT file (for a <track> element).
    """
    meta = asset.get("metadata") or {}
    playlist, whole = meta.get("captions_playlist_key"), meta.get("captions_key")
    if not playlist and not whole:
        return []
    language = meta.get("captions_language") or ""
    return [{"language": language, "label": language or "captions", "kind": "captions",
             "playlist_url": sign(playlist) if playlist else None, "vtt_url": sign(whole) if whole else None}]


async def _emit_stream_start(request: Request, video_id: str, viewer: Viewer | None, quality: str | None,
                             country: str | None) -> dict[str, Any]:
    """The seed's TrackStreamStart: a view_start PlaybackEvent on playback.events (acks=all)."""
    session_id = uuid.uuid4().hex
    viewer_id = viewer.user_id if viewer is not None else f"anon-{session_id}"
    now_ms = time.time_ns() // 1_000_000
    record = new_event("PlaybackEvent", session_id=session_id, viewer_id=viewer_id, video_id=video_id,
                       type=STREAM_START_TYPE, rendition=quality, country=country, device=None,
                       client_time=now_ms, ingest_time=now_ms, event_time=now_ms)
    recorded = True
    try:
        sender = get_sender(request.app)
        encoded = await run_in_threadpool(sender.encode, [ParsedEvent(PLAYBACK_EVENTS, "PlaybackEvent", record)])
        await sender.deliver(encoded, STREAM_START_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - analytics trouble must not stop playback
        log.warning("stream start of %s not recorded: %s", video_id, exc)
        recorded = False
    return {"session_id": session_id, "viewer_id": viewer_id, "event_id": record["event_id"], "recorded": recorded}


def _ingest_url(request: Request) -> str:
    """Where the player posts its events: this API's ``POST /v1/events``."""
    return f"{str(request.base_url).rstrip('/')}/v1/events"


def _resolve(state: AccessState, request: Request, video_id: str, share: str | None
             ) -> tuple[Viewer | None, VideoEntry, AccessDecision]:
    viewer = state.viewer(request)
    entry, policy = state.known_entry(video_id)
    decision = stream_access(entry, policy, viewer, share, secret=state.secret, now=time.time())
    if not decision.allowed:
        raise ApiError(403, decision.refusal)
    if entry.asset is None:
        raise _not_playable(request.app, video_id)
    return viewer, entry, decision


def _route(state: AccessState, country: str | None) -> tuple[Route, dict[str, bool]]:
    health = state.edge_health.healthy()
    return route(country, state.config, lambda p: health.get(p, False)), health


@router.get("/v1/stream")
async def get_stream(request: Request) -> JSONResponse:
    q = request.query_params
    state = access_state(request.app)
    config = state.config
    try:
        video_id = video_id_param(q.get("video_id"))
        quality = _quality_param(q.get("quality"), config)
        viewer, entry, decision = await run_in_threadpool(_resolve, state, request, video_id, q.get("share"))
        asset = entry.asset or {}
        renditions = _published(asset)
        names = [r["name"] for r in renditions]
        if quality is not None and quality not in names:
            raise ApiError(404, f"quality {quality} was not published for video {video_id}; published: {names}")
        availability = await run_in_threadpool(rendition_availability, request.app, video_id, names, quality)
        if quality is not None and not availability.get(quality, Availability()).playable:
            raise _restoring(f"rendition {quality}", availability[quality].estimate_seconds)
        if quality is None and availability and not any(a.playable for a in availability.values()):
            known = [a.estimate_seconds for a in availability.values() if a.estimate_seconds is not None]
            raise _restoring(f"video {video_id}", min(known) if known else None)
    except ApiError as exc:
        return exc.response()

    trusted_country = normalize_country(request.headers.get(COUNTRY_HEADER))
    # ``country=`` may steer routing (tests, a viewer's declared region) but analytics
    # record only the trusted edge header, exactly as POST /v1/events does.
    country = normalize_country(q.get("country")) or trusted_country
    chosen, health = await run_in_threadpool(_route, state, country)
    now = time.time()
    ttl = _share_ttl(decision, config, now)
    primary = _urls(chosen.primary, video_id, quality, config, state.secret, now, ttl)
    fallback = _urls(chosen.fallback, video_id, quality, config, state.secret, now, ttl)

    def sign(key: str) -> str:
        return signed_edge_url(chosen.primary, key, config, secret=state.secret, now=now, ttl=ttl)

    qualities = []
    for r in renditions:
        a = availability.get(r["name"], Availability())
        qualities.append({"name": r["name"], "width": r.get("width"), "height": r.get("height"),
                          "bandwidth": r.get("bandwidth"), "average_bandwidth": r.get("average_bandwidth"),
                          "codecs": r.get("codecs"), "frame_rate": r.get("frame_rate"),
                          "playlist_url": sign(_rendition_path(video_id, r)), **a.to_dict()})
    encryption = None
    if asset.get("key_id"):
        grant = key_grant(config, video_id, grant_viewer(viewer, decision), ttl=ttl)
        encryption = {"method": "AES-128", "key_uri": key_url(config, video_id), "grant": grant,
                      "grant_requires_viewer_token": viewer is not None}
    mp4 = _download_path(asset, video_id)
    fallback["download_url"] = None if mp4 is None else signed_edge_url(
        chosen.fallback, mp4, config, secret=state.secret, now=now, ttl=ttl)
    thumbnails = list(asset.get("thumbnails") or [])
    poster = next((t for t in thumbnails if t.endswith("poster.jpg")), thumbnails[0] if thumbnails else None)
    start = await _emit_stream_start(request, video_id, viewer, quality, trusted_country)
    body = {
        "video_id": video_id,
        "quality": quality or AUTO_QUALITY,
        "stream_url": primary["stream_url"],
        "manifest_url": primary["manifest_url"],
        "download_url": sign(mp4) if mp4 is not None else None,
        "fallback": fallback,
        "cdn": {"primary": chosen.primary, "fallback": chosen.fallback, "rule": chosen.rule,
                "failed_over": chosen.failed_over, "country": country, "health": health},
        "qualities": qualities,
        "subtitles": _subtitles(asset, sign),
        "chapters_url": sign(asset["chapters_key"]) if asset.get("chapters_key") else None,
        "poster_url": sign(poster) if poster else None,
        "duration_seconds": asset.get("duration_seconds"),
        "encryption": encryption,
        "analytics": {
            "ingest_url": _ingest_url(request),
            "video_id": video_id,
            "session_id": start["session_id"],
            "viewer_id": start["viewer_id"],
            "country": trusted_country,
            "stream_start_event_id": start["event_id"],
            "stream_start_recorded": start["recorded"],
            "event_types": sorted(playback_types() - {"unknown", STREAM_START_TYPE}) + ["quality_switch"],
        },
        "access": {"reason": decision.reason},
        "expires_at": int(now + ttl),
    }
    return JSONResponse(body, headers=NO_STORE)
