"""The six stage job handlers: fetch inputs from object storage, call the
processors, write outputs under the job's staging prefix.

Stage outputs are a flat string map carried by StageTransition/StageRequest;
anything larger is a JSON object in storage and the map holds its key. Every
stage reads the upload itself (``object_key``) rather than a predecessor's
local file, so stages can run on different machines.

Published (public) keys are written only by ``cdn_upload``; everything before
it lives under ``work/`` which no edge serves, so nothing half-done is ever
visible.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from framelog.core import object_keys as ok
from framelog.pipeline.jobs.base import JobContext, JobSettings, PermanentJobError
from framelog.processors import cache_control as cc
from framelog.processors.media import analysis, captions, hls, optimization, thumbnails, validation
from framelog.processors.media.probe import MediaInfo, probe
from framelog.sinks.object_store import ObjectStore

SOURCE_NAME = "source"
log = logging.getLogger(__name__)


def _source(ctx: JobContext, store: ObjectStore) -> Path:
    return store.download(ctx.inputs["object_key"], ctx.workdir / SOURCE_NAME)


def _without_signature(text: str) -> str:
    """Tool output for operators, minus any presigned URL's query (a credential while it is valid)."""
    return re.sub(r"\?X-Amz-[^\s'\"]*", "?<signature>", text)


@dataclass
class ValidationJob:
    settings: JobSettings
    store: ObjectStore
    stage: str = "validation"

    def run(self, ctx: JobContext) -> dict[str, str]:
        """Validate the upload where it lies: ffmpeg reads the index and sampled windows through a
        presigned URL (range requests), so a 4-hour upload costs what a short one does."""
        key = ctx.inputs["object_key"]
        head = self.store.head(key)
        if head is None:
            raise FileNotFoundError(f"upload {key} is not in object storage")
        url = self.store.presigned_url(key, self.settings.pipeline.stage(self.stage).timeout * 2)
        try:
            info = validation.validate(url, self.settings.upload_limits, size=int(head["ContentLength"]),
                                       sampling=self.settings.media.validation,
                                       segment_seconds=self.settings.hls.segment_duration, progress=ctx.progress)
        except validation.ValidationFailed as exc:
            raise PermanentJobError(exc.reason, exc.message, _without_signature(exc.detail)) from None
        quality = validation.quality_of(info, allow_4k=self.settings.media.allow_4k_label)
        uploaded = datetime.now(UTC)
        info_key = ok.staged(ctx.staging_prefix, "media_info.json")
        self.store.put_json(info_key, info.to_dict())
        return {
            "media_info_key": info_key, "duration": f"{info.duration:.3f}", "width": str(info.width),
            "height": str(info.height), "fps": f"{info.fps:.3f}", "has_audio": str(info.has_audio).lower(),
            "video_codec": info.video_codec or "", "quality": quality,
            "source_key": validation.source_key(ctx.video_id, uploaded, quality),
        }


@dataclass
class TranscodingJob:
    settings: JobSettings
    store: ObjectStore
    stage: str = "transcoding"

    def run(self, ctx: JobContext) -> dict[str, str]:
        src = _source(ctx, self.store)
        out = ctx.workdir / "hls"
        result = hls.package_hls(src, out, ctx.video_id, self.settings.hls, preset=self.settings.media.x264_preset,
                                 audio_bitrate=self.settings.upload_limits.audio_bitrate, progress=ctx.progress)
        prefix = ok.staged(ctx.staging_prefix, "hls")
        self.store.upload_dir(out, prefix, ctx.check_cancelled)
        manifest_key = ok.staged(ctx.staging_prefix, "hls.json")
        key_key = ok.staged(ctx.staging_prefix, "aes128.key")
        if result.key:
            self.store.put_bytes(key_key, result.key)
        self.store.put_json(manifest_key, result.to_dict())
        return {"hls_prefix": prefix, "hls_manifest_key": manifest_key,
                "hls_key_staging": key_key if result.key else "",
                "renditions": ",".join(r.name for r in result.renditions)}


@dataclass
class ThumbnailJob:
    settings: JobSettings
    store: ObjectStore
    stage: str = "thumbnail_generation"

    def run(self, ctx: JobContext) -> dict[str, str]:
        src = _source(ctx, self.store)
        out = ctx.workdir / "thumbnails"
        m = self.settings.media
        thumbs = thumbnails.generate_thumbnails(src, out, interval=m.thumbnail_interval,
                                                tile_width=m.thumbnail_tile_width, columns=m.thumbnail_columns,
                                                progress=ctx.progress)
        prefix = ok.staged(ctx.staging_prefix, "thumbnails")
        self.store.upload_dir(out, prefix, ctx.check_cancelled)
        return {"thumbnails_prefix": prefix, "thumbnail_count": str(len(thumbs.thumbnails))}


