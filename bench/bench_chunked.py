"""Chunked transcoding benchmark: one worker vs two workers on the same clip, in one run, against the single pass.

Three runs of the same ladder on the same generated clip (testsrc2 + sine), same x264 preset:

* single pass: ``ffmpeg_commands.hls_ladder_args`` — one ffmpeg, one decode, every rung and the audio;
* chunked, 1 worker: the chunk jobs (``processors/media/chunked``: ``encode_chunk`` per chunk, ``encode_audio``
  once) taken from one queue by one worker process pinned to CPU 0 (``sched_setaffinity``, as ``taskset -c 0``;
  its ffmpeg inherits the pinning);
* chunked, 2 workers: the same jobs shared by two worker processes pinned to CPU 0 and CPU 1.

The chunk jobs here are the processors the pipeline's chunk workers call, without Kafka and S3 (their
overhead is a few records and object writes per chunk); the audio job is queued first, as the fan-out does.

Measured: wall time, CPU time of all descendants (``RUSAGE_CHILDREN`` user+sys), the 2-worker speed-up over
1 worker, chunked CPU over the single pass, time to first playable (the audio and chunk 0 done: what a growing
playlist needs), SSIM of each chunked rung against the single-pass rung (whole clip) and the size ratio.
Writes ``<out>.json`` and ``<out>.md``.

    python bench/bench_chunked.py                                  # 120 s 720p, 20 s chunks
    python bench/bench_chunked.py --duration 600 --width 1920 --height 1080 --chunk-seconds 60   # the issue's clip
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framelog.core.config import load_config
from framelog.processors.media import chunked, hls
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media.chunking import plan_chunks
from framelog.processors.media.ladder import plan_ladder
from framelog.processors.media.optimization import measure_quality
from framelog.processors.media.probe import probe

HERE = Path(__file__).resolve().parent
AUDIO_JOB = -1


def cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def make_clip(path: Path, duration: float, width: int, height: int, fps: int) -> Path:
    subprocess.run([fc.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-g", str(fps * 2),
                    "-c:a", "aac", "-b:a", "128k", str(path)], check=True)
    return path


def run_single(src: Path, out: Path, rungs, fps: float, preset: str, audio_bitrate: int) -> dict:
    for r in rungs:
        (out / r.name).mkdir(parents=True, exist_ok=True)
    c0, t0 = cpu_children(), time.monotonic()
    fc.run_ffmpeg(fc.hls_ladder_args(src, out, [r.spec() for r in rungs], fps=fps, has_audio=True, preset=preset,
                                     audio_bitrate=audio_bitrate))
    wall = time.monotonic() - t0
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu_children() - c0, 3),
            "first_playable_seconds": round(wall, 3)}


def _worker(cpu: int, jobs: mp.Queue, done: mp.Queue, src: str, out: str, plan, specs, fps: float, preset: str,
            audio_bitrate: int, duration: float) -> None:
    os.sched_setaffinity(0, {cpu})                      # taskset -c <cpu>: ffmpeg inherits it
    while True:
        index = jobs.get()
        if index is None:
            return
        if index == AUDIO_JOB:
            chunked.encode_audio(src, out, segment_seconds=plan.segment_seconds, key=None,
                                 audio_bitrate=audio_bitrate, duration=duration)
        else:
            chunked.encode_chunk(src, out, plan.chunk(index), specs, fps=fps, segment_seconds=plan.segment_seconds,
                                 key=None, preset=preset, duration=duration)
        done.put((index, cpu, time.monotonic()))


def run_chunked(src: Path, out: Path, workers: int, plan, rungs, fps: float, preset: str, audio_bitrate: int,
                duration: float) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < workers:
        raise SystemExit(f"{workers} workers need {workers} CPUs; this process may use {cpus}")
    jobs: mp.Queue = mp.Queue()
    done: mp.Queue = mp.Queue()
    for index in [AUDIO_JOB, *range(plan.count)]:
        jobs.put(index)
    for _ in range(workers):
        jobs.put(None)
    specs = [r.spec() for r in rungs]
    c0, t0 = cpu_children(), time.monotonic()
    procs = [mp.Process(target=_worker, args=(cpus[i], jobs, done, str(src), str(out), plan, specs, fps, preset,
                                              audio_bitrate, duration)) for i in range(workers)]
    for p in procs:
        p.start()
    finished = {}
    for _ in range(plan.count + 1):
        index, cpu, at = done.get()
        finished[index] = (cpu, at - t0)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a chunk worker exited with {p.exitcode}")
    wall = time.monotonic() - t0
    first = max(finished[AUDIO_JOB][1], finished[0][1])
    return {"workers": workers, "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu_children() - c0, 3),
            "first_playable_seconds": round(first, 3),
            "jobs": {("audio" if i == AUDIO_JOB else str(i)): {"cpu": c, "done_at": round(t, 3)}
                     for i, (c, t) in sorted(finished.items())}}


def stitch_local(out: Path, plan, rungs) -> list[chunked.ChunkOutput]:
    """The stitched playlists of a chunked run's directory (the stitch job's playlists, locally)."""
    outputs = []
    for c in plan.chunks:
        segs = []
        for r in rungs:
            names = [f"segment_{c.first_segment + i:05d}.ts" for i in range(c.segment_count)]
            durations = [min(plan.segment_seconds, c.end - (c.start + i * plan.segment_seconds))
                         for i in range(c.segment_count)]
            segs.append(chunked.RungSegments(r.name, "", tuple(hls.Segment(n, d, (out / r.name / n).stat().st_size)
                                                               for n, d in zip(names, durations, strict=True)), ""))
        outputs.append(chunked.ChunkOutput(c.index, c.start, c.end, tuple(segs), None, 0.0))
    for r in rungs:
        text = chunked.media_playlist(chunked.stitched_segments(outputs, r.name), key_line="", ended=True)
        (out / r.name / hls.PLAYLIST_NAME).write_text(text)
    return outputs


def compare(single: Path, chunked_dir: Path, rungs, fps: float, duration: float) -> list[dict]:
    rows = []
    for r in rungs:
        score = measure_quality(single / r.name / hls.PLAYLIST_NAME, chunked_dir / r.name / hls.PLAYLIST_NAME,
                                ref_width=r.width, ref_height=r.height, fps=fps, sample_seconds=duration,
                                distorted_is_hls=True)
        single_size = sum(p.stat().st_size for p in (single / r.name).glob("*.ts"))
        chunked_size = sum(p.stat().st_size for p in (chunked_dir / r.name).glob("*.ts"))
        audio_size = sum(p.stat().st_size for p in (chunked_dir / chunked.AUDIO_NAME).glob("*.ts"))
        frames = fc.run_json([fc.FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                              "stream=nb_read_frames", "-of", "json", str(chunked_dir / r.name / hls.PLAYLIST_NAME)])
        rows.append({"rung": r.name, "resolution": r.resolution, "ssim_vs_single": score.ssim,
                     "psnr_vs_single": score.psnr, "single_bytes": single_size,
                     "chunked_bytes": chunked_size + audio_size,
                     "size_ratio": round((chunked_size + audio_size) / single_size, 4),
                     "frames": int(frames["streams"][0]["nb_read_frames"])})
    return rows


def reading(res: dict) -> str:
    """What the figures say, from the figures: how much CPU each run actually got decides the ratio."""
    one, two = res["one_worker"], res["two_workers"]
    got1, got2 = one["cpu_seconds"] / one["wall_seconds"], two["cpu_seconds"] / two["wall_seconds"]
    m = res["machine"]
    ratio = res["ratios"]["two_vs_one"]
    beyond = (" More than 2x cannot come from a second worker: the load moved between the runs, and this figure "
              "is mostly that." if ratio > 2 else "")
    shared = got1 < 0.9 or got2 < 1.6          # a pinned worker did not have its core: other work had it
    if shared:
        where = (f"the box's 2 cores were shared with other sessions (load average {m['loadavg_before']} when the run "
                 f"started, {m['loadavg_after']} at its end), so a pinned worker had a fraction of its core and the "
                 "ratio says what the machine had to spare, not how chunk jobs scale; on idle cores or separate "
                 "machines the 1.8x target is bounded by the longest chunk and the audio job, not by coordination, "
                 "and it was not demonstrated here.")
    else:
        where = (f"each pinned worker had its core (load average {m['loadavg_before']} when the run started, "
                 f"{m['loadavg_after']} at its end), so the ratio is how chunk jobs scale on idle cores: short of 2x "
                 "by the last job's tail (the jobs do not divide evenly between two workers) and each chunk's start.")
    return (f"Two pinned workers finished the chunk jobs {ratio:.2f}x faster than one.{beyond} The "
            f"runs got {got1:.2f} (one worker) and {got2:.2f} (two workers) cores' worth of CPU on average: {where} "
            "The jobs share nothing but Kafka and S3 (the pipeline's chunk workers need only the bootstrap servers "
            "and the S3 endpoint). Chunking's own CPU cost is each chunk's "
            "encoder start and the decode from the keyframe before its start, plus the audio job's own decode; the "
            "single pass encodes the audio once per rung (each muxed rendition carries it), the chunked ladder once, "
            "which is why its CPU can come out lower.")


def markdown(res: dict) -> str:
    s, one, two = res["single"], res["one_worker"], res["two_workers"]
    r = res["ratios"]
    lines = [
        "# Chunked transcoding: one worker vs two, against the single pass",
        "",
        f"Clip: testsrc2 + sine, {res['clip']['width']}x{res['clip']['height']} @ {res['clip']['fps']} fps, "
        f"{res['clip']['duration']:g} s, {res['chunks']} chunks of {res['chunk_seconds']} s (+ the audio job). "
        f"Ladder: {', '.join(res['ladder'])}; x264 preset `{res['preset']}`. Machine: {res['machine']['cpus']} CPUs, "
        f"load average {res['machine']['loadavg_before']} before the run (shared with other work), "
        f"{res['machine']['platform']}; ffmpeg {res['machine']['ffmpeg']}. Run at {res['timestamp']} "
        f"(`python bench/bench_chunked.py {res['argv']}`).",
        "",
        "| run | wall (s) | CPU (s) | cores it got (CPU / wall) | first playable (s) |",
        "|---|---:|---:|---:|---:|",
        f"| single pass (one ffmpeg, all rungs + audio) | {s['wall_seconds']:.1f} | {s['cpu_seconds']:.1f} | "
        f"{s['cpu_seconds'] / s['wall_seconds']:.2f} | {s['first_playable_seconds']:.1f} (at the end) |",
        f"| chunked, 1 worker pinned to CPU 0 | {one['wall_seconds']:.1f} | {one['cpu_seconds']:.1f} | "
        f"{one['cpu_seconds'] / one['wall_seconds']:.2f} | {one['first_playable_seconds']:.1f} |",
        f"| chunked, 2 workers pinned to CPU 0 and 1 | {two['wall_seconds']:.1f} | {two['cpu_seconds']:.1f} | "
        f"{two['cpu_seconds'] / two['wall_seconds']:.2f} | {two['first_playable_seconds']:.1f} |",
        "",
        f"* 2 workers vs 1 (wall): **{r['two_vs_one']:.2f}x** (issue target >= 1.8x)",
        f"* chunked CPU over the single pass (2 workers): **{r['cpu_overhead_pct']:+.1f} %** (target <= 10 %)",
        f"* first playable (2 workers): **{r['first_playable_vs_duration']:.2f}x** the clip's duration "
        f"(target <= 0.25x); single pass: {s['first_playable_seconds'] / res['clip']['duration']:.2f}x",
        "",
        "| rung | frames (chunked) | SSIM chunked vs single | PSNR (dB) | size chunked / single |",
        "|---|---:|---:|---:|---:|",
    ]
    for q in res["quality"]:
        lines.append(f"| {q['rung']} ({q['resolution']}) | {q['frames']} | {q['ssim_vs_single']:.4f} | "
                     f"{q['psnr_vs_single']:.2f} | {q['size_ratio']:.3f} |")
    lines += ["", "Sizes: chunked = video segments + the separate audio rendition; single = muxed segments.",
              "", "## Reading", "", reading(res)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--chunk-seconds", type=int, default=20)
    ap.add_argument("--preset", default=fc.DEFAULT_PRESET)
    ap.add_argument("--out", default=str(HERE / "results" / "chunked"), help="path prefix for .json and .md")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--render", metavar="JSON", help="only rewrite the .md of an earlier run's .json")
    args = ap.parse_args(argv)
    if args.render:
        res = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(res))
        print(markdown(res))
        return 0

    cfg = load_config()
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="framelog-bench-chunked-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = make_clip(work / "clip.mp4", args.duration, args.width, args.height, args.fps)
        info = probe(src)
        rungs = plan_ladder(info, cfg.hls.quality_levels)
        fps = hls.output_fps(info)
        plan = plan_chunks(info.duration, args.chunk_seconds, cfg.hls.segment_duration)
        ab = cfg.upload_limits.audio_bitrate
        print(f"ladder {[r.name for r in rungs]}, {plan.count} chunks", file=sys.stderr)
        single = run_single(src, work / "single", rungs, fps, args.preset, ab)
        print(f"single: {single}", file=sys.stderr)
        one = run_chunked(src, work / "one", 1, plan, rungs, fps, args.preset, ab, info.duration)
        print(f"1 worker: {one['wall_seconds']} s", file=sys.stderr)
        two = run_chunked(src, work / "two", 2, plan, rungs, fps, args.preset, ab, info.duration)
        print(f"2 workers: {two['wall_seconds']} s", file=sys.stderr)
        stitch_local(work / "two", plan, rungs)
        quality = compare(work / "single", work / "two", rungs, fps, info.duration)
    ffv = subprocess.run([fc.FFMPEG, "-version"], capture_output=True, text=True).stdout.split()[2]
    ratios = {"two_vs_one": round(one["wall_seconds"] / two["wall_seconds"], 3),
              "cpu_overhead_pct": round((two["cpu_seconds"] / single["cpu_seconds"] - 1) * 100, 1),
              "first_playable_vs_duration": round(two["first_playable_seconds"] / args.duration, 3)}
    res = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": " ".join(argv or sys.argv[1:]),
           "clip": {"duration": args.duration, "width": args.width, "height": args.height, "fps": args.fps},
           "chunk_seconds": args.chunk_seconds, "chunks": plan.count, "preset": args.preset,
           "ladder": [f"{r.name} {r.resolution} {r.video_bitrate // 1000}k" for r in rungs],
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "ffmpeg": ffv,
                       "loadavg_before": load_before, "loadavg_after": round(os.getloadavg()[0], 2)},
           "single": single, "one_worker": one, "two_workers": two, "quality": quality, "ratios": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
