"""What a video playable while it processes lists (issue 13 pt 4), read from the transcoding stage's outputs.

The stitch publishes every rung's leading chunks under ``hls/{id}/`` and names them in the
stage's ``preview_*`` outputs (pipeline/jobs/chunks.publish_preview); the stream API builds a
provisional asset from them, the stitch purges from the edges the paths they change.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from framelog.core import object_keys as ok


def preview_renditions(outputs: Mapping[str, str]) -> list[dict[str, Any]]:
    """The rungs a preview lists, lowest first (``preview_renditions``; a single-rung preview's outputs from
    before it existed name one rung in ``preview_rendition`` and its ``preview_*`` fields)."""
    if outputs.get("preview_renditions"):
        return list(json.loads(outputs["preview_renditions"]))
    if not outputs.get("preview_rendition"):
        return []
    return [{"name": outputs["preview_rendition"], "width": int(outputs["preview_width"]),
             "height": int(outputs["preview_height"]), "bandwidth": int(outputs["preview_bandwidth"]),
             "average_bandwidth": int(outputs["preview_average_bandwidth"]), "codecs": outputs["preview_codecs"],
             "chunks": int(outputs.get("preview_chunks") or 0)}]


def preview_paths(video_id: str, outputs: Mapping[str, str], before: Mapping[str, int] | None = None) -> list[str]:
    """The edge paths a growing preview changes (purged on every growth and at publication): the master and
    every rung's playlist that grew (every rung's when ``before`` is not given)."""
    paths = [ok.edge_path(ok.master_playlist(video_id))]
    for r in preview_renditions(outputs):
        if before is None or before.get(r["name"], 0) != int(r.get("chunks") or 0):
            paths.append(ok.edge_path(ok.rendition_playlist(video_id, r["name"])))
    return paths
