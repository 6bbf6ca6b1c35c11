"""Discarding a video's staging once it is published: nothing the pipeline wrote on the way stays.

Stages write under ``work/{video}/{job}/{stage}/attempt-{n}/`` (framelog.pipeline.jobs.base);
the last stage copies what viewers need to the published prefixes. After the
AssetPublished event is on the log those staging objects are dead weight
(often larger than the published ladder), so they go. The completion markers
(``_SUCCESS.json``, a few hundred bytes each) stay: a stage request redelivered
after a crash finds its marker and re-announces its outcome instead of running
again on inputs that are gone. A reprocess from a later stage needs the staging
of the stages before it, so it is refused after publication (framelog.ops.reprocess).
"""
from __future__ import annotations

from framelog.core import object_keys
from framelog.sinks.object_store import ObjectStore


def discard_staging(store: ObjectStore, video_id: str) -> int:
    """Delete every staging object of the video but the completion markers; returns how many went."""
    return store.delete_keys(k for k in store.keys(object_keys.staging_root(video_id))
                             if not object_keys.is_marker(k))