@dataclass
class AiProcessingJob:
    """Chapters from scene changes, black and silent stretches, EBU R128 loudness,
    and captions from speech (pocketsphinx's bundled model, offline).

    ``captions`` in the outputs says what happened: ``ok``, or why there are
    none (``no_audio``, ``no_speech``, ``too_long``, ``disabled``, ``timed_out``,
    ``failed``); the recogniser failing never fails the video.
    """
    settings: JobSettings
    store: ObjectStore
    stage: str = "ai_processing"

    def run(self, ctx: JobContext) -> dict[str, str]:
        src = _source(ctx, self.store)
        m = self.settings.media
        info = probe(src)
        speech_share = 0.0 if captions.skip_reason(info, m.captions) else 0.5
        result = analysis.analyze(src, info=info, scene_threshold=m.scene_threshold,
                                  min_chapter_seconds=m.min_chapter, black_min_duration=m.black_min_duration,
                                  silence_noise_db=m.silence_noise_db, silence_min_duration=m.silence_min_duration,
                                  progress=lambda f: ctx.progress(f * (1 - speech_share)))
        key = ok.staged(ctx.staging_prefix, "analysis.json")
        self.store.put_bytes(key, result.to_json().encode(), "application/json")
        chapters_vtt = captions.webvtt([captions.Cue(c.start, c.end, c.title) for c in result.chapters])
        chapters_key = ok.staged(ctx.staging_prefix, "chapters.vtt")
        self.store.put_bytes(chapters_key, chapters_vtt.encode(), "text/vtt")
        outputs = {"analysis_key": key, "chapters_key": chapters_key, "chapter_count": str(len(result.chapters)),
                   "loudness_lufs": f"{result.loudness.integrated_lufs:.1f}" if result.loudness and
                   result.loudness.integrated_lufs is not None else ""}
        return {**outputs, **self._captions(ctx, src, info, speech_share)}

    def _captions(self, ctx: JobContext, src: Path, info: MediaInfo, share: float) -> dict[str, str]:
        settings = self.settings.media.captions
        reason = captions.skip_reason(info, settings)
        if reason:
            return {"captions": reason}
        try:
            found = captions.transcribe(src, ctx.workdir, settings, info=info,
                                        progress=lambda f: ctx.progress(1 - share + f * share))
        except captions.CaptionsUnavailable as exc:   # captions are an extra: the video goes on without
            log.warning("video %s: no captions: %s", ctx.video_id, exc)
            timed_out = isinstance(exc, captions.CaptionsTimedOut)
            return {"captions": "timed_out" if timed_out else "failed", "captions_error": str(exc)[:500]}
        if found is None:
            return {"captions": "no_speech"}
        json_key = ok.staged(ctx.staging_prefix, "captions.json")
        self.store.put_bytes(json_key, captions.cues_to_json(found).encode(), "application/json")
        vtt_key = ok.staged(ctx.staging_prefix, "captions.vtt")
        self.store.put_bytes(vtt_key, found.to_webvtt().encode(), "text/vtt")
        return {"captions": "ok", "captions_key": json_key, "captions_vtt_key": vtt_key,
                "captions_language": found.language, "caption_cue_count": str(len(found.cues))}


