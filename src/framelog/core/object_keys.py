"""Where every object lives in the bucket: the one layout of framelog's object keys.

Every key is built here from validated parts, so no id, stage or file name
from outside can climb out of its prefix, and a reader finds the whole layout
in one page. Prefixes a video owns alone (``VIDEO_PREFIXES``) are what a
delete removes; ``hls/`` and ``thumbnails/`` (and the dated ``videos/`` MP4s)
are what an edge serves; ``uploads/``, ``work/``, ``keys/``, ``meta/`` and
``deleted/`` never are.

    uploads/{id}/original                      the raw upload
    uploads/{id}/_session.json | _receipt.json the resumable upload's session and receipt
    uploads/{id}/_partial/{next part:05d}      the bytes a resumable upload holds short of a whole part
    work/{id}/{job}/{stage}/attempt-{n}/...    a stage's staging (discarded after publication)
    work/{id}/{job}/{stage}/_SUCCESS.json      a stage's completion marker
    hls/{id}/master.m3u8, hls/{id}/{rendition}/...,  hls/{id}/subtitles/...   the published ladder
    thumbnails/{id}/...                        posters, tiles, storyboard, chapters.vtt
    keys/{id}/aes128.key                       the HLS AES-128 key (never served by an edge)
    meta/{id}/analysis.json                    the analysis report
    videos/{yyyy}/{mm}/{quality}/{id}.mp4      the progressive MP4 (the seed's generateCDNPath)
    deleted/{id}                               the deletion tombstone
"""
from __future__ import annotations

import re
from datetime import datetime

from framelog.core.ids import is_opaque_id, validate_video_id

UPLOADS = "uploads"
WORK = "work"
HLS = "hls"
THUMBNAILS = "thumbnails"
KEYS = "keys"
META = "meta"
VIDEOS = "videos"
DELETED = "deleted"

VIDEO_PREFIXES = (UPLOADS, WORK, HLS, THUMBNAILS, KEYS, META)   # a video's own prefixes (a delete removes them)
EDGE_PREFIXES = (HLS, THUMBNAILS)          # laid out <kind>/<video_id>/<file...>; an edge serves them

MASTER_NAME = "master.m3u8"
PLAYLIST_NAME = "playlist.m3u8"
SUBTITLES_DIR = "subtitles"
CAPTIONS_NAME = "captions.vtt"
CHAPTERS_NAME = "chapters.vtt"
MARKER_NAME = "_SUCCESS.json"
HLS_KEY_NAME = "aes128.key"

_QUALITY = re.compile(r"[A-Za-z0-9_-]{1,32}")
_RENDITION = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")     # a file or folder name: no leading dot


# ------------------------------------------------------------------ parts

def quality(name: object) -> str:
    """A quality label of the MP4 path (``1080p``): 1-32 of [A-Za-z0-9_-]; ValueError otherwise."""
    if not isinstance(name, str) or not _QUALITY.fullmatch(name):
        raise ValueError(f"invalid quality name {name!r}: expected 1-32 characters of [A-Za-z0-9_-]")
    return name


def rendition(name: object) -> str:
    """A rendition folder under ``hls/{id}/``: 1-32 of [A-Za-z0-9_.-], never '.' or '..'."""
    if not isinstance(name, str) or not _RENDITION.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"invalid rendition name {name!r}")
    return name


def relative_path(path: object) -> str:
    """A path below a video's prefix: names of [A-Za-z0-9_.-] (no leading dot) separated by '/'."""
    parts = path.split("/") if isinstance(path, str) else [None]
    if not all(isinstance(p, str) and _NAME.fullmatch(p) for p in parts):
        raise ValueError(f"invalid file name {path!r}: expected names of [A-Za-z0-9_.-] separated by '/'")
    assert isinstance(path, str)
    return path


