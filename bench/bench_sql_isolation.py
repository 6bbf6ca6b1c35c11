"""Analysts' SQL cannot starve the API: /healthz, the sink's freshness and GET analytics under 50 hostile queries.

Against the running stack's API (started here if it is not running): first an idle
phase, then ``--clients`` analyst clients at once, each sending in a loop one of the
issue's hostile queries (long CPU-bound cross joins, memory bombs written with allowed
functions, the issue's system.numbers bomb and ``sleep(1)``, both refused by the guard).
Meanwhile it measures:

* ``/healthz`` latency (every 100 ms);
* the sink's freshness: a ``view_start`` of one video every 250 ms through ``POST /v1/events``,
  one poller of ``GET /v1/videos/{id}/analytics``; view k's freshness is its event time until
  the count reaches k (so it includes the analytics endpoint's own latency);
* the answers analysts get (200 / 400 / 429) and the API's resident memory.

Targets (issue 11): /healthz under 200 ms and freshness p99 under 5 s while the analyst
queries run. Writes a markdown table to ``--out``.

    python bench/bench_sql_isolation.py --clients 50 --seconds 45 --out bench/results/sql_isolation.md
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import multiprocessing as mp
import os
import threading
import time
import uuid
from pathlib import Path

import httpx

from framelog.core.config import get_config
from framelog.stack.services import ApiService

LONG = ("SELECT count() FROM (SELECT arrayJoin(range(100000)) AS a) AS l "
        "CROSS JOIN (SELECT arrayJoin(range(100000)) AS b) AS r WHERE cityHash64(a, b) % 1000003 = 0")
MEMORY_BOMB = "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(200000000)) AS x)"
ISSUE_BOMB = "SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 250000000)"
SLEEP = "SELECT sleep(1)"
# 50 clients: 20 long, 20 memory bombs, 5 of each refused-by-the-guard case
MIX = [LONG] * 20 + [MEMORY_BOMB] * 20 + [ISSUE_BOMB] * 5 + [SLEEP] * 5
KIND = {LONG: "long cross join", MEMORY_BOMB: "memory bomb (allowed functions)",
        ISSUE_BOMB: "issue's system.numbers bomb", SLEEP: "sleep(1)"}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Probe:
    """Samples /healthz, freshness and RSS until stopped; results per phase."""

    def __init__(self, api: str, pid: int | None):
        self.api, self.pid = api, pid
        self.phase = "idle"
        self.health: dict[str, list[float]] = collections.defaultdict(list)
        self.fresh: dict[str, list[float]] = collections.defaultdict(list)
        self.analytics: dict[str, list[float]] = collections.defaultdict(list)
        self.rss: dict[str, list[float]] = collections.defaultdict(list)
        self.stop = threading.Event()
        self.errors: list[str] = []

    def health_loop(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                r = c.get(f"{self.api}/healthz")
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    self.errors.append(f"healthz {r.status_code}")
                self.health[self.phase].append(ms)
                m = rss_mb(self.pid)
                if m is not None:
                    self.rss[self.phase].append(m)
                self.stop.wait(0.1)

    def freshness_loop(self) -> None:
        """One video: a view every 250 ms, one poller of GET analytics; view k is fresh when the count reaches k."""
        vid = f"vbench_{uuid.uuid4().hex[:12]}"
        sent: list[tuple[float, str]] = []          # (event time, phase) of view k+1
        lock = threading.Lock()

        def send() -> None:
            with httpx.Client(timeout=30, headers=producer_headers()) as c:     # a trusted server-side producer
                while not self.stop.is_set():
                    now = time.time()
                    event = {"type": "view_start", "event_id": str(uuid.uuid4()), "session_id": f"s-{uuid.uuid4().hex}",
                             "viewer_id": "bench", "video_id": vid, "client_time": int(now * 1000),
                             "position_seconds": 0.0, "watch_time_delta_seconds": 0.0}
                    r = c.post(f"{self.api}/v1/events", json=[event])
                    if r.status_code == 202:
                        with lock:
                            sent.append((int(now * 1000) / 1000, self.phase))
                    else:
                        self.errors.append(f"events {r.status_code} {r.text[:100]}")
                    self.stop.wait(0.25)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        seen = 0
        with httpx.Client(timeout=60, headers=analyst_headers()) as c:
            deadline = None
            while True:
                with lock:
                    total = len(sent)
                if self.stop.is_set():
                    deadline = deadline or time.time() + 30
                    if seen >= total or time.time() > deadline:
                        break
                t0 = time.perf_counter()
                r = c.get(f"{self.api}/v1/videos/{vid}/analytics")
                self.analytics[self.phase].append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    self.errors.append(f"analytics {r.status_code}")
                    continue
                views = min(int(r.json().get("total_views", 0)), total)
                now = time.time()
                with lock:
                    for at, phase in sent[seen:views]:
                        self.fresh[phase].append(now - at)
                seen = max(seen, views)
                time.sleep(0.05)
        sender.join(timeout=30)
        if seen < len(sent):
            self.errors.append(f"{len(sent) - seen} views not visible 30 s after the end")


def producer_headers() -> dict[str, str]:
    """A server-side event producer's token (events:write): it posts without a playback session."""
    from framelog.clients.credentials import bearer, local_token
    from framelog.processors.identity import EVENTS_WRITE

    return bearer(local_token(get_config().auth, get_config().stack.state_dir, "bench-producer", [EVENTS_WRITE]))