@dataclass
class OptimizationJob:
    """Fast-start MP4, SSIM/PSNR per rung, and the per-title ladder (a pruned master)."""
    settings: JobSettings
    store: ObjectStore
    stage: str = "optimization"

    def run(self, ctx: JobContext) -> dict[str, str]:
        src = _source(ctx, self.store)
        hls_dir = ctx.workdir / "hls"
        self.store.download_prefix(ctx.inputs["hls_prefix"], hls_dir)
        key = self.store.get_bytes(ctx.inputs["hls_key_staging"]) if ctx.inputs.get("hls_key_staging") else None
        result = hls.hls_result_from_dict(self.store.get_json(ctx.inputs["hls_manifest_key"]), hls_dir, key)
        m = self.settings.media
        mp4 = ctx.workdir / "faststart.mp4"
        report = optimization.optimize(src, result, faststart_out=mp4, sample_seconds=m.quality_sample,
                                       min_ssim_gain_db=m.min_ssim_gain_db, min_psnr_gain_db=m.min_psnr_gain_db,
                                       apply=True, progress=ctx.progress, preset=m.x264_preset,
                                       audio_bitrate=self.settings.upload_limits.audio_bitrate)
        subtitles = self._subtitles(ctx, result, [r for r in result.renditions if r.name in report.pruning.kept])
        master_key = ok.staged(ctx.staging_prefix, "master.m3u8")
        self.store.upload_file(hls_dir / hls.MASTER_NAME, master_key, "application/vnd.apple.mpegurl")
        mp4_key = ok.staged(ctx.staging_prefix, "faststart.mp4")
        self.store.upload_file(mp4, mp4_key, "video/mp4")
        report_key = ok.staged(ctx.staging_prefix, "optimization.json")
        self.store.put_json(report_key, report.to_dict())
        return {"master_staging_key": master_key, "mp4_staging_key": mp4_key, "optimization_key": report_key,
                "kept_renditions": ",".join(report.pruning.kept),
                "dropped_renditions": ",".join(report.pruning.dropped), **subtitles}

    def _subtitles(self, ctx: JobContext, result: hls.HlsResult, kept: list[hls.Rendition]) -> dict[str, str]:
        """The captions as an HLS subtitles rendition on the video's segment grid, named in the master."""
        if not ctx.inputs.get("captions_key"):
            return {}
        found = captions.cues_from_json(self.store.get_bytes(ctx.inputs["captions_key"]) or b"{}")
        offset = hls.media_start_pts(result, ctx.workdir)
        duration = max(r.duration for r in result.renditions)
        segments = [(d, captions.webvtt(cues, mpegts_offset=offset))
                    for d, cues in captions.segment_cues(found.cues, duration, result.segment_duration)]
        track = hls.write_subtitle_track(result.out_dir, segments, language=found.language,
                                         name=captions.language_name(found.language),
                                         playlist_type=self.settings.hls.playlist_type)
        hls.write_master(result.out_dir, kept, [track], audio=result.audio)
        prefix = ok.staged(ctx.staging_prefix, hls.SUBTITLES_DIR)
        self.store.upload_dir(result.out_dir / hls.SUBTITLES_DIR, prefix, ctx.check_cancelled)
        return {"subtitles_prefix": prefix, "subtitles_playlist": track.playlist}


