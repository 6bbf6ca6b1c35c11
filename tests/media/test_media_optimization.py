"""Faststart remux, rung quality against the source and ladder pruning."""

from framelog.processors.media.optimization import evaluate_ladder, faststart, optimize, prune_ladder


def _atoms(path):
    data = path.read_bytes()
    out, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 8].decode("latin1"))
        if size < 8:
            break
        i += size
    return out


def test_faststart_puts_moov_first(clip, tmp_path):
    src = clip("noaudio.mp4")
    assert _atoms(src).index("moov") > _atoms(src).index("mdat")
    out = faststart(src, tmp_path / "fs.mp4")
    atoms = _atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")


def test_rung_quality_and_pruning(clip, landscape_hls, tmp_path):
    result, _ = landscape_hls
    rungs, start, length = evaluate_ladder(clip("landscape.mp4"), result, sample_seconds=4)
    assert length == 4 and start > 0  # middle window of a 12 s clip
    by = {r.name: r for r in rungs}
    assert set(by) == {"720p", "480p", "360p"}
    for r in rungs:
        assert 0.8 < r.ssim <= 1.0 and r.psnr > 25 and r.measured_bitrate > 0 and r.bytes > 0
    assert by["720p"].ssim > by["360p"].ssim and by["720p"].psnr > by["360p"].psnr
    keep_all = prune_ladder(rungs, min_ssim_gain_db=0.0, min_psnr_gain_db=0.0)
    assert keep_all.kept == ("720p", "480p", "360p") and keep_all.dropped == ()
    drop_all = prune_ladder(rungs, min_ssim_gain_db=100, min_psnr_gain_db=100)
    assert drop_all.kept == ("360p",) and set(drop_all.dropped) == {"720p", "480p"}
    assert "360p" in drop_all.reasons["480p"]


def test_optimize_end_to_end(clip, cfg, tmp_path):
    from framelog.processors.media.hls import package_hls
    from tests.media.support import PRESET
    res = package_hls(clip("odd.mp4"), tmp_path / "hls", "vid-opt", cfg.hls, preset=PRESET)
    o = optimize(clip("odd.mp4"), res, faststart_out=tmp_path / "fs.mp4", min_ssim_gain_db=100, apply=True)
    assert o.faststart.is_file()
    assert o.pruning.kept == ("360p",) and o.rungs[0].ssim > 0.8
    assert o.to_dict()["pruning"]["kept"] == ["360p"] or o.to_dict()["pruning"]["kept"] == ("360p",)
