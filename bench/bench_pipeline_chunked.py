"""Chunked transcoding through the real pipeline: single pass vs one pinned chunk worker vs two (issue 13 pt 7).

The same clip is uploaded three times to the running local stack (``framelog stack up``; the API and every
worker group are started here), once per mode:

* ``single``: ``media.transcoding.chunked`` false: the transcoding stage's worker runs one ffmpeg for the whole
  ladder (unpinned: it may use both cores);
* ``chunked-1``: chunk jobs on ``pipeline.transcoding.chunks``, one ``framelog worker --stage chunks`` pinned to
  CPU 0 (``taskset -c 0``; its ffmpeg inherits the pinning);
* ``chunked-2``: two chunk workers, pinned to CPU 0 and CPU 1.

Every other group (intake, the stages, stitch, cdn, ...) runs unpinned in one ``framelog worker``. Measured per
mode, from the end of the upload: first playable (``GET /v1/stream`` answers 200 as the owner), the transcoding
stage's own duration (its ``succeeded`` transition), published (status ``ready``), the CPU time of every worker
process and its children until transcoding succeeded, chunk jobs, encodes and retries (``video.chunk-transitions``).
The machine is shared: ratios between modes of one run are what counts; the load average is recorded.

    FRAMELOG_CONFIG_OVERLAY=... python bench/bench_pipeline_chunked.py --duration 600 --width 1920 --height 1080
    python bench/bench_pipeline_chunked.py --modes chunked-2 --duration 7200 --width 256 --height 144   # 2 hours
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from framelog.core import object_keys as ok
from framelog.core.config import load_config
from framelog.pipeline.worker import CHUNKS, groups
from framelog.processors.media import ffmpeg_commands as fc
from framelog.processors.media import hls
from framelog.processors.media.chunked import AUDIO_NAME
from framelog.processors.media.hls import write_local_playlist
from framelog.processors.media.ladder import plan_ladder
from framelog.processors.media.optimization import measure_quality
from framelog.processors.media.probe import probe
from framelog.sinks.object_store import ObjectStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chunked import make_clip  # noqa: E402  (the same generated clip)

HERE = Path(__file__).resolve().parent
MODES = ("single", "chunked-1", "chunked-2")
OWNER = "bench-owner"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 1.0      # the bench's own requests to the API, which shares the two cores with the workers


def framelog(*args: str, env: dict[str, str] | None = None) -> str:
    """Run one ``framelog`` command to completion; its stdout."""
    return subprocess.run([sys.executable, "-m", "framelog.cli.main", *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def spawn(args: list[str], env: dict[str, str], log: Path, cpu: int | None = None) -> subprocess.Popen[bytes]:
    """Start a ``framelog`` process (pinned to ``cpu`` if given) in its own process group."""
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, sys.executable, "-m", "framelog.cli.main", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user+sys, with reaped children) of the processes under ``roots``, themselves included."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / CLK_TCK   # utime stime cutime cstime
    wanted = set(roots)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in wanted and pid not in wanted}
        wanted |= more
        grew = bool(more)
    return sum(times.get(pid, 0.0) for pid in wanted)


def wait_for(condition, timeout: float, every: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not met within {timeout:.0f}s")


def reference_encode(clip: Path, cpu: int, work: Path, config) -> float:
    """Wall seconds of one chunk worker's own work on 10 s of ``clip`` (the whole ladder, one decode), pinned to
    ``cpu`` with nothing else of the bench running: the machine's speed at that moment. A shared host drifts by
    10 % and more between modes run minutes apart; this is what tells a drift from a difference between modes."""
    info = probe(clip)
    rungs = [r.spec() for r in plan_ladder(info, config.hls.quality_levels)]
    out = work / f"reference-{cpu}"
    args = fc.hls_chunk_args(clip, out, rungs, fps=hls.output_fps(info), start=30.0, end=40.0, first_segment=3,
                             preset=config.media.x264_preset, conditioning=info.conditioning())
    for r in rungs:
        (out / r.name).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run(["taskset", "-c", str(cpu), *args], check=True, capture_output=True)
    return round(time.monotonic() - started, 2)


def group_members(env: dict[str, str], group: str) -> int:
    """Members of consumer group ``framelog-<group>`` (0 while the broker does not know it yet)."""
    try:
        data = json.loads(framelog("groups", "--json", env=env))
    except (subprocess.CalledProcessError, ValueError):
        return 0
    return sum(len(g.get("members", [])) for g in data if g.get("group", g.get("group_id")) == f"framelog-{group}")


def run_mode(mode: str, clip: Path, api: str, token: str, env: dict[str, str], logs: Path, config,
             cpus: list[int]) -> dict:
    chunked = mode != "single"
    chunk_workers = int(mode.split("-")[1]) if chunked else 0
    wenv = {**env, "FRAMELOG__MEDIA__TRANSCODING__CHUNKED": "true" if chunked else "false"}
    others = [g for g in groups(config.pipeline) if g != CHUNKS]
    procs = [spawn(["worker", *[a for g in others for a in ("--stage", g)]], wenv, logs / f"{mode}-worker.log")]
    procs += [spawn(["worker", "--stage", CHUNKS], wenv, logs / f"{mode}-chunks-{i}.log", cpu=cpus[i])
              for i in range(chunk_workers)]
    auth = {"Authorization": f"Bearer {token}"}
    try:
        wait_for(lambda: all(p.poll() is None for p in procs) and
                 (not chunked or group_members(env, CHUNKS) >= chunk_workers), 180, 2, "chunk workers joined")
        load = os.getloadavg()[0]
        cpu0 = tree_cpu([p.pid for p in procs])
        upload = subprocess.run([sys.executable, "-m", "framelog.cli.main", "upload", "--quiet", "--owner", OWNER,
                                 "--api", api, "--visibility", "private", str(clip)], env=env, check=True,
                                capture_output=True, text=True)
        uploaded = time.monotonic()
        video_id = upload.stdout.split()[-1]
        first_playable = transcoding_started = transcoded = published = None
        cpu_started = cpu_transcoding = None
        view: dict = {}
        with httpx.Client(base_url=api, headers=auth, timeout=30) as http:
            while published is None:
                if time.monotonic() - uploaded > 4 * 3600:
                    raise TimeoutError(f"{mode}: {video_id} not done in 4 h")
                now = time.monotonic() - uploaded
                if first_playable is None and http.get("/v1/stream", params={"video_id": video_id}).status_code == 200:
                    first_playable = now
                view = http.get(f"/videos/{video_id}").json()
                stage = view.get("stages", {}).get("transcoding", {})
                if transcoding_started is None and stage:
                    transcoding_started, cpu_started = now, tree_cpu([p.pid for p in procs])
                if transcoded is None and stage.get("state") == "succeeded":
                    transcoded, cpu_transcoding = now, tree_cpu([p.pid for p in procs]) - cpu_started
                if view.get("state") in ("ready", "failed"):
                    published = now
                time.sleep(POLL_SECONDS)
        chunk_states, per_worker = Counter(), Counter()
        if chunked:
            lines = framelog("events", "tail", "video.chunk-transitions", "--from-beginning", "--video", video_id,
                             "--timeout", "5", env=env).splitlines()
            for line in lines:
                if line.startswith("{"):
                    value = json.loads(line)["value"]
                    chunk_states[value.get("state", "?")] += 1
                    if value.get("state") == "started":
                        per_worker[value.get("worker") or "?"] += 1
        stages = view.get("stages", {})
        return {
            "mode": mode, "video_id": video_id, "state": view.get("state"), "error": view.get("error"),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "first_playable_seconds": round(first_playable, 1) if first_playable is not None else None,
            "transcoding_started_seconds": round(transcoding_started, 1) if transcoding_started is not None else None,
            "transcoded_seconds": round(transcoded, 1) if transcoded is not None else None,
            "transcoding_wall_seconds": round(transcoded - transcoding_started, 1) if transcoded is not None else None,
            "published_seconds": round(published, 1),
            "cpu_transcoding_seconds": round(cpu_transcoding, 1) if cpu_transcoding is not None else None,
            "cpu_before_transcoding_seconds": round(cpu_started - cpu0, 1) if cpu_started is not None else None,
            "stage_seconds": {name: round((s.get("duration_ms") or 0) / 1000, 1) for name, s in stages.items()},
            "stage_attempts": {name: s.get("attempt") for name, s in stages.items()},
            "transcoding_outputs": {k: v for k, v in stages.get("transcoding", {}).get("outputs", {}).items()
                                    if k in ("chunk_count", "chunk_encodes", "renditions")},
            "chunk_transitions": dict(chunk_states),
            "jobs_per_worker": sorted(per_worker.values(), reverse=True),
        }
    finally:
        stop(procs)


def _published(store: ObjectStore, video_id: str, into: Path) -> Path:
    """The video's published HLS and its key, downloaded to ``into`` (read offline with write_local_playlist)."""
    store.download_prefix(ok.hls_root(video_id), into)
    (into / "aes128.key").write_bytes(store.get_bytes(ok.hls_key(video_id)))
    return into


