"""Per-title ladder pruning on scores that are perfect (flat or lossless pictures: SSIM dB and PSNR are inf)."""
from __future__ import annotations

import math

from framelog.processors.media.optimization import RungQuality, prune_ladder

INF = math.inf


def _rung(name, height, size, ssim_db, psnr):
    return RungQuality(name, height * 16 // 9, height, size, size * 8 // 10, 0, 1.0, ssim_db, psnr)


def test_perfect_scores_on_every_rung_keep_only_the_smallest():
    rungs = [_rung("720p", 720, 32160, INF, INF), _rung("480p", 480, 30656, INF, INF),
             _rung("360p", 360, 30096, INF, INF)]
    decision = prune_ladder(rungs, min_ssim_gain_db=0.5, min_psnr_gain_db=0.5)
    assert decision.kept == ("360p",) and set(decision.dropped) == {"480p", "720p"}
    assert "+0.00 dB" in decision.reasons["720p"]


def test_a_perfect_rung_above_an_imperfect_one_is_kept():
    rungs = [_rung("720p", 720, 50000, INF, INF), _rung("360p", 360, 20000, 20.0, 40.0)]
    assert prune_ladder(rungs, min_ssim_gain_db=0.5, min_psnr_gain_db=0.5).kept == ("720p", "360p")


def test_no_gain_at_equal_bytes_is_dropped_but_a_cheaper_bigger_rung_is_kept():
    same = [_rung("720p", 720, 29712, INF, INF), _rung("360p", 360, 29712, INF, INF)]
    assert prune_ladder(same, min_ssim_gain_db=0.5, min_psnr_gain_db=0.5).dropped == ("720p",)
    cheaper = [_rung("720p", 720, 29000, INF, INF), _rung("360p", 360, 29712, INF, INF)]
    assert prune_ladder(cheaper, min_ssim_gain_db=0.5, min_psnr_gain_db=0.5).dropped == ()
