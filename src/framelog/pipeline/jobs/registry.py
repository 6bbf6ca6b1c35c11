"""Which job handler performs which pipeline stage."""
from __future__ import annotations

from framelog.pipeline.jobs import handlers
from framelog.pipeline.jobs.base import JobHandler, JobSettings
from framelog.sinks.object_store import ObjectStore

HANDLERS = {
    "validation": handlers.ValidationJob,
    "transcoding": handlers.TranscodingJob,
    "thumbnail_generation": handlers.ThumbnailJob,
    "ai_processing": handlers.AiProcessingJob,
    "optimization": handlers.OptimizationJob,
    "cdn_upload": handlers.CdnUploadJob,
}


def handler_for(settings: JobSettings, stage: str, store: ObjectStore) -> JobHandler:
    """The handler of ``stage``, working in ``store``."""
    if stage == "transcoding" and settings.media.transcoding.chunked:   # plans the chunk jobs (issue 13)
        from framelog.pipeline.jobs.chunks import ChunkPlanJob

        return ChunkPlanJob(settings, store)
    try:
        cls = HANDLERS[stage]
    except KeyError:
        raise KeyError(f"no job handler for stage {stage!r}; known: {sorted(HANDLERS)}") from None
    return cls(settings, store)
