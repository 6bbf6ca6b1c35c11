"""Benchmark: validation of a 2-hour upload, through the real handler, must stay well under its 30 s timeout.

A 2-hour 256x144 H.264/AAC clip is made in seconds (a 60 s clip stream-copied
120 times), uploaded to the stack's object storage, and validated by the
validation stage's own handler (pipeline.jobs.handlers.ValidationJob: head,
presigned URL, ffprobe and the sampled decode through range requests). The
same clip is also validated from a local file, and a 10-minute clip for
comparison (the time must not grow with the length). ``--rounds`` repeats each
(the machine may be shared: the load average is recorded, the median judged).

Writes bench/results/validation.json and bench/results/validation.md; exits 1 if
the 2-hour median is not under the stage timeout.

    FRAMELOG_CONFIG_OVERLAY=... python bench/bench_validation.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from framelog.core.config import load_config
from framelog.pipeline.jobs.base import JobContext, JobSettings
from framelog.pipeline.jobs.handlers import ValidationJob
from framelog.processors.media.validation import validate
from framelog.sinks.object_store import ObjectStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.media.support import clips  # noqa: E402  (the generators the media tests use)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args()
    cfg = load_config()
    store = ObjectStore(cfg.object_storage, cfg.stack.state_dir)
    timeout = cfg.pipeline.stage("validation").timeout
    out: dict = {"host": platform.node(), "cpus": os.cpu_count(), "stage_timeout_s": timeout,
                 "samples": cfg.media.validation.samples, "sample_duration_s": cfg.media.validation.sample_duration,
                 "clips": {}}
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        for label, hours in (("2h", args.hours), ("10m", 10 / 60)):
            path = Path(tmp) / f"{label}.mp4"
            t0 = time.monotonic()
            clips.long_clip(path, hours=hours)
            made = time.monotonic() - t0
            key = f"uploads/bench-validation-{label}.mp4"
            store.upload_file(path, key, "video/mp4")
            job = ValidationJob(JobSettings(cfg.pipeline, cfg.upload_limits, cfg.media, cfg.hls, cfg.cdn,
                                            cfg.caching), store)
            s3_times, local_times, loads = [], [], []
            for i in range(args.rounds):
                loads.append(os.getloadavg()[0])
                ctx = JobContext(f"bench-validation-{label}", f"job-{i}", "validation", 1, {"object_key": key},
                                 Path(tmp) / f"work-{label}-{i}")
                t = time.monotonic()
                outputs = job.run(ctx)
                s3_times.append(time.monotonic() - t)
                t = time.monotonic()
                validate(path, cfg.upload_limits, sampling=cfg.media.validation,
                         segment_seconds=cfg.hls.segment_duration)
                local_times.append(time.monotonic() - t)
            store.delete_prefix(key)
            store.delete_prefix(f"work/bench-validation-{label}/")
            out["clips"][label] = {"duration_s": float(outputs["duration"]), "bytes": path.stat().st_size,
                                   "generated_in_s": round(made, 1),
                                   "handler_s3_s": [round(x, 2) for x in s3_times],
                                   "local_file_s": [round(x, 2) for x in local_times],
                                   "handler_s3_median_s": round(statistics.median(s3_times), 2),
                                   "local_median_s": round(statistics.median(local_times), 2),
                                   "load_avg_1m": [round(x, 2) for x in loads]}
    two = out["clips"]["2h"]["handler_s3_median_s"]
    out["target_met"] = two < timeout
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "validation.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Validation of a long upload (issue 13 point 1)", "",
             f"Host {out['host']}, {out['cpus']} CPUs; stage timeout {timeout:g} s; "
             f"{out['samples']} sampled windows of {out['sample_duration_s']:g} s plus the start and the end.", "",
             "| clip | duration | size | handler via S3 (median) | local file (median) | rounds (S3) | load 1m |",
             "|---|---|---|---|---|---|---|"]
    for label, c in out["clips"].items():
        lines.append(f"| {label} | {c['duration_s']:.0f} s | {c['bytes'] / 1e6:.0f} MB | {c['handler_s3_median_s']} s | "
                     f"{c['local_median_s']} s | {c['handler_s3_s']} | {c['load_avg_1m']} |")
    lines += ["", f"Target (2-hour clip validated under the {timeout:g} s stage timeout): "
              f"{'met' if out['target_met'] else 'NOT met'}.", "",
              "`FRAMELOG_CONFIG_OVERLAY=... python bench/bench_validation.py --rounds 3`", ""]
    (RESULTS / "validation.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if out["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
