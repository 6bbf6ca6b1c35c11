"""Captions: speech-to-text with the model that ships inside the pocketsphinx wheel.

pocketsphinx (PyPI) carries its US English acoustic model, language model and
dictionary in the package (``pocketsphinx.get_model_path()``), so recognition
runs offline on the CPU with nothing to download. It is a small, old model:
captions are rough, but they are searchable text with correct timing.

How a video becomes captions:

1. ffmpeg extracts the first audio track as 16 kHz mono PCM
   (``ffmpeg_commands.speech_pcm_args``);
2. a child process (``python -m framelog.processors.media.captions PCM``) splits
   the audio into speech stretches with pocketsphinx's voice-activity
   segmenter and decodes each one, reporting progress and then the words with
   their times as JSON lines. A child, not a thread: the decoder holds the GIL
   for seconds at a time, which would starve the stage's Kafka heartbeats, and a
   child is killed outright when the stage times out;
3. words become cues (a new cue per speech stretch, and after
   ``max_cue_words`` words or ``max_cue_duration`` seconds), written as WebVTT.

Silence, tones and noise yield no speech stretches or no words, hence no
captions (``None``), which is not an error.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from framelog.core import child_processes
from framelog.core.errors import FramelogError
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import MediaInfo, probe

SAMPLE_RATE = 16000                  # what the bundled acoustic model was trained on
BYTES_PER_SECOND = SAMPLE_RATE * 2   # 16-bit mono
EXTRACT_SHARE = 0.1                  # of the progress bar, for the ffmpeg extraction
PROGRESS_EVERY_SECONDS = 30          # of audio read, at least, between progress reports of the recogniser
LANGUAGE_NAMES = {"en": "English"}
_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")     # <s>, </s>, <sil>, [NOISE], ++UM++
_ALTERNATE = re.compile(r"\(\d+\)$")                     # "the(2)": the dictionary's second pronunciation


class CaptionsUnavailable(FramelogError):
    """No bundled model for the configured language, or the recogniser failed."""


class CaptionsTimedOut(CaptionsUnavailable):
    """The recogniser used up its time budget (``max_recognition_time``) and was stopped."""


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    stretch: int          # index of the speech stretch it was heard in


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Captions:
    language: str
    cues: tuple[Cue, ...]
    words: int
    audio_seconds: float
    wall_seconds: float

    def to_webvtt(self, mpegts_offset: int | None = None) -> str:
        return webvtt(self.cues, mpegts_offset=mpegts_offset)


class CaptionSettings(Protocol):  # framelog.core.config.CaptionsConfig fits (read-only: configs are frozen)
    @property
    def enabled(self) -> bool: ...
    @property
    def language(self) -> str: ...
    @property
    def max_duration(self) -> float: ...
    @property
    def max_recognition_time(self) -> float: ...
    @property
    def max_cue_duration(self) -> float: ...
    @property
    def max_cue_words(self) -> int: ...


# ---------------------------------------------------------------- pure parts

def model_dir(language: str) -> Path:
    """The bundled model directory for a BCP 47 tag ("en-US" -> .../model/en-us)."""
    from pocketsphinx import get_model_path

    path = Path(get_model_path()) / language.lower()
    if not (path / language.lower()).is_dir():
        raise CaptionsUnavailable(f"pocketsphinx ships no model for {language!r} (looked in {path})")
    return path


def language_name(language: str) -> str:
    return LANGUAGE_NAMES.get(language.split("-")[0].lower(), language)


def clean_word(token: str) -> str | None:
    """A recogniser token as caption text, or None for fillers and silence markers."""
    if _FILLER.match(token):
        return None
    return _ALTERNATE.sub("", token) or None


def words_to_cues(words: Sequence[Word], *, max_cue_duration: float, max_cue_words: int,
                  duration: float | None = None) -> list[Cue]:
    """Consecutive words grouped into cues; a cue never spans two speech stretches."""
    cues: list[Cue] = []
    group: list[Word] = []

    def flush() -> None:
        if group:
            start, end = group[0].start, group[-1].end
            if duration is not None:
                start, end = min(start, duration), min(end, duration)
            if cues and start < cues[-1].end:
                start = cues[-1].end
            if end > start:
                cues.append(Cue(round(start, 3), round(end, 3), " ".join(w.text for w in group)))
            group.clear()

    for w in words:
        if group and (w.stretch != group[-1].stretch or len(group) >= max_cue_words
                      or w.end - group[0].start > max_cue_duration):
            flush()
        group.append(w)
    flush()
    return cues


def vtt_time(t: float) -> str:
    h, rem = divmod(max(t, 0.0), 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(cues: Sequence[Cue], *, mpegts_offset: int | None = None) -> str:
    """A WebVTT file. ``mpegts_offset`` (90 kHz ticks) adds the HLS header
    ``X-TIMESTAMP-MAP=MPEGTS:<offset>,LOCAL:00:00:00.000`` that ties cue time 0
    to the media segments' first timestamp (RFC 8216 §3.5; colons inside, as
    players such as hls.js parse it)."""
    head = "WEBVTT\n"
    if mpegts_offset is not None:
        head += f"X-TIMESTAMP-MAP=MPEGTS:{int(mpegts_offset)},LOCAL:00:00:00.000\n"
    body = "".join(f"\n{i}\n{vtt_time(c.start)} --> {vtt_time(c.end)}\n{_escape(c.text)}\n"
                   for i, c in enumerate(cues, 1))
    return head + body


def segment_cues(cues: Sequence[Cue], duration: float, segment_seconds: float) -> list[tuple[float, list[Cue]]]:
    """Cues split along the video's segment grid: (segment duration, every cue shown
    during it). A cue crossing a boundary is in both segments, as HLS requires."""
    count = max(1, math.ceil(duration / segment_seconds - 1e-6))
    out = []
    for i in range(count):
        start, end = i * segment_seconds, min((i + 1) * segment_seconds, duration)
        out.append((end - start, [c for c in cues if c.start < end and c.end > start]))
    return out


def cues_to_json(captions: Captions) -> str:
    return json.dumps({"language": captions.language, "words": captions.words,
                       "audio_seconds": captions.audio_seconds, "wall_seconds": captions.wall_seconds,
                       "cues": [[c.start, c.end, c.text] for c in captions.cues]})


def cues_from_json(text: str | bytes) -> Captions:
    d = json.loads(text)
    return Captions(d["language"], tuple(Cue(float(a), float(b), t) for a, b, t in d["cues"]), int(d["words"]),
                    float(d["audio_seconds"]), float(d["wall_seconds"]))


def skip_reason(info: MediaInfo, settings: CaptionSettings) -> str | None:
    """Why a video gets no captions before any work: ``disabled``, ``no_audio``, ``too_long``."""
    if not settings.enabled:
        return "disabled"
    if not info.has_audio:
        return "no_audio"
    if info.duration > settings.max_duration:
        return "too_long"
    return None


# ---------------------------------------------------------------- the recogniser (runs in the child)

def recognize(pcm: BinaryIO, total_bytes: int, language: str,
              progress: Callable[[float], None] = lambda f: None) -> list[Word]:
    """Words heard in raw 16 kHz mono s16le PCM, in order, with times in seconds."""
    from pocketsphinx import Decoder, Segmenter

    model = model_dir(language)
    name = language.lower()
    decoder = None              # loaded at the first speech stretch (~1.5 s): tones and silence never pay for it
    segmenter = Segmenter(sample_rate=SAMPLE_RATE)
    words: list[Word] = []
    counted = _CountingReader(pcm, total_bytes, progress, every=PROGRESS_EVERY_SECONDS * BYTES_PER_SECOND)
    for stretch, speech in enumerate(segmenter.segment(counted)):
        if decoder is None:
            decoder = Decoder(hmm=str(model / name), lm=str(model / f"{name}.lm.bin"),
                              dict=str(model / f"cmudict-{name}.dict"), samprate=SAMPLE_RATE, loglevel="FATAL")
            frame_rate = float(decoder.config["frate"])
        decoder.start_utt()
        decoder.process_raw(speech.pcm, False, True)
        decoder.end_utt()
        for seg in decoder.seg():
            text = clean_word(seg.word)
            if text:
                words.append(Word(text, round(speech.start_time + seg.start_frame / frame_rate, 3),
                                  round(speech.start_time + (seg.end_frame + 1) / frame_rate, 3), stretch))
        counted.report()
    return words


class _CountingReader(io.RawIOBase):
    """A read-only view of a stream that reports how far it has been read, every ``every`` bytes
    (so long silences, which yield no speech stretch, still show progress)."""

    def __init__(self, raw: BinaryIO, total: int, progress: Callable[[float], None], every: int):
        self.raw, self.total, self.progress, self.every = raw, total, progress, every
        self.position = self.reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.position += len(data)
        if self.position - self.reported >= self.every:
            self.report()
        return data

    def report(self) -> None:
        self.reported = self.position
        self.progress(min(self.position / self.total, 1.0) if self.total else 1.0)


def _child_main(argv: Sequence[str]) -> int:
    """``python -m framelog.processors.media.captions PCM LANGUAGE``: JSON lines on stdout."""
    path, language = Path(argv[0]), argv[1]

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    with path.open("rb") as f:
        words = recognize(f, path.stat().st_size, language, progress=lambda p: say({"progress": round(p, 4)}))
    say({"words": [[w.text, w.start, w.end, w.stretch] for w in words]})
    return 0


def recognizer_args(pcm: Path, language: str) -> list[str]:
    return [sys.executable, "-m", "framelog.processors.media.captions", str(pcm), language]


def _run_recognizer(pcm: Path, language: str, progress: Callable[[float], None], time_budget: float) -> list[Word]:
    """The child's words; it is killed when ``progress`` raises (the stage timed out) or after ``time_budget`` s."""
    with tempfile.TemporaryFile() as stderr, child_processes.popen(  # a file: a chatty child never blocks on a pipe
            recognizer_args(pcm, language), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        words = None
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        watchdog = threading.Timer(time_budget, expire)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                msg = json.loads(line)
                if "progress" in msg:
                    progress(float(msg["progress"]))      # may raise to cancel: the child is killed below
                elif "words" in msg:
                    words = [Word(t, float(s), float(e), int(k)) for t, s, e, k in msg["words"]]
            rc = proc.wait()
        except BaseException:
            proc.kill()
            raise
        finally:
            watchdog.cancel()
            child_processes.forget(proc)
        stderr.seek(0)
        err = stderr.read().decode("utf-8", "replace")
    if expired.is_set() and words is None:
        raise CaptionsTimedOut(f"speech recognition stopped after its {time_budget:g}s budget")
    if rc != 0 or words is None:
        raise CaptionsUnavailable(f"speech recogniser exited with {rc}: {err.strip()[-1000:]}")
    return words


# ---------------------------------------------------------------- the job

def transcribe(src: str | os.PathLike[str], workdir: str | os.PathLike[str], settings: CaptionSettings, *,
               info: MediaInfo | None = None, progress: fc.Progress | None = None) -> Captions | None:
    """Captions for ``src``, or None: no audio, captions disabled, longer than
    ``max_duration``, or nothing that sounds like speech. Raises CaptionsTimedOut
    when recognition outlasts ``max_recognition_time`` (a busy machine)."""
    started = time.monotonic()
    report = progress or (lambda f: None)
    info = info or probe(src)
    if skip_reason(info, settings):
        return None
    model_dir(settings.language)                       # fail before the work if the model is missing
    pcm = Path(workdir) / "speech.s16le"
    fc.run_ffmpeg(fc.speech_pcm_args(src, pcm, sample_rate=SAMPLE_RATE), duration=info.duration,
                  progress=lambda f: report(f * EXTRACT_SHARE))
    try:
        words = _run_recognizer(pcm, settings.language, lambda f: report(EXTRACT_SHARE + f * (1 - EXTRACT_SHARE)),
                                settings.max_recognition_time)
        audio_seconds = pcm.stat().st_size / BYTES_PER_SECOND
    finally:
        pcm.unlink(missing_ok=True)
    cues = words_to_cues(words, max_cue_duration=settings.max_cue_duration, max_cue_words=settings.max_cue_words,
                         duration=info.duration or None)
    report(1.0)
    if not cues:
        return None
    return Captions(settings.language, tuple(cues), len(words), audio_seconds, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