def compare_published(config, single_id: str, chunked_id: str, work: Path, rungs: list[str], fps: float,
                      duration: float) -> list[dict]:
    """Each rung of the chunked video against the single pass's: bytes (the chunked rung with its separate audio,
    the single pass muxes audio into every rung), and SSIM/PSNR for ``rungs`` (the whole clip decoded)."""
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    single = _published(store, single_id, work / "published" / "single")
    chunked = _published(store, chunked_id, work / "published" / "chunked")
    audio = sum(p.stat().st_size for p in (chunked / AUDIO_NAME).glob("*.ts"))
    rows = []
    for rung in sorted(p.parent.name for p in single.glob("*/playlist.m3u8")):
        if not (chunked / rung / "playlist.m3u8").exists():
            continue
        single_bytes = sum(p.stat().st_size for p in (single / rung).glob("*.ts"))
        chunked_bytes = sum(p.stat().st_size for p in (chunked / rung).glob("*.ts")) + audio
        row = {"rung": rung, "single_bytes": single_bytes, "chunked_bytes": chunked_bytes,
               "size_ratio": round(chunked_bytes / single_bytes, 4)}
        if rung in rungs:
            ref_pl = write_local_playlist(single / rung / "playlist.m3u8", single / "aes128.key",
                                          work / "published" / f"single-{rung}.m3u8")
            ref = work / "published" / f"single-{rung}.ts"      # decrypted copy: the reference input takes no options
            fc.run_ffmpeg([fc.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", *fc.hls_input_options(),
                           "-i", str(ref_pl), "-map", "0:v:0", "-c", "copy", "-y", str(ref)])
            dist = write_local_playlist(chunked / rung / "playlist.m3u8", chunked / "aes128.key",
                                        work / "published" / f"chunked-{rung}.m3u8")
            info = probe(ref)
            score = measure_quality(ref, dist, ref_width=info.width, ref_height=info.height, fps=fps,
                                    sample_seconds=duration, distorted_is_hls=True)
            row.update(ssim=round(score.ssim, 5), psnr=round(score.psnr, 2))
        rows.append(row)
    return rows