def _job(job_id: object) -> str:
    if not is_opaque_id(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return job_id


def _stage(stage: object) -> str:
    if not is_opaque_id(stage):
        raise ValueError(f"invalid stage name {stage!r}")
    return stage


def _attempt(attempt: object) -> int:
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ValueError(f"invalid attempt {attempt!r}")
    return attempt


# ------------------------------------------------------------------ uploads

def upload_root(video_id: str) -> str:
    """Everything of one upload (trailing '/')."""
    return f"{UPLOADS}/{validate_video_id(video_id)}/"


def raw_upload(video_id: str) -> str:
    return f"{upload_root(video_id)}original"


def upload_session(video_id: str) -> str:
    """The open resumable upload's session (its multipart upload id, length, owner)."""
    return f"{upload_root(video_id)}_session.json"


def upload_receipt(video_id: str) -> str:
    """What a finished resumable upload announced (size, sha256, the UploadCompleted offset)."""
    return f"{upload_root(video_id)}_receipt.json"


def upload_partials(video_id: str) -> str:
    """The resumable upload's trailing partial parts (trailing '/')."""
    return f"{upload_root(video_id)}_partial/"


def upload_partial(video_id: str, next_part: int) -> str:
    """The trailing bytes that will begin part ``next_part`` (named by it, so a stale one is known)."""
    if not isinstance(next_part, int) or isinstance(next_part, bool) or not 1 <= next_part <= 99_999:
        raise ValueError(f"invalid part number {next_part!r}")
    return f"{upload_partials(video_id)}{next_part:05d}"


# ------------------------------------------------------------------ pipeline staging

def staging_root(video_id: str) -> str:
    """Every stage's staging of one video (trailing '/': a listing prefix)."""
    return f"{WORK}/{validate_video_id(video_id)}/"


def stage_staging(video_id: str, job_id: str, stage: str) -> str:
    """A stage's staging shared by its attempts and jobs (chunked transcoding's plan and chunks; no trailing '/')."""
    return f"{staging_root(video_id)}{_job(job_id)}/{_stage(stage)}"


def job_staging(video_id: str, job_id: str, stage: str, attempt: int) -> str:
    """Where one attempt of a stage writes its outputs (no trailing '/')."""
    return f"{stage_staging(video_id, job_id, stage)}/attempt-{_attempt(attempt)}"


def job_marker(video_id: str, job_id: str, stage: str) -> str:
    """A stage's completion marker, shared by its attempts."""
    return f"{staging_root(video_id)}{_job(job_id)}/{_stage(stage)}/{MARKER_NAME}"


def is_marker(key: str) -> bool:
    return key.endswith(f"/{MARKER_NAME}")


def staged(prefix: str, path: str) -> str:
    """``path`` (a relative file path) under a staging prefix a stage was given."""
    return f"{prefix.rstrip('/')}/{relative_path(path)}"


# ------------------------------------------------------------------ published

def hls_root(video_id: str) -> str:
    """A video's published HLS (trailing '/')."""
    return f"{HLS}/{validate_video_id(video_id)}/"


def hls_object(video_id: str, path: str) -> str:
    """Any published HLS file by its path relative to the master (``720p/seg_00001.ts``, ``subtitles/en/...``)."""
    return f"{hls_root(video_id)}{relative_path(path)}"


def master_playlist(video_id: str) -> str:
    return f"{hls_root(video_id)}{MASTER_NAME}"


def rendition_prefix(video_id: str, name: str) -> str:
    """One rendition's folder (trailing '/'): what the tiering moves as one unit."""
    return f"{hls_root(video_id)}{rendition(name)}/"


def rendition_playlist(video_id: str, name: str) -> str:
    return f"{rendition_prefix(video_id, name)}{PLAYLIST_NAME}"


def hls_file(video_id: str, name: str, file: str) -> str:
    """A segment or init file of one rendition: ``hls/{id}/{rendition}/{file}``."""
    return f"{rendition_prefix(video_id, name)}{relative_path(file)}"


def subtitles_object(video_id: str, path: str) -> str:
    """A file of the subtitles rendition, ``path`` relative to its folder."""
    return f"{hls_root(video_id)}{SUBTITLES_DIR}/{relative_path(path)}"


def captions_vtt(video_id: str) -> str:
    """The whole-file WebVTT captions (next to the subtitles rendition)."""
    return subtitles_object(video_id, CAPTIONS_NAME)


def thumbnails_root(video_id: str) -> str:
    return f"{THUMBNAILS}/{validate_video_id(video_id)}/"


def thumbnail(video_id: str, path: str) -> str:
    return f"{thumbnails_root(video_id)}{relative_path(path)}"


def chapters_vtt(video_id: str) -> str:
    return thumbnail(video_id, CHAPTERS_NAME)


def hls_key(video_id: str) -> str:
    """Where a video's AES-128 key lives: never under a prefix an edge serves."""
    return f"{KEYS}/{validate_video_id(video_id)}/{HLS_KEY_NAME}"


def analysis_report(video_id: str) -> str:
    return f"{META}/{validate_video_id(video_id)}/analysis.json"


def progressive_mp4(video_id: str, quality_name: str, at: datetime) -> str:
    """The seed's ``generateCDNPath``: ``videos/{yyyy}/{mm}/{quality}/{id}.mp4``, dated by the upload."""
    return f"{VIDEOS}/{at.year:04d}/{at.month:02d}/{quality(quality_name)}/{validate_video_id(video_id)}.mp4"


_MP4 = re.compile(r"videos/[0-9]{4}/[0-9]{2}/[A-Za-z0-9_-]{1,32}/([A-Za-z0-9_-]{1,64})\.mp4")


def is_progressive_mp4(key: object, video_id: str | None = None) -> bool:
    """``key`` has the MP4 path's shape (and names ``video_id``, if given)."""
    m = _MP4.fullmatch(key) if isinstance(key, str) else None
    return m is not None and (video_id is None or m.group(1) == video_id)


# ------------------------------------------------------------------ deletion

def tombstone(video_id: str) -> str:
    """``deleted/{id}``: outside the video's own prefixes, so a delete never removes it."""
    return f"{DELETED}/{validate_video_id(video_id)}"


def video_prefixes(video_id: str) -> tuple[str, ...]:
    """Every object prefix that belongs to one video alone (trailing '/')."""
    video_id = validate_video_id(video_id)
    return tuple(f"{p}/{video_id}/" for p in VIDEO_PREFIXES)


def edge_path(key: str) -> str:
    """The path an edge serves ``key`` at (what warm and purge name)."""
    return "/" + key.lstrip("/")
