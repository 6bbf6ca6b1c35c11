"""Chunked transcoding's jobs, free of Kafka: the plan (the transcoding stage), one chunk, the stitch.

Object layout under the transcoding stage's staging (``work/{video}/{job}/transcoding/``)::

    chunk_plan.json              the plan: chunks, rungs, frame rate, conditioning, key URI and IV
    aes128.key                   the video's AES-128 key (private: no edge serves work/)
    hls/<rung>/segment_NNNNN.ts  every chunk's segments, named by their place in the video
    hls/audio/segment_NNNNN.ts   the audio rendition (encoded once)
    hls/<rung>/playlist.m3u8     written by the stitch when every chunk is in (VOD; the growing EVENT
                                 playlists, one per rung, are the published preview's, under hls/{id}/:
                                 publish_preview)
    hls/master.m3u8, hls.json    written by the stitch when every chunk is in
    chunks/<i>.json              what chunk i wrote (its manifest); chunks/<i>/_SUCCESS.json its marker

A chunk job needs only the bootstrap servers and the S3 endpoint: it reads the
upload through a presigned URL (ffmpeg's range requests) and writes its segments
to object storage, never to a disk another machine would need.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from framelog.core import object_keys as ok
from framelog.core.config import CdnConfig
from framelog.core.object_keys import MARKER_NAME
from framelog.pipeline.jobs.base import JobContext, JobSettings, PermanentJobError
from framelog.processors import cache_control as cc
from framelog.processors.media import chunked, hls
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.chunking import Chunk, plan_chunks
from framelog.processors.media.ladder import plan_ladder
from framelog.processors.media.probe import MediaInfo
from framelog.sinks.object_store import ObjectStore

PLAN_NAME = "chunk_plan.json"
STAGE = "transcoding"
AUDIO = "audio"
VIDEO = "video"


def stage_prefix(video_id: str, job_id: str) -> str:
    return ok.stage_staging(video_id, job_id, STAGE)


def plan_key(video_id: str, job_id: str) -> str:
    """The chunk plan every chunk job and the stitch read."""
    return ok.staged(stage_prefix(video_id, job_id), PLAN_NAME)


def chunk_manifest_key(video_id: str, job_id: str, index: int) -> str:
    return ok.staged(stage_prefix(video_id, job_id), f"chunks/{index:05d}.json")


def chunk_marker_key(video_id: str, job_id: str, index: int) -> str:
    return ok.staged(stage_prefix(video_id, job_id), f"chunks/{index:05d}/{MARKER_NAME}")


@dataclass(frozen=True)
class ChunkJobSpec:
    """One job of the plan, as it travels in a ChunkRequest."""
    index: int
    kind: str                 # "video" or "audio"
    start: float
    end: float
    first_segment: int
    segment_count: int


@dataclass(frozen=True)
class Plan:
    """What every chunk job and the stitch need to know about the video (``chunk_plan.json``)."""
    video_id: str
    job_id: str
    source_key: str
    duration: float
    fps: float
    segment_seconds: int
    chunk_seconds: int
    rungs: tuple[fc.RungSpec, ...]
    chunks: tuple[ChunkJobSpec, ...]        # the video chunks, then the audio job if the source has audio
    conditioning: fc.Conditioning
    audio_stream: int
    has_audio: bool
    encrypted: bool
    key_uri: str | None
    iv_hex: str | None
    key_key: str                            # object key of the AES key ("" when not encrypted)
    hls_prefix: str
    stage_inputs: dict[str, str]            # the transcoding StageRequest's inputs, handed on by the stitch
    priority: str = ""

    @property
    def video_chunks(self) -> tuple[ChunkJobSpec, ...]:
        return tuple(c for c in self.chunks if c.kind == VIDEO)

    @property
    def chunk_count(self) -> int:
        return len(self.video_chunks)

    def job(self, index: int) -> ChunkJobSpec:
        return self.chunks[index]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(**{**d, "rungs": tuple(fc.RungSpec(**r) for r in d["rungs"]),
                      "chunks": tuple(ChunkJobSpec(**c) for c in d["chunks"]),
                      "conditioning": fc.Conditioning(**d["conditioning"])})


def load_plan(store: ObjectStore, key: str) -> Plan:
    data = store.get_json(key)
    if data is None:
        raise FileNotFoundError(f"chunk plan {key} is not in object storage")
    return Plan.from_dict(data)


def load_key(store: ObjectStore, plan: Plan) -> chunked.KeyMaterial | None:
    if not plan.encrypted:
        return None
    key = store.get_bytes(plan.key_key)
    if key is None or plan.iv_hex is None or plan.key_uri is None:
        raise FileNotFoundError(f"the AES key of video {plan.video_id} is not in object storage")
    return chunked.KeyMaterial(key, bytes.fromhex(plan.iv_hex), plan.key_uri)


@dataclass
class ChunkPlanJob:
    """The transcoding stage when chunked: plan the ladder and the chunks, write the plan and the key.

    Its outputs go to the stage runner's ``fan_out`` (pipeline/agents/chunks.py), which
    puts one ChunkRequest per job on the log; the stitch ends the stage.
    """
    settings: JobSettings
    store: ObjectStore
    stage: str = STAGE

    def run(self, ctx: JobContext) -> dict[str, str]:
        info_doc = self.store.get_json(ctx.inputs["media_info_key"])
        if info_doc is None:
            raise FileNotFoundError("the validation stage's media info is not in object storage")
        info = MediaInfo(**info_doc)
        settings = self.settings.media.transcoding
        segment = self.settings.hls.segment_duration
        try:
            chunks = plan_chunks(info.duration, settings.chunk_seconds, segment,
                                 min_tail=settings.min_tail_segments)
        except ValueError as exc:
            raise PermanentJobError("invalid_duration", f"the video has no usable duration: {exc}") from None
        jobs = [ChunkJobSpec(c.index, VIDEO, c.start, c.end, c.first_segment, c.segment_count) for c in chunks.chunks]
        if info.has_audio:
            jobs.append(ChunkJobSpec(len(jobs), AUDIO, 0.0, info.duration, 0, 0))
        base = stage_prefix(ctx.video_id, ctx.job_id)
        encrypted = self.settings.hls.encryption
        key_key = ok.staged(base, ok.HLS_KEY_NAME) if encrypted else ""
        iv_hex = None
        if encrypted:
            existing = self.store.get_bytes(key_key)     # a re-run keeps the key the chunks already used
            self.store.put_bytes(key_key, existing or os.urandom(16), "application/octet-stream")
            earlier = self.store.get_json(plan_key(ctx.video_id, ctx.job_id)) or {}
            iv_hex = earlier.get("iv_hex") or os.urandom(16).hex()
        plan = Plan(ctx.video_id, ctx.job_id, ctx.inputs["object_key"], info.duration, hls.output_fps(info), segment,
                    chunks.chunk_seconds, tuple(r.spec() for r in plan_ladder(info, self.settings.hls.quality_levels)),
                    tuple(jobs), info.conditioning(), info.audio_index, info.has_audio, encrypted,
                    f"{self.settings.hls.key_uri_base.rstrip('/')}/{ctx.video_id}" if encrypted else None, iv_hex,
                    key_key, ok.staged(base, "hls"), dict(ctx.inputs), ctx.inputs.get("priority", ""))
        key = plan_key(ctx.video_id, ctx.job_id)
        self.store.put_json(key, plan.to_dict())
        return {"chunk_plan_key": key, "chunk_count": str(plan.chunk_count), "chunk_jobs": str(len(jobs)),
                "renditions": ",".join(r.name for r in plan.rungs)}


@dataclass
class ChunkJob:
    """One chunk's whole ladder (or the audio) encoded and its segments written to object storage."""
    settings: JobSettings
    store: ObjectStore
    stage: str = "chunks"

    def run(self, ctx: JobContext) -> dict[str, str]:
        plan = load_plan(self.store, ctx.inputs["plan_key"])
        spec = plan.job(int(ctx.inputs["chunk_index"]))
        key = load_key(self.store, plan)
        url = self.store.presigned_url(plan.source_key, int(self.settings.pipeline.stage(STAGE).timeout) * 2)
        out = ctx.workdir / "hls"
        if spec.kind == AUDIO:
            audio = chunked.encode_audio(url, out, segment_seconds=plan.segment_seconds, key=key,
                                         audio_bitrate=self.settings.upload_limits.audio_bitrate,
                                         audio_stream=plan.audio_stream, duration=plan.duration, progress=ctx.progress)
            self._upload(ctx, out, plan, audio)
            manifest: dict[str, Any] = {"index": spec.index, "kind": AUDIO, "audio": audio.to_dict()}
        else:
            chunk = Chunk(spec.index, spec.start, spec.end, spec.first_segment, spec.segment_count)
            try:
                result = chunked.encode_chunk(url, out, chunk, plan.rungs, fps=plan.fps,
                                              segment_seconds=plan.segment_seconds, key=key,
                                              preset=self.settings.media.x264_preset, conditioning=plan.conditioning,
                                              duration=plan.duration, progress=ctx.progress)
            except chunked.ChunkCorrupt as exc:
                raise PermanentJobError("corrupt", exc.reason, exc.detail) from None
            for rung in result.rungs:
                self._upload(ctx, out, plan, rung)
            manifest = {"index": spec.index, "kind": VIDEO, "chunk": result.to_dict()}
        manifest_key = chunk_manifest_key(plan.video_id, plan.job_id, spec.index)
        self.store.put_json(manifest_key, manifest)
        return {"manifest_key": manifest_key}

    def _upload(self, ctx: JobContext, out: Path, plan: Plan, rung: chunked.RungSegments) -> None:
        """The rung's segments (not the chunk-local playlist: the stitch writes the video's)."""
        for seg in rung.segments:
            ctx.check_cancelled()
            self.store.upload_file(out / rung.name / seg.name, ok.staged(plan.hls_prefix, f"{rung.name}/{seg.name}"),
                                   "video/mp2t")