def analyst_headers() -> dict[str, str]:
    """An analyst's token (analytics:read): FRAMELOG_TOKEN, else minted from the local keyring."""
    from framelog.clients.credentials import bearer, local_token
    from framelog.processors.identity import ANALYTICS_READ

    return bearer(local_token(get_config().auth, get_config().stack.state_dir, "bench-analyst", [ANALYTICS_READ]))


def analyst(api: str, sql: str, until: float, answers: collections.Counter, latencies: dict) -> None:
    with httpx.Client(timeout=120, headers=analyst_headers()) as c:
        while time.time() < until:
            t0 = time.perf_counter()
            try:
                r = c.post(f"{api}/v1/sql", json={"sql": sql})
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            answers[(KIND[sql], status)] += 1
            latencies[(KIND[sql], status)].append(time.perf_counter() - t0)
            if status == 429:            # as a client should: wait Retry-After, then try again
                time.sleep(float(r.headers.get("retry-after", "1")))


def analysts(api: str, mix: list[str], until: float) -> tuple[collections.Counter, dict]:
    """Every analyst client on its own thread until ``until``; their answers and latencies."""
    answers: collections.Counter = collections.Counter()
    latencies: dict = collections.defaultdict(list)
    clients = [threading.Thread(target=analyst, args=(api, sql, until, answers, latencies), daemon=True)
               for sql in mix]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    return answers, dict(latencies)


def run(args: argparse.Namespace) -> str:
    config = get_config()
    service = ApiService(config)
    was_running = service.is_running()
    service.start(timeout=120)
    api = service.address
    load_before = os.getloadavg()[0]
    try:
        probe = Probe(api, service.pid())
        loops = [threading.Thread(target=probe.health_loop, daemon=True),
                 threading.Thread(target=probe.freshness_loop, daemon=True)]
        for t in loops:
            t.start()
        time.sleep(args.idle)
        probe.phase = "load"
        until = time.time() + args.seconds
        mix = (MIX * (args.clients // len(MIX) + 1))[: args.clients]
        started = time.time()
        # The analysts live in their own process: their threads must not slow this process's probes.
        with mp.get_context("spawn").Pool(1) as pool:
            answers, latencies = pool.apply(analysts, (api, mix, until))
        load_seconds = time.time() - started
        load_during = os.getloadavg()[0]
        probe.phase = "after"
        time.sleep(2)
        probe.stop.set()
        for t in loops:
            t.join(timeout=90)
    finally:
        if not was_running:
            service.stop()
    return report(args, config, probe, answers, latencies, load_seconds, (load_before, load_during))


def report(args, config, probe: Probe, answers, latencies, load_seconds: float, loadavg: tuple[float, float]) -> str:
    limits = config.analyst_sql
    lines = [
        "# Analysts' SQL isolation (issue 11)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on this {os.cpu_count()}-core machine, shared "
        f"with other sessions' stacks (1-min load average {loadavg[0]:.1f} before, {loadavg[1]:.1f} at the end of "
        "the load: the figures are noisy; the idle phase is the control). Command: "
        f"`python bench/bench_sql_isolation.py --clients {args.clients} --seconds {args.seconds:g}`.",
        "",
        f"{args.clients} analyst clients at once for {load_seconds:.0f} s, each looping on one hostile query; "
        f"analyst_sql: {limits.max_concurrent_queries} concurrent queries (then 429), "
        f"max_memory_usage {limits.max_memory_usage >> 20} MiB, max_execution_time {limits.max_execution_time:g} s, "
        f"max_threads {limits.max_threads}.",
        "",
        "| phase | /healthz p50 ms | p99 ms | max ms | samples | freshness p50 s | p99 s | max s | samples "
        "| GET analytics p50 ms | p99 ms | API RSS max MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("idle", "load", "after"):
        h, f, a, m = probe.health[phase], probe.fresh[phase], probe.analytics[phase], probe.rss[phase]
        lines.append(f"| {phase} | {pct(h, 50):.1f} | {pct(h, 99):.1f} | {max(h, default=float('nan')):.1f} | "
                     f"{len(h)} | {pct(f, 50):.2f} | {pct(f, 99):.2f} | {max(f, default=float('nan')):.2f} | {len(f)} | "
                     f"{pct(a, 50):.1f} | {pct(a, 99):.1f} | {max(m, default=float('nan')):.0f} |")
    load_h, load_f = probe.health["load"], probe.fresh["load"]
    ok_h = bool(load_h) and max(load_h) < 200
    ok_f = bool(load_f) and pct(load_f, 99) < 5
    lines += ["", f"Targets under load: /healthz max < 200 ms: **{'met' if ok_h else 'NOT met'}** "
              f"({max(load_h, default=float('nan')):.1f} ms); freshness p99 < 5 s: "
              f"**{'met' if ok_f else 'NOT met'}** ({pct(load_f, 99):.2f} s).", "",
              "| analyst query | answer | count | latency p50 s | max s |", "|---|---|---|---|---|"]
    for (kind, status), n in sorted(answers.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        lat = latencies[(kind, status)]
        lines.append(f"| {kind} | {status} | {n} | {pct(lat, 50):.2f} | {max(lat):.2f} |")
    if probe.errors:
        lines += ["", "Errors seen by the probes: " + "; ".join(sorted(set(probe.errors))[:10])]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=45.0)
    p.add_argument("--idle", type=float, default=8.0, help="idle phase before the load, seconds")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    text = run(args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