def render(result: dict) -> str:
    runs = {r["mode"]: r for r in result["runs"]}
    dur = result["clip"]["duration"]
    lines = [
        "# Chunked transcoding through the real pipeline",
        "",
        f"Clip: testsrc2 + sine, {result['clip']['width']}x{result['clip']['height']} @ {result['clip']['fps']} fps, "
        f"{dur:.0f} s, {result['clip']['bytes'] / 1e6:.0f} MB, uploaded through the API (tus) to the local stack. "
        f"Chunk length {result['chunk_seconds']:.0f} s (framelog.yaml). Machine: {result['machine']}. "
        f"Run at {result['started']} (`{result['command']}`).",
        "",
        "| mode | first playable (s) | x clip | transcoding stage (s) | its CPU (s) | published (s) | "
        "chunk jobs: succeeded / retried | load before / after |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["runs"]:
        fp = r["first_playable_seconds"]
        ct = r["chunk_transitions"]
        chunks = f"{ct.get('succeeded', 0)} / {ct.get('retrying', 0)}" if r["mode"] != "single" else "-"
        if r.get("jobs_per_worker") and len(r["jobs_per_worker"]) > 1:
            chunks += f" (per worker: {' + '.join(map(str, r['jobs_per_worker']))})"
        lines.append(f"| {r['mode']} ({r['state']}) | {fp} | {fp / dur:.2f} | {r['transcoding_wall_seconds']} | "
                     f"{r['cpu_transcoding_seconds']} | {r['published_seconds']} | {chunks} | "
                     f"{r['load_before']} / {r['load_after']} |")
    lines.append("")
    one, two, single = runs.get("chunked-1"), runs.get("chunked-2"), runs.get("single")
    if one and two:
        speedup = one["transcoding_wall_seconds"] / two["transcoding_wall_seconds"]
        lines.append(f"* 2 pinned chunk workers vs 1 (the transcoding stage's wall time): **{speedup:.2f}x** "
                     "(target >= 1.8x)")
        ref_one, ref_two = _reference(one), _reference(two)
        if ref_one and ref_two:
            lines.append(f"* the machine's speed before each (the reference encode, below): {ref_one:.2f} s before "
                         f"chunked-1, {ref_two:.2f} s before chunked-2; the ratio with that drift taken out: "
                         f"{speedup * ref_two / ref_one:.2f}x")
    if single and two and single["cpu_transcoding_seconds"]:
        over = two["cpu_transcoding_seconds"] / single["cpu_transcoding_seconds"] - 1
        lines.append(f"* chunked CPU over the single pass, transcoding stage, every worker process and its ffmpeg "
                     f"(2 workers): **{over * 100:+.1f} %** (target <= 10 %)")
    if two:
        lines.append(f"* first playable (2 workers): **{two['first_playable_seconds'] / dur:.2f}x** the clip's duration "
                     "(target <= 0.25x)")
    if result.get("quality"):
        lines += ["", "The published chunked ladder (2 workers) against the single pass's, rung by rung (bytes: the "
                  "chunked rung with its separate audio rendition; SSIM/PSNR over the whole clip where measured):", "",
                  "| rung | single (bytes) | chunked (bytes) | ratio | SSIM | PSNR (dB) |", "|---|---:|---:|---:|---:|---:|"]
        for q in result["quality"]:
            lines.append(f"| {q['rung']} | {q['single_bytes']} | {q['chunked_bytes']} | {q['size_ratio']:.4f} | "
                         f"{q.get('ssim', '-')} | {q.get('psnr', '-')} |")
    if any(r.get("reference_seconds") for r in result["runs"]):
        lines += ["", "The reference encode before each mode (10 s of the clip through one chunk worker's ffmpeg, "
                  "the whole ladder, pinned to each CPU in turn, nothing else of the bench running; wall s):", ""]
        for r in result["runs"]:
            ref = r.get("reference_seconds") or {}
            lines.append(f"* before {r['mode']}: " + ", ".join(f"CPU {c} {v}" for c, v in ref.items()))
    lines += ["", "Per mode: the other stages' durations (s), and the transcoding stage's outputs:", ""]
    for r in result["runs"]:
        lines.append(f"* {r['mode']}: " + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()
                                                   if k != "transcoding")
                     + f"; transcoding started {r['transcoding_started_seconds']} s after the upload; "
                     + ", ".join(f"{k} {v}" for k, v in r["transcoding_outputs"].items()))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    ap.add_argument("--clip", help="an existing clip instead of generating one")
    ap.add_argument("--cpus", default="0,1", help="the CPUs the chunk workers are pinned to, in order")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--ssim-rungs", default="360p,1080p",
                    help="rungs whose SSIM against the single pass is measured (comma-separated, or none)")
    ap.add_argument("--out", default=str(HERE / "results" / "pipeline_chunked"), help="path prefix for .json/.md")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the .md of an earlier run's .json")
    args = ap.parse_args()
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.out + ".md").write_text(render(result))
        return 0
    config = load_config()
    env = os.environ.copy()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = Path(args.clip) if args.clip else work / f"clip-{args.width}x{args.height}-{args.duration:.0f}s.mp4"
    if not clip.exists():
        make_clip(clip, args.duration, args.width, args.height, args.fps)
    framelog("services", "stop", env=env)
    api_url = f"http://{config.stack.host}:{config.stack.api_port}"
    api = spawn(["api"], env, work / "api.log")
    try:
        wait_for(lambda: httpx.get(f"{api_url}/healthz", timeout=2).status_code == 200
                 if _answers(api_url) else False, 120, 1, "API healthy")
        token = framelog("token", "mint", "--sub", OWNER, env=env).split()[-1]
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        runs = []
        for mode in args.modes.split(","):
            print(f"bench: {mode} ...", flush=True)
            cpus = [int(c) for c in args.cpus.split(",")]
            reference = {str(c): reference_encode(clip, c, work, config) for c in cpus}
            runs.append({**run_mode(mode, clip, api_url, token, env, work, config, cpus),
                         "reference_seconds": reference})
            print(json.dumps(runs[-1]), flush=True)
    finally:
        stop([api])
    quality = []
    done = {r["mode"]: r for r in runs if r["state"] == "ready"}
    if "single" in done and "chunked-2" in done and args.ssim_rungs != "none":
        print("bench: comparing the published ladders ...", flush=True)
        quality = compare_published(config, done["single"]["video_id"], done["chunked-2"]["video_id"], work,
                                    args.ssim_rungs.split(","), args.fps, args.duration)
    result = {
        "clip": {"duration": args.duration, "width": args.width, "height": args.height, "fps": args.fps,
                 "bytes": clip.stat().st_size},
        "chunk_seconds": config.media.transcoding.chunk_seconds, "runs": runs, "quality": quality,
        "started": started,
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "command": "python bench/bench_pipeline_chunked.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(render(result))
    print(render(result))
    return 0


def _reference(run: dict) -> float | None:
    """A mode's reference encode, averaged over the CPUs (None for a run recorded before it existed)."""
    ref = run.get("reference_seconds") or {}
    return sum(ref.values()) / len(ref) if ref else None


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
        return True
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