def _manifests(store: ObjectStore, plan: Plan, done: set[int]) -> tuple[dict[int, chunked.ChunkOutput],
                                                                        chunked.RungSegments | None]:
    outputs: dict[int, chunked.ChunkOutput] = {}
    audio = None
    for spec in plan.chunks:
        if spec.index not in done:
            continue
        doc = store.get_json(chunk_manifest_key(plan.video_id, plan.job_id, spec.index))
        if doc is None:
            raise FileNotFoundError(f"chunk {spec.index} of video {plan.video_id} has no manifest")
        if spec.kind == AUDIO:
            audio = chunked.RungSegments.from_dict(doc["audio"])
        else:
            outputs[spec.index] = chunked.ChunkOutput.from_dict(doc["chunk"])
    return outputs, audio


def _published_copy(store: ObjectStore, cdn: CdnConfig, src: str, dst: str) -> None:
    h = cc.headers_for_key(dst, cdn.caching_rules)
    store.copy(src, dst, headers={"ContentType": h["Content-Type"], "CacheControl": h["Cache-Control"]})


def _lowest_first(plan: Plan) -> list[fc.RungSpec]:
    return sorted(plan.rungs, key=lambda r: (r.width * r.height, r.video_bitrate))


def publish_preview(store: ObjectStore, cdn: CdnConfig, plan: Plan, done: set[int],
                    already: Mapping[str, int]) -> tuple[dict[str, int], dict[str, str]]:
    """Playable while processing (issue 13 pt 4): every rung's leading chunks done, and the audio, published
    under ``hls/{id}/`` with one growing EVENT playlist per rung, a master naming every rung that has its
    first chunk there (lowest first, with the separate audio rendition), and the key.

    ``already`` maps each rung to the leading chunks published before (their segments are not copied again).
    Returns the same map for now and the ``preview_*`` outputs the stream API builds a provisional asset
    from ({} while chunk 0 or the audio is missing). cdn_upload later overwrites the playlists and the master.
    """
    video_done = {i for i in done if plan.job(i).kind == VIDEO}
    audio_done = not plan.has_audio or any(plan.job(i).kind == AUDIO for i in done)
    outputs, audio = _manifests(store, plan, done)
    ladder = _lowest_first(plan)
    leads = chunked.leading_by_rung(outputs, plan.chunk_count, [r.name for r in ladder])
    if not leads or not audio_done or not video_done:
        return dict(already), {}
    vid = plan.video_id
    first = not any(already.values())
    for spec in ladder:
        for o in leads.get(spec.name, [])[already.get(spec.name, 0):]:
            for seg in o.rung(spec.name).segments:
                _published_copy(store, cdn, ok.staged(plan.hls_prefix, f"{spec.name}/{seg.name}"),
                                ok.hls_file(vid, spec.name, seg.name))
    audio_rendition = None
    if audio is not None:
        audio_rendition = chunked.audio_rendition(audio)
        if first:
            for seg in audio.segments:
                _published_copy(store, cdn, ok.staged(plan.hls_prefix, f"{chunked.AUDIO_NAME}/{seg.name}"),
                                ok.hls_file(vid, chunked.AUDIO_NAME, seg.name))
            text = chunked.media_playlist(audio.segments, key_line=audio.key_line, ended=True)
            audio_playlist = ok.rendition_playlist(vid, chunked.AUDIO_NAME)
            store.put_bytes(audio_playlist, text.encode(),
                            cc.headers_for_key(audio_playlist, cdn.caching_rules)["Content-Type"])
    if first and plan.encrypted:
        store.copy(plan.key_key, ok.hls_key(vid), headers={"ContentType": "application/octet-stream",
                                                              "CacheControl": "private, no-store"})
    renditions = []
    for spec in ladder:                          # the playlists before the master that names them
        lead = leads.get(spec.name)
        if not lead:
            continue
        ended = len(lead) == plan.chunk_count
        if len(lead) != already.get(spec.name, 0) or first:
            text = chunked.media_playlist(chunked.stitched_segments(lead, spec.name),
                                          key_line=lead[0].rung(spec.name).key_line, ended=ended,
                                          playlist_type="VOD" if ended else "EVENT")
            store.put_bytes(ok.rendition_playlist(vid, spec.name), text.encode(),
                            "application/vnd.apple.mpegurl")
        renditions.append((chunked.stitched_rendition(spec, lead, fps=plan.fps, audio=audio), len(lead)))
    store.put_bytes(ok.master_playlist(vid),
                    hls.master_playlist_text([r for r, _ in renditions], audio=audio_rendition).encode(),
                    "application/vnd.apple.mpegurl")
    listed = [{"name": r.name, "width": r.width, "height": r.height, "bandwidth": r.bandwidth,
               "average_bandwidth": r.average_bandwidth, "codecs": r.codecs, "chunks": n} for r, n in renditions]
    lowest, lowest_chunks = renditions[0]
    return {r.name: n for r, n in renditions}, {
        "preview_master_key": ok.master_playlist(vid), "preview_rendition": lowest.name,
        "preview_width": str(lowest.width), "preview_height": str(lowest.height),
        "preview_bandwidth": str(lowest.bandwidth), "preview_average_bandwidth": str(lowest.average_bandwidth),
        "preview_codecs": lowest.codecs, "preview_frame_rate": f"{plan.fps:.3f}",
        "preview_chunks": str(lowest_chunks), "preview_duration": f"{plan.duration:.3f}",
        "preview_renditions": json.dumps(listed, separators=(",", ":")),
        "preview_key_id": ok.hls_key(vid) if plan.encrypted else ""}


