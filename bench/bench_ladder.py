"""Ladder benchmark: framelog's single-decode HLS ladder vs the seed's one-ffmpeg-per-profile.

Both produce the same ladder (planned from hls_config for the clip: 1080p, 720p,
480p, 360p for a 1080p source) with the same x264 preset, in one run, on a
generated testsrc2 + sine clip:

* framelog: ``hls.package_hls`` — one ffmpeg, one decode, ``split`` + scale per
  rung, HLS with AES-128, then framelog's measured master playlist.
* seed: ``ffmpeg_commands.seed_per_profile_commands`` — one ffmpeg per profile
  (one full decode each), started together as the seed's ``asyncio.gather``
  does, writing MP4s.

Measured: wall time, CPU time of child processes (``RUSAGE_CHILDREN`` user+sys),
their ratios, and the time until the first rendition is playable (framelog: all
rungs finish together when the single ffmpeg ends; seed: the first profile
process to exit). Writes ``<out>.json`` and ``<out>.md``.

    python bench/bench_ladder.py                 # 60 s 1080p, ~2-3 min of both cores
    python bench/bench_ladder.py --duration 10 --out /tmp/ladder-smoke   # smoke check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framelog.core.config import load_config
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.hls import package_hls
from framelog.processors.media.ladder import plan_ladder
from framelog.processors.media.probe import probe

HERE = Path(__file__).resolve().parent


def cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def make_clip(path: Path, duration: float, width: int, height: int, fps: int) -> Path:
    subprocess.run([fc.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "128k", str(path)], check=True)
    return path


def run_framelog(src: Path, out: Path, video_id: str, hls, preset: str, rungs) -> dict:
    c0, t0 = cpu_children(), time.monotonic()
    result = package_hls(src, out, video_id, hls, rungs=rungs, preset=preset)
    wall, cpu = time.monotonic() - t0, cpu_children() - c0
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "first_playable_seconds": round(wall, 3),
            "renditions": [{"name": r.name, "resolution": r.resolution, "bandwidth": r.bandwidth,
                            "average_bandwidth": r.average_bandwidth, "target_bitrate": r.target_bitrate,
                            "codecs": r.codecs, "segments": len(r.segments)} for r in result.renditions]}


def run_seed(src: Path, out: Path, rungs, preset: str, audio_bitrate: int, has_audio: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmds = fc.seed_per_profile_commands(src, [(r.name, r.width, r.height, r.video_bitrate) for r in rungs], out,
                                        audio_bitrate=audio_bitrate, preset=preset, has_audio=has_audio)
    c0, t0 = cpu_children(), time.monotonic()
    procs = [(r.name, subprocess.Popen(c)) for r, c in zip(rungs, cmds)]  # asyncio.gather: all at once
    finished = {}
    pending = dict(procs)
    while pending:
        for name, p in list(pending.items()):
            if p.poll() is not None:
                if p.returncode != 0:
                    raise RuntimeError(f"seed profile {name} failed with {p.returncode}")
                finished[name] = time.monotonic() - t0
                del pending[name]
        time.sleep(0.05)
    wall, cpu = time.monotonic() - t0, cpu_children() - c0
    sizes = {r.name: (out / f"{r.name}.mp4").stat().st_size for r in rungs}
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "first_playable_seconds": round(min(finished.values()), 3),
            "profile_finish_seconds": {k: round(v, 3) for k, v in finished.items()},
            "renditions": [{"name": r.name, "resolution": r.resolution, "target_bitrate": r.video_bitrate,
                            "measured_bitrate": int(sizes[r.name] * 8 / max(probe(out / f'{r.name}.mp4').duration, 0.001))}
                           for r in rungs]}


def markdown(res: dict) -> str:
    f, s = res["framelog"], res["seed"]
    lines = [
        "# Ladder benchmark: single decode vs the seed's per-profile ffmpeg",
        "",
        f"Clip: testsrc2 + sine, {res['clip']['width']}x{res['clip']['height']} @ {res['clip']['fps']} fps, "
        f"{res['clip']['duration']} s. Ladder: {', '.join(res['ladder'])}. x264 preset `{res['preset']}` for both. "
        f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}; ffmpeg {res['machine']['ffmpeg']}. "
        f"Run at {res['timestamp']}.",
        "",
        "| approach | wall (s) | CPU (s) | first playable (s) | output |",
        "|---|---:|---:|---:|---|",
        f"| framelog: one decode, split + scale, HLS AES-128 | {f['wall_seconds']:.1f} | {f['cpu_seconds']:.1f} | "
        f"{f['first_playable_seconds']:.1f} | HLS, {len(f['renditions'])} renditions |",
        f"| seed: one ffmpeg per profile (concurrent) | {s['wall_seconds']:.1f} | {s['cpu_seconds']:.1f} | "
        f"{s['first_playable_seconds']:.1f} | {len(s['renditions'])} MP4s |",
        "",
        f"* Speed-up (seed wall / framelog wall): **{res['ratios']['wall_speedup']:.2f}x** (target >= 1.25x)",
        f"* CPU ratio (seed CPU / framelog CPU): **{res['ratios']['cpu_ratio']:.2f}x**",
        f"* Time to first playable rendition: framelog {f['first_playable_seconds']:.1f} s "
        f"({res['ratios']['framelog_first_playable_vs_duration']:.2f}x the clip's duration), "
        f"seed {s['first_playable_seconds']:.1f} s",
        "",
        "| rung | framelog BANDWIDTH | framelog AVERAGE-BANDWIDTH | target | seed measured |",
        "|---|---:|---:|---:|---:|",
    ]
    seed_by = {r["name"]: r for r in s["renditions"]}
    for r in f["renditions"]:
        lines.append(f"| {r['name']} ({r['resolution']}) | {r['bandwidth']} | {r['average_bandwidth']} | "
                     f"{r['target_bitrate']} | {seed_by.get(r['name'], {}).get('measured_bitrate', '')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default=fc.DEFAULT_PRESET)
    ap.add_argument("--out", default=str(HERE / "results" / "ladder"), help="path prefix for .json and .md")
    ap.add_argument("--workdir", default=None, help="keep clip and outputs here (default: a temp dir)")
    args = ap.parse_args(argv)

    cfg = load_config()
    with tempfile.TemporaryDirectory(prefix="framelog-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = make_clip(work / "clip.mp4", args.duration, args.width, args.height, args.fps)
        info = probe(src)
        rungs = plan_ladder(info, cfg.hls.quality_levels)
        print(f"ladder: {[r.name + ' ' + r.resolution for r in rungs]}", file=sys.stderr)
        fl = run_framelog(src, work / "framelog", "bench", cfg.hls, args.preset, rungs)
        print(f"framelog: {fl['wall_seconds']} s wall, {fl['cpu_seconds']} s CPU", file=sys.stderr)
        sd = run_seed(src, work / "seed", rungs, args.preset, cfg.upload_limits.audio_bitrate, info.has_audio)
        print(f"seed:     {sd['wall_seconds']} s wall, {sd['cpu_seconds']} s CPU", file=sys.stderr)
    ffv = subprocess.run([fc.FFMPEG, "-version"], capture_output=True, text=True).stdout.split()[2]
    res = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clip": {"duration": args.duration, "width": args.width, "height": args.height, "fps": args.fps},
        "preset": args.preset, "ladder": [f"{r.name} {r.resolution} {r.video_bitrate // 1000}k" for r in rungs],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "ffmpeg": ffv},
        "framelog": fl, "seed": sd,
        "ratios": {"wall_speedup": round(sd["wall_seconds"] / fl["wall_seconds"], 3),
                   "cpu_ratio": round(sd["cpu_seconds"] / max(fl["cpu_seconds"], 1e-9), 3),
                   "framelog_first_playable_vs_duration": round(fl["first_playable_seconds"] / args.duration, 3)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
