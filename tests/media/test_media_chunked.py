"""Chunked transcoding's output is one seamless ladder (issue 13 pt 3): the chunks of a clip that flashes
and beeps at known instants, encoded apart and stitched, against the single-pass ladder of the same clip."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from framelog.processors.media import chunked, hls
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.chunking import plan_chunks
from framelog.processors.media.optimization import measure_quality
from tests.media.support import clips, measure

FPS = 25
DURATION = 30.0
FLASHES = (3.0, 14.0, 27.0)           # one in each 10 s chunk; the last near the end
# The production preset: ultrafast's own losses (SSIM ~0.95 against the source at 90p) are larger than the
# difference chunking makes, so the two ladders could not be compared at it.
PRESET = fc.DEFAULT_PRESET
RUNGS = (fc.RungSpec("180p", 320, 180, 400_000, 440_000, 800_000), fc.RungSpec("90p", 160, 90, 120_000, 132_000,
                                                                                   240_000))


@dataclass
class Ladders:
    source: Path
    chunked_dir: Path
    single_dir: Path
    outputs: list[chunked.ChunkOutput]
    audio: chunked.RungSegments


@pytest.fixture(scope="module")
def ladders(tmp_path_factory) -> Ladders:
    work = tmp_path_factory.mktemp("chunked")
    src = clips.flash_beep(work / "flash.mp4", at=FLASHES, duration=DURATION, fps=FPS)
    out = work / "chunked"
    plan = plan_chunks(DURATION, 10, 10)
    outputs = [chunked.encode_chunk(src, out, c, RUNGS, fps=FPS, segment_seconds=10, key=None, preset=PRESET,
                                    duration=DURATION) for c in plan.chunks]
    audio = chunked.encode_audio(src, out, segment_seconds=10, key=None, duration=DURATION)
    for r in RUNGS:
        text = chunked.media_playlist(chunked.stitched_segments(outputs, r.name), key_line="", ended=True)
        (out / r.name / hls.PLAYLIST_NAME).write_text(text)
    (out / "audio" / hls.PLAYLIST_NAME).write_text(chunked.media_playlist(audio.segments, key_line="", ended=True))
    single = work / "single"
    for r in RUNGS:
        (single / r.name).mkdir(parents=True)
    fc.run_ffmpeg(fc.hls_ladder_args(src, single, RUNGS, fps=FPS, has_audio=False, preset=PRESET))
    return Ladders(src, out, single, outputs, audio)


def test_each_rung_is_one_continuous_vod_with_the_sources_frames(ladders):
    for r in RUNGS:
        text = (ladders.chunked_dir / r.name / hls.PLAYLIST_NAME).read_text()
        assert "#EXT-X-DISCONTINUITY" not in text and text.rstrip().endswith("#EXT-X-ENDLIST")
        assert re.findall(r"segment_(\d+)\.ts", text) == ["00000", "00001", "00002"]
        times = [t for t, _ in measure.frames(ladders.chunked_dir / r.name / hls.PLAYLIST_NAME)]
        assert len(times) == DURATION * FPS                              # the source's 750 frames
        steps = {round(b - a, 4) for a, b in zip(times, times[1:], strict=False)}
        assert steps == {1 / FPS}, steps                                 # no gap, no overlap at 10 s and 20 s
        assert times[0] == pytest.approx(fc.CHUNK_TS_BASE + 1.4, abs=1e-3)


def test_audio_and_video_stay_in_sync_to_the_last_flash(ladders):
    rung = ladders.chunked_dir / RUNGS[0].name / hls.PLAYLIST_NAME
    flashes = measure.flash_times(rung)
    beeps = [b for b in measure.beep_onsets(ladders.chunked_dir / "audio" / hls.PLAYLIST_NAME)
             if b < flashes[-1] + 1]                                    # the last "onset" is the stream's end
    assert len(flashes) == len(FLASHES) and len(beeps) == len(FLASHES), (flashes, beeps)
    for flash, beep in zip(flashes, beeps, strict=True):
        assert abs(flash - beep) < 1 / FPS, (flash, beep)              # within one frame, the last one included
    start = flashes[0] - FLASHES[0]
    assert [round(f - start, 3) for f in flashes] == list(FLASHES)      # each flash where the source has it


LONG = 600.0                              # the ten minutes, in chunks of the production length
LONG_FLASHES = (3.0, 301.0, 597.0)        # the first chunk, the middle, and 3 s before the end


def test_audio_and_video_stay_in_sync_at_the_end_of_a_ten_minute_clip(tmp_path):
    """Ten chunks of 60 s (framelog.yaml's chunk length) at the smallest rung: no drift accumulates over the
    chunk boundaries, the last flash and its beep are within one frame, and no frame is lost or doubled."""
    src = clips.flash_beep(tmp_path / "long.mp4", at=LONG_FLASHES, duration=LONG, fps=FPS, width=160, height=90)
    out = tmp_path / "chunked"
    rung = RUNGS[1:]
    plan = plan_chunks(LONG, 60, 10)
    assert len(plan.chunks) == 10
    outputs = [chunked.encode_chunk(src, out, c, rung, fps=FPS, segment_seconds=10, key=None, preset="ultrafast",
                                    duration=LONG) for c in plan.chunks]
    audio = chunked.encode_audio(src, out, segment_seconds=10, key=None, duration=LONG)
    video_playlist = out / rung[0].name / hls.PLAYLIST_NAME
    video_playlist.write_text(chunked.media_playlist(chunked.stitched_segments(outputs, rung[0].name), key_line="",
                                                     ended=True))
    audio_playlist = out / "audio" / hls.PLAYLIST_NAME
    audio_playlist.write_text(chunked.media_playlist(audio.segments, key_line="", ended=True))

    frames = measure.frames(video_playlist)
    assert len(frames) == LONG * FPS                                     # 15,000 frames: none lost or doubled
    flashes = [t for t, y in frames if y >= 200.0]
    beeps = [b for b in measure.beep_onsets(audio_playlist) if b < flashes[-1] + 1]
    assert len(flashes) == len(LONG_FLASHES) and len(beeps) == len(LONG_FLASHES), (flashes, beeps)
    for flash, beep in zip(flashes, beeps, strict=True):
        assert abs(flash - beep) < 1 / FPS, (flash, beep)
    start = flashes[0] - LONG_FLASHES[0]
    assert [round(f - start, 3) for f in flashes] == list(LONG_FLASHES)


def test_audio_is_encoded_once_without_a_seam(ladders):
    segs = ladders.audio.segments
    assert sum(s.duration for s in segs) == pytest.approx(DURATION, abs=0.05)
    assert ladders.audio.codecs == hls.AUDIO_CODEC


def test_chunked_ladder_matches_the_single_pass_in_quality_and_size(ladders):
    for r in RUNGS:
        score = measure_quality(ladders.single_dir / r.name / hls.PLAYLIST_NAME,
                                ladders.chunked_dir / r.name / hls.PLAYLIST_NAME, ref_width=r.width,
                                ref_height=r.height, fps=FPS, sample_seconds=DURATION, distorted_is_hls=True)
        assert score.ssim >= 0.99, (r.name, score)
        chunked_size = sum(s.size for s in chunked.stitched_segments(ladders.outputs, r.name))
        single_size = sum(p.stat().st_size for p in (ladders.single_dir / r.name).glob("*.ts"))
        ratio = chunked_size / single_size                               # video against video
        assert 0.95 <= ratio <= 1.05, (r.name, ratio)


def test_a_corrupt_stretch_fails_its_chunk_with_the_time_range(tmp_path):
    full = clips.video(tmp_path / "full.mp4", width=320, height=180, duration=30)
    bad = clips.corrupt_at(full, tmp_path / "bad.mp4", 20.0)            # the keyframe at 20 s onwards
    plan = plan_chunks(30.0, 10, 10)
    rung = RUNGS[1:]
    chunked.encode_chunk(bad, tmp_path / "ok", plan.chunk(1), rung, fps=FPS, segment_seconds=10, key=None,
                         preset="ultrafast", duration=30.0)                 # the stretch before decodes
    with pytest.raises(chunked.ChunkCorrupt) as failed:
        chunked.encode_chunk(bad, tmp_path / "bad", plan.chunk(2), rung, fps=FPS, segment_seconds=10, key=None,
                             preset="ultrafast", duration=30.0)
    assert failed.value.reason == "corrupt: undecodable frames at 00:00:20-00:00:30"
    assert "/" not in failed.value.public                                 # no server path for the uploader
