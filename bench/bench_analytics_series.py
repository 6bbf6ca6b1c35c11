"""Benchmark: the analytics series and retention reads (issue 15 pt 4) over a large table.

``--rows`` synthetic playback events (default 2,000,000) are generated inside a fresh
embedded engine (sinks/clickhouse/synthetic.py: events over 30 days, ``--videos`` videos,
so ~rows/videos events per video), rollups OPTIMIZEd FINAL; then, for random videos over
the 30 days, ``--rounds`` times each: get_video_series hourly (720 buckets), daily (30)
and get_video_retention (20 steps, from the raw events). p50/p95 per read, with the load
average (the machine may be shared). Writes bench/results/analytics_series.md.

    python bench/bench_analytics_series.py --rows 2000000 --videos 100 --rounds 30
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from framelog.core.config import get_config
from framelog.sinks.clickhouse.client import connect
from framelog.sinks.clickhouse.migrations import apply_migrations
from framelog.sinks.clickhouse.queries import get_video_retention, get_video_series
from framelog.sinks.clickhouse.synthetic import generate_playback_events

RESULTS = Path(__file__).resolve().parent / "results" / "analytics_series.md"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    cfg = get_config()
    with tempfile.TemporaryDirectory(prefix="bench-series-") as tmp:
        cfg = dataclasses.replace(cfg, clickhouse=dataclasses.replace(cfg.clickhouse, dsn=f"chdb://{tmp}",
                                                                        database="bench_series"))
        client = connect(cfg.clickhouse_dsn, cfg.clickhouse.database)
        apply_migrations(client, cfg.analytics)
        load = generate_playback_events(client, args.rows, videos=args.videos, days=30)
        for table in ("video_stats_hourly", "quality_switch_hourly", "playback_events"):
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        end = datetime.now(UTC)
        start = end - timedelta(days=30)
        rng = random.Random(7)
        timings: dict[str, list[float]] = {"series 1h (720 buckets)": [], "series 1d (30 buckets)": [],
                                           "retention (20 steps)": []}
        loads = []
        for _ in range(args.rounds):
            video = f"video-{rng.randrange(args.videos)}"
            reads = {
                "series 1h (720 buckets)": lambda v: get_video_series(client, v, start, end, "1h", config=cfg),
                "series 1d (30 buckets)": lambda v: get_video_series(client, v, start, end, "1d", config=cfg),
                "retention (20 steps)": lambda v: get_video_retention(client, v, start, end, config=cfg),
            }
            for name, read in reads.items():
                t0 = time.perf_counter()
                answer = read(video)
                timings[name].append((time.perf_counter() - t0) * 1000)
                assert answer["video_id"] == video
            loads.append(os.getloadavg()[0])
        client.close()
    lines = [
        "# Analytics series and retention reads",
        "",
        f"`python bench/bench_analytics_series.py --rows {args.rows} --videos {args.videos} --rounds {args.rounds}`"
        f" on {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; embedded engine (chdb), "
        f"{args.rows:,} synthetic events over 30 days ({args.rows // args.videos:,} per video on average, "
        f"generated in {load:.1f} s), rollups merged; one random video per round, range 30 days. "
        f"Load average during the reads: median {statistics.median(loads):.1f} (the machine is shared).",
        "",
        "| read | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in timings.items():
        lines.append(f"| {name} | {pct(values, 0.5):.1f} | {pct(values, 0.95):.1f} | {max(values):.1f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