@dataclass
class CdnUploadJob:
    """Publish: staging → hls/{id}/…, thumbnails/{id}/…, the seed's source key, the key store.

    Every object gets its content type and the seed's Cache-Control for its
    file type. The master playlist is copied last, so a player never finds a
    master that names a rendition not yet there. Returns the AssetPublished
    body (as JSON) for the agent to announce.
    """
    settings: JobSettings
    store: ObjectStore
    stage: str = "cdn_upload"

    def _publish(self, src: str, dst: str) -> None:
        h = cc.headers_for_key(dst, self.settings.cdn.caching_rules)
        self.store.copy(src, dst, headers={"ContentType": h["Content-Type"], "CacheControl": h["Cache-Control"]})

    def _publish_captions(self, vid: str, inputs: Mapping[str, str]) -> dict[str, str]:
        """The subtitles rendition (segments before their playlist) and the whole-file WebVTT."""
        meta: dict[str, str] = {}
        if inputs.get("subtitles_prefix"):
            prefix = inputs["subtitles_prefix"]
            for key in sorted(self.store.keys(prefix + "/"), key=lambda k: k.endswith(hls.PLAYLIST_NAME)):
                self._publish(key, ok.subtitles_object(vid, key[len(prefix) + 1:]))
            meta = {"captions_playlist_key": ok.hls_object(vid, inputs["subtitles_playlist"]),
                    "captions_language": inputs.get("captions_language", "")}
        if inputs.get("captions_vtt_key"):
            meta["captions_key"] = ok.captions_vtt(vid)
            self._publish(inputs["captions_vtt_key"], meta["captions_key"])
        return meta

    def _kept_objects(self, vid: str, inputs: Mapping[str, str]) -> dict[str, str]:
        """The objects the video keeps besides its renditions, with their sizes, for the tiering worker
        (processors/tier_ledger.object_groups): the raw upload, the MP4 and the thumbnails prefix."""
        def size(key: str) -> str:
            head = self.store.head(key)
            return str(head["ContentLength"]) if head else "0"

        out = {"mp4_size": size(inputs["source_key"]),
               "thumbnails_size": str(sum(o["Size"] for o in self.store.objects(ok.thumbnails_root(vid))))}
        if inputs.get("object_key"):
            out |= {"upload_key": inputs["object_key"], "upload_size": size(inputs["object_key"])}
        return out

    def run(self, ctx: JobContext) -> dict[str, str]:
        vid = ctx.video_id
        inputs = ctx.inputs
        manifest = self.store.get_json(inputs["hls_manifest_key"])
        kept = set(filter(None, inputs.get("kept_renditions", "").split(",")))
        staging = inputs["hls_prefix"]
        renditions = []
        master = ok.master_playlist(vid)
        warm = [ok.edge_path(master)]
        first_n = self.settings.caching.warm_first_segments
        for i, r in enumerate(manifest["renditions"]):
            if kept and r["name"] not in kept:
                continue
            segments = [ok.hls_file(vid, r["name"], seg["name"]) for seg in r["segments"]]
            for seg, dst in zip(r["segments"], segments, strict=True):
                self._publish(ok.staged(staging, f"{r['name']}/{seg['name']}"), dst)
            playlist = ok.hls_object(vid, r["playlist"])
            self._publish(ok.staged(staging, r["playlist"]), playlist)
            warm.append(ok.edge_path(playlist))
            warm += [ok.edge_path(dst) for dst in segments[:first_n]]
            renditions.append({"name": r["name"], "width": r["width"], "height": r["height"],
                               "bandwidth": r["bandwidth"], "average_bandwidth": r["average_bandwidth"],
                               "codecs": r["codecs"], "frame_rate": r["frame_rate"],
                               "playlist_key": playlist, "segment_count": len(r["segments"]),
                               "size_bytes": r["size"]})
            ctx.progress(0.8 * (i + 1) / len(manifest["renditions"]))
        audio = manifest.get("audio")     # a chunked transcode's audio rendition, encoded once
        if audio:
            audio_segments = [ok.hls_file(vid, audio["name"], seg["name"]) for seg in audio["segments"]]
            for seg, dst in zip(audio["segments"], audio_segments, strict=True):
                self._publish(ok.staged(staging, f"{audio['name']}/{seg['name']}"), dst)
            self._publish(ok.staged(staging, audio["playlist"]), ok.hls_object(vid, audio["playlist"]))
            warm.append(ok.edge_path(ok.hls_object(vid, audio["playlist"])))
            warm += [ok.edge_path(dst) for dst in audio_segments[:first_n]]
        if inputs.get("hls_key_staging"):
            self.store.copy(inputs["hls_key_staging"], ok.hls_key(vid),
                            headers={"ContentType": "application/octet-stream",
                                     "CacheControl": "private, no-store"})
        thumbs = []
        for key in self.store.keys(inputs["thumbnails_prefix"] + "/"):
            dst = ok.thumbnail(vid, str(PurePosixPath(key[len(inputs["thumbnails_prefix"]) + 1:])))
            self._publish(key, dst)
            thumbs.append(dst)
        chapters = ok.chapters_vtt(vid)
        self._publish(inputs["chapters_key"], chapters)
        captions_meta = self._publish_captions(vid, inputs)
        self.store.copy(inputs["analysis_key"], ok.analysis_report(vid),
                        headers={"ContentType": "application/json", "CacheControl": "no-cache"})
        self._publish(inputs["mp4_staging_key"], inputs["source_key"])
        self._publish(inputs["master_staging_key"], master)      # last: the master makes the video playable
        # A rung the optimization dropped stays under hls/{id}/ (ended, VOD): a player that started on it while
        # the video processed plays it to the end; the master no longer lists it.
        storyboard = next((t for t in thumbs if t.endswith("storyboard.vtt")), None)
        kept_objects = self._kept_objects(vid, inputs)
        asset = {"video_id": vid, "job_id": ctx.job_id, "renditions": renditions, "master_playlist_key": master,
                 "duration_seconds": float(inputs.get("duration", "0") or 0),
                 "thumbnails": sorted(t for t in thumbs if "/thumbs/" in t or t.endswith("poster.jpg")),
                 "storyboard_key": storyboard, "chapters_key": chapters,
                 "key_id": ok.hls_key(vid) if inputs.get("hls_key_staging") else None,
                 "metadata": {"source_key": inputs["source_key"], "quality": inputs.get("quality", ""),
                              "owner_id": inputs.get("owner_id", ""),
                              "dropped_renditions": inputs.get("dropped_renditions", ""),
                              "captions": inputs.get("captions", ""), **captions_meta, **kept_objects}}
        ctx.progress(1.0)
        return {"master_playlist_key": master, "asset": json.dumps(asset), "warm_paths": json.dumps(warm)}
