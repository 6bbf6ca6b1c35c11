"""framelog-client: framelog's HTTP API from Python 3.9+, with httpx as its only dependency.

    from framelog_client import Client

The parts stand alone too: ``upload`` (tus 1.0 resumable uploads), ``status``
(a video's live status over server-sent events), ``events`` (a batching
producer of playback events) and ``backoff`` (the retry rule they share).
"""
from __future__ import annotations

from framelog_client.backoff import Backoff
from framelog_client.client import ApiError, Client
from framelog_client.events import AnalyticsClient, ClientStats
from framelog_client.status import FollowError, StatusEvent, follow
from framelog_client.upload import (
    ResumableUploader,
    UploadError,
    UploadOutcome,
    upload_resumable,
    upload_resumable_outcome,
)

__version__ = "0.1.0"
__all__ = ["Client", "ApiError", "AnalyticsClient", "ClientStats", "Backoff", "FollowError", "StatusEvent", "follow",
           "ResumableUploader", "UploadError", "UploadOutcome", "upload_resumable", "upload_resumable_outcome",
           "__version__"]
