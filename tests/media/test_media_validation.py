"""validate(): a reason code per broken input, a sampled decode that names a corrupt stretch; probe():
displayed dimensions."""
from dataclasses import replace

import pytest

from framelog.processors.media import decode_check
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.probe import probe
from framelog.processors.media.validation import ValidationFailed, quality_of, sample_windows, validate


@pytest.mark.parametrize("name, reason", [
    ("empty.mp4", "empty_file"),
    ("text.mp4", "not_media"),
    ("truncated.mp4", "truncated"),
    ("still.png", "still_image"),
    ("oneframe.mp4", "still_image"),
    ("audio.m4a", "audio_only"),
])
def test_broken_inputs_are_rejected_with_their_reason(clip, cfg, name, reason):
    with pytest.raises(ValidationFailed) as exc:
        validate(clip(name), cfg.upload_limits)
    assert exc.value.reason == reason, exc.value.message
    # what the uploader reads names the problem in words: no server path, no tool output
    assert "/" not in exc.value.message and clip(name).name not in exc.value.message


def test_truncated_file_probes_fine_but_fails_the_full_decode(clip):
    info = probe(clip("truncated.mp4"))  # ffprobe exits 0 on it
    assert info.has_video and info.duration > 0


@pytest.mark.parametrize("name", ["landscape.mp4", "portrait.mp4", "noaudio.mp4", "short.mp4", "odd.mp4",
                                  "vfr.mp4", "silent.mp4"])
def test_valid_clips_pass(clip, cfg, name):
    info = validate(clip(name), cfg.upload_limits)
    assert info.has_video and info.width > 0 and info.duration > 0


def test_too_large_and_too_long(clip, cfg):
    with pytest.raises(ValidationFailed) as exc:
        validate(clip("short.mp4"), replace(cfg.upload_limits, max_size=1000))
    assert exc.value.reason == "too_large"
    with pytest.raises(ValidationFailed) as exc:
        validate(clip("noaudio.mp4"), replace(cfg.upload_limits, max_duration=2.0))
    assert exc.value.reason == "too_long"


def test_validation_progress_reaches_one(clip, cfg):
    seen = []
    validate(clip("noaudio.mp4"), cfg.upload_limits, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_probe_portrait_swaps_displayed_dimensions(clip):
    info = probe(clip("portrait.mp4"))
    assert (info.coded_width, info.coded_height) == (320, 180)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (180, 320) and info.is_portrait
    assert quality_of(info) == "360p"


def test_probe_fields(clip):
    info = probe(clip("landscape.mp4"))
    assert (info.width, info.height, info.rotation) == (1280, 720, 0)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.has_audio
    assert info.fps == pytest.approx(25.0) and not info.variable_frame_rate
    assert info.duration == pytest.approx(12.0, abs=0.1)
    assert info.bitrate > 0 and info.size > 0 and "mp4" in info.format_name
    assert quality_of(info) == "720p"
    no_audio = probe(clip("noaudio.mp4"))
    assert not no_audio.has_audio and no_audio.audio_codec is None
    odd = probe(clip("odd.mp4"))
    assert (odd.width, odd.height) == (641, 363)


def test_probe_variable_frame_rate(clip):
    info = probe(clip("vfr.mp4"))
    assert info.variable_frame_rate
    assert 0 < info.fps < 25


def test_windows_are_the_start_the_end_and_samples_between():
    windows = sample_windows(7200.0, 8, 3.0)
    assert len(windows) == 10 and windows[0].start == 0 and windows[-1].end == pytest.approx(7200.0)
    assert all(b.start - a.start == pytest.approx(windows[1].start, abs=0.01) for a, b in zip(windows, windows[1:]))
    assert sample_windows(20.0, 8, 3.0) == [sample_windows(20.0, 8, 3.0)[0]]   # short: decoded whole
    assert sample_windows(20.0, 8, 3.0)[0].seconds == 20.0


def test_a_corrupt_stretch_fails_with_its_time_range(clip, cfg):
    """Bytes overwritten at the video packet of 30.0 s in a 60 s clip: the window there fails, on the
    10 s segment grid."""
    with pytest.raises(ValidationFailed) as exc:
        validate(clip("corrupt_middle.mp4"), cfg.upload_limits, sampling=replace(cfg.media.validation, samples=9),
                 segment_seconds=cfg.hls.segment_duration)
    assert exc.value.reason == "corrupt"
    assert str(exc.value) == "corrupt: undecodable frames at 00:00:30-00:00:40"
    assert "/tmp" not in exc.value.message and "[error]" in exc.value.detail   # the tool's output: operators only


def test_a_chunks_decode_errors_give_the_same_reason(clip, cfg):
    """What a chunk job calls on its own decode's log (decode_window_args / DECODE_LOG_OPTIONS)."""
    res = fc.run_ffmpeg(fc.decode_window_args(clip("corrupt_middle.mp4"), 20.0, 20.0), check=False)
    reason = decode_check.chunk_failure(res.stderr, res.returncode, chunk_start=20.0, chunk_end=40.0,
                                        grid=cfg.hls.segment_duration)
    assert reason == "corrupt: undecodable frames at 00:00:30-00:00:40"
    clean = fc.run_ffmpeg(fc.decode_window_args(clip("corrupt_middle.mp4"), 0.0, 20.0), check=False)
    assert decode_check.chunk_failure(clean.stderr, clean.returncode, chunk_start=0.0, chunk_end=20.0,
                                      grid=cfg.hls.segment_duration) is None


def test_a_two_hour_upload_is_validated_from_samples(clip, cfg):
    """Only the start, the end and the configured samples are decoded (timed in bench/bench_validation.py)."""
    windows = []
    info = validate(clip("two_hours.mp4"), cfg.upload_limits, sampling=cfg.media.validation,
                    progress=windows.append)
    assert info.duration == pytest.approx(7200, abs=1)
    assert len(windows) == cfg.media.validation.samples + 2 and windows[-1] == 1.0