def stitch(store: ObjectStore, plan: Plan, playlist_type: str = "VOD") -> dict[str, str]:
    """Every chunk is in: write each rung's continuous VOD playlist, the audio's, the master and the
    manifest (hls.json, as a single pass writes it); return the transcoding stage's outputs."""
    outputs, audio = _manifests(store, plan, {c.index for c in plan.chunks})
    ordered = [outputs[c.index] for c in plan.video_chunks]
    renditions = []
    for spec in plan.rungs:
        segs = chunked.stitched_segments(ordered, spec.name)
        text = chunked.media_playlist(segs, key_line=ordered[0].rung(spec.name).key_line, ended=True,
                                      playlist_type=playlist_type)
        store.put_bytes(ok.staged(plan.hls_prefix, f"{spec.name}/{hls.PLAYLIST_NAME}"), text.encode(),
                        "application/vnd.apple.mpegurl")
        renditions.append(chunked.stitched_rendition(spec, ordered, fps=plan.fps, audio=audio))
    audio_rendition = None
    if audio is not None:
        text = chunked.media_playlist(audio.segments, key_line=audio.key_line, ended=True, playlist_type=playlist_type)
        store.put_bytes(ok.staged(plan.hls_prefix, f"{chunked.AUDIO_NAME}/{hls.PLAYLIST_NAME}"), text.encode(),
                        "application/vnd.apple.mpegurl")
        audio_rendition = chunked.audio_rendition(audio)
    master = hls.master_playlist_text(renditions, audio=audio_rendition)
    store.put_bytes(ok.staged(plan.hls_prefix, hls.MASTER_NAME), master.encode(), "application/vnd.apple.mpegurl")
    result = hls.HlsResult(plan.video_id, Path("."), Path(hls.MASTER_NAME), tuple(renditions), plan.segment_seconds,
                           plan.encrypted, None, bytes.fromhex(plan.iv_hex) if plan.iv_hex else None, plan.key_uri,
                           plan.has_audio, sum(o.wall_seconds for o in ordered), audio_rendition)
    manifest_key = ok.staged(stage_prefix(plan.video_id, plan.job_id), "hls.json")
    store.put_bytes(manifest_key, json.dumps(result.to_dict()).encode(), "application/json")
    return {"hls_prefix": plan.hls_prefix, "hls_manifest_key": manifest_key, "hls_key_staging": plan.key_key,
            "renditions": ",".join(r.name for r in renditions), "chunk_plan_key":
            plan_key(plan.video_id, plan.job_id), "chunk_count": str(plan.chunk_count)}
