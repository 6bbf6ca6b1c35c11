"""``Client``: one API address and one bearer token, and what an integrator does with them.

    with Client("https://api.example", token=TOKEN) as fl:
        video = fl.upload("clip.mp4", visibility="public")
        final = fl.wait(video.video_id)                  # or: for e in fl.follow(video.video_id): ...
        print(fl.analytics(video.video_id)["total_views"])

Reads raise ``ApiError`` (status and the API's message) for any answer but 200.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Iterator, Mapping, Optional, Union

import httpx

from framelog_client.errors import error_message, error_of
from framelog_client.events import AnalyticsClient
from framelog_client.status import FollowError, StatusEvent, follow
from framelog_client.upload import PathLike, Progress, ResumableUploader, UploadOutcome

__all__ = ["Client", "ApiError", "TimeLike"]

TimeLike = Union[_dt.datetime, int, float, str]     # a datetime, epoch seconds or ISO 8601


class ApiError(Exception):
    """A refusal: the HTTP status, the API's message and its code (a stable word, when the server gives one)."""

    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.code = code


def _when(value: Optional[TimeLike]) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
        return str(int(aware.timestamp()))
    if isinstance(value, (int, float)):
        return str(int(value))
    return str(value)


class Client:
    """framelog's HTTP API as ``token``'s subject (uploads are owned by it; reads need its rights)."""

    def __init__(self, api_url: str, token: Optional[str] = None, *, timeout: float = 30.0,
                 http: Optional[httpx.Client] = None):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _get(self, path: str, params: Optional[Mapping[str, Optional[str]]] = None) -> Dict[str, Any]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        r = self.http.get(f"{self.api_url}{path}", params=query, headers=self.headers)
        if r.status_code != 200:
            raise ApiError(r.status_code, error_message(r), error_of(r).get("code"))
        return r.json()

    # ------------------------------------------------------------ uploads and status

    def upload(self, path: PathLike, *, visibility: Optional[str] = None, workspace: Optional[str] = None,
               priority: Optional[str] = None, content_type: Optional[str] = None,
               progress: Optional[Progress] = None, **kw: Any) -> UploadOutcome:
        """A tus upload that resumes after dropped connections and server restarts; the outcome's video_id."""
        with ResumableUploader(self.api_url, token=self.token, progress=progress, **kw) as up:
            return up.upload(path, content_type=content_type, visibility=visibility, workspace=workspace,
                             priority=priority)

    def status(self, video_id: str) -> Dict[str, Any]:
        """``GET /videos/{id}``: its state and each stage's."""
        return self._get(f"/videos/{video_id}")

    def follow(self, video_id: str, *, reconnects: int = 5) -> Iterator[StatusEvent]:
        """The video's stage transitions as they happen (server-sent events), until ready, failed or deleted."""
        return follow(self.api_url, video_id, token=self.token, reconnects=reconnects)

    def wait(self, video_id: str, *, reconnects: int = 5) -> Dict[str, Any]:
        """Follow until the end; the final status (its ``state``: ready, failed or deleted)."""
        for event in self.follow(video_id, reconnects=reconnects):
            if event.final:
                return event.data
        raise FollowError(f"the event stream of {video_id} ended before the video did")

    # ------------------------------------------------------------ playback events

    def events(self, **kw: Any) -> AnalyticsClient:
        """A batching producer of playback events (``POST /v1/events``) with this token (``events:write``);
        close it (or use it in a ``with``) to send what waits."""
        return AnalyticsClient(self.api_url, headers=self.headers, **kw)

    # ------------------------------------------------------------ analytics

    def analytics(self, video_id: str, start: Optional[TimeLike] = None,
                  end: Optional[TimeLike] = None) -> Dict[str, Any]:
        """Totals over ``[start, end)`` (default: the server's analytics.default_timeframe up to now)."""
        return self._get(f"/v1/videos/{video_id}/analytics", {"from": _when(start), "to": _when(end)})

    def series(self, video_id: str, interval: str = "1h", start: Optional[TimeLike] = None,
               end: Optional[TimeLike] = None) -> Dict[str, Any]:
        """Views, watch time, QoE ... per hour (``1h``) or day (``1d``): equal-length columns and ``time``."""
        return self._get(f"/v1/videos/{video_id}/analytics/series",
                         {"interval": interval, "from": _when(start), "to": _when(end)})

    def retention(self, video_id: str, start: Optional[TimeLike] = None,
                  end: Optional[TimeLike] = None) -> Dict[str, Any]:
        """The share of sessions still watching at each step of the video."""
        return self._get(f"/v1/videos/{video_id}/analytics/retention", {"from": _when(start), "to": _when(end)})
