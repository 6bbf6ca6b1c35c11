"""Ladder planning: never upscale, keep the aspect ratio, even sizes, portrait boxes."""
import pytest

from framelog.core.config import load_config
from framelog.processors.media.ladder import fit, plan_ladder


@pytest.fixture(scope="module")
def levels():
    return load_config().hls.quality_levels


def dims(rungs):
    return [(r.name, r.width, r.height) for r in rungs]


def test_1080p_source_gets_every_rung_up_to_1080p(levels):
    rungs = plan_ladder((1920, 1080), levels)
    assert dims(rungs) == [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 852, 480), ("360p", 640, 360)]
    assert [r.video_bitrate for r in rungs] == [5_000_000, 2_500_000, 1_000_000, 500_000]
    assert rungs[0].maxrate > rungs[0].video_bitrate and rungs[0].bufsize == 2 * rungs[0].video_bitrate
    assert rungs[0].nominal_bandwidth == 5_000_000


def test_4k_source_gets_the_4k_rung(levels):
    assert [r.name for r in plan_ladder((3840, 2160), levels)] == ["4K", "1080p", "720p", "480p", "360p"]


@pytest.mark.parametrize("w, h", [(1280, 720), (1920, 1080), (641, 363), (1000, 700), (3840, 1600), (720, 1280),
                                  (1080, 1920), (200, 100), (2, 2), (853, 481)])
def test_never_upscales_and_even(levels, w, h):
    rungs = plan_ladder((w, h), levels)
    assert rungs
    for r in rungs:
        assert r.width <= w and r.height <= h
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert abs(r.width / r.height - w / h) < 0.02 * (w / h) + 2 / r.height
    assert [r.height * r.width for r in rungs] == sorted((r.height * r.width for r in rungs), reverse=True)


def test_smaller_than_lowest_rung_keeps_source_size(levels):
    rungs = plan_ladder((320, 180), levels)
    assert dims(rungs) == [("360p", 320, 180)]
    assert rungs[0].video_bitrate == 125_000  # 500k scaled by area (1/4), floor 25 %
    assert dims(plan_ladder((641, 363), levels)) == [("360p", 634, 360)]


def test_portrait_uses_the_rung_height_as_the_short_side(levels):
    assert dims(plan_ladder((1080, 1920), levels)) == [
        ("1080p", 1080, 1920), ("720p", 720, 1280), ("480p", 480, 852), ("360p", 360, 640)]
    assert dims(plan_ladder((180, 320), levels)) == [("360p", 180, 320)]


def test_letterbox_and_4_3(levels):
    assert dims(plan_ladder((1920, 800), levels))[:2] == [("1080p", 1920, 800), ("720p", 1280, 532)]
    assert dims(plan_ladder((1440, 1080), levels))[:2] == [("1080p", 1440, 1080), ("720p", 960, 720)]


def test_fit():
    assert fit(1920, 1080, 1280, 720) == (1280, 720)
    assert fit(1080, 1920, 1280, 720) == (720, 1280)
    assert fit(1000, 1000, 1280, 720) == (720, 720)


def test_rejects_empty_source(levels):
    with pytest.raises(ValueError):
        plan_ladder((0, 0), levels)
