"""Benchmark: a warm edge serves a cached segment at >= 0.8x the rate of plain nginx serving the file from disk.

Side by side, in one run, on the same machine (issue 14 pt 7):

* **static**: a plain nginx (one worker, ``sendfile on``, the default access
  log) serving the segment from a directory;
* **edge**: the primary edge's own configuration (``stack/nginx.render_config``,
  the one ``framelog stack up`` runs), in its own directory and on its own port,
  in front of the stack's origin shield, serving the same bytes as a cache HIT
  through a signed path.

The bench edge differs from the stack's only in the per-client limits
(``edge_protection``): the load generator is one client address standing for
many viewers, and the stack's 25 requests per second per client would measure
the refusal path. Everything else, signature check, cache lookup, headers,
JSON access log, is what viewers get.

Both are driven by wrk (8 connections, one thread), static and edge back to
back in each of ``--rounds`` rounds of ``--seconds`` each (who goes first
alternates); judged are the ratio of the two medians and the median of the
rounds' own ratios (the machine is shared: both must reach the target). Every answer must be a 200 (wrk's
non-2xx count is recorded and must be 0) and every edge answer a HIT.

Writes bench/results/edge.json and bench/results/edge.md; exits 1 if the
ratio is under the target.

    FRAMELOG_CONFIG_OVERLAY=... python bench/bench_edge.py --rounds 12 --seconds 4
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from framelog.core.config import Config, load_config
from framelog.core.ids import new_video_id
from framelog.processors import cache_control as cc
from framelog.processors.edge_signing import signed_edge_path
from framelog.processors.tokens import load_or_create_secret
from framelog.sinks.object_store import ObjectStore
from framelog.stack.nginx import nginx_binary, render_config
from framelog.stack.process import wait_until

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.8
SEGMENT_BYTES = 2_600_000          # a 10 s 1080p segment of the ladder's top rung is about this size
PROVIDER = "primary_cdn"
UNLIMITED = 60_000                 # per-client limits the one load-generator address never reaches


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def bench_config(config: Config, port: int) -> Config:
    """The stack's configuration with the primary edge on ``port`` and per-client limits out of the way."""
    cdn = config.cdn
    provider = dataclasses.replace(cdn.providers[PROVIDER], edge_port=port)
    protection = dataclasses.replace(cdn.protection, requests_per_second=UNLIMITED, burst=UNLIMITED,
                                     connections_per_client=UNLIMITED)
    cdn = dataclasses.replace(cdn, providers={**cdn.providers, PROVIDER: provider}, protection=protection)
    return dataclasses.replace(config, cdn=cdn)


def static_config(directory: Path, root: Path, host: str, port: int, run_as: tuple[str, str] | None) -> str:
    """Plain nginx serving ``root``: what a file server does, nothing more (same worker count and user as an edge)."""
    user = f"user {run_as[0]} {run_as[1]};\n" if run_as else ""
    return f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30s;
    client_body_temp_path {directory}/tmp;
    proxy_temp_path {directory}/tmp;
    fastcgi_temp_path {directory}/tmp;
    uwsgi_temp_path {directory}/tmp;
    scgi_temp_path {directory}/tmp;
    server {{
        listen {host}:{port};
        access_log {directory}/access.log;
        root {root};
    }}
}}
"""


class Nginx:
    """One nginx master in the foreground of a child process, stopped on exit."""

    def __init__(self, directory: Path, conf: str, url_of_health: str):
        self.directory = directory
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        (directory / "cache").mkdir(parents=True, exist_ok=True)
        self.conf_path = directory / "nginx.conf"
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen([nginx_binary(), "-p", f"{directory}/", "-e", "stderr", "-c",
                                      str(self.conf_path), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=open(directory / "stderr.log", "wb"))
        if not wait_until(lambda: _answers(url_of_health), timeout=20):
            self.stop()
            raise RuntimeError(f"nginx in {directory} did not answer: {(directory / 'stderr.log').read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


_REQS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_TRANSFER = re.compile(r"Transfer/sec:\s+([0-9.]+)(\w+)")


def wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], capture_output=True,
                         text=True, check=True).stdout
    reqs = _REQS.search(out)
    if reqs is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    non_2xx = _NON_2XX.search(out)
    return {"requests_per_s": float(reqs.group(1)), "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "load1": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("bench_edge: wrk is required (scripts/bootstrap.sh installs it: apt-get install wrk)", file=sys.stderr)
        return 2
    stack_cfg = load_config()
    host = stack_cfg.stack.host
    secret = load_or_create_secret(stack_cfg)
    video_id = new_video_id()
    key = f"hls/{video_id}/1080p/seg_000.ts"
    body = os.urandom(SEGMENT_BYTES)
    headers = cc.headers_for_key(key, stack_cfg.cdn.caching_rules)
    ObjectStore(stack_cfg.object_storage, stack_cfg.stack.state_dir).put_bytes(key, body, content_type=headers["Content-Type"],
                                     cache_control=headers["Cache-Control"])
    results: dict = {"host": platform.node(), "cpus": os.cpu_count(), "segment_bytes": SEGMENT_BYTES,
                     "connections": args.connections, "seconds": args.seconds, "rounds": [], "target": TARGET}
    with tempfile.TemporaryDirectory(prefix="bench-edge-", dir=stack_cfg.stack.state_dir) as tmp:
        root = Path(tmp) / "static-root"
        (root / Path(key).parent).mkdir(parents=True)
        (root / key).write_bytes(body)
        static_port, edge_port = free_port(host), free_port(host)
        static = Nginx(Path(tmp) / "static", static_config(Path(tmp) / "static", root, host, static_port, _run_as()),
                       f"http://{host}:{static_port}/")
        cfg = bench_config(stack_cfg, edge_port)
        edge_dir = Path(tmp) / "edge"
        edge_dir.mkdir()
        edge = Nginx(edge_dir, render_config(cfg, PROVIDER, edge_dir, secret=secret,
                                             run_as=_run_as()), f"http://{host}:{edge_port}/healthz")
        try:
            static_url = f"http://{host}:{static_port}/{key}"
            edge_url = f"http://{host}:{edge_port}" + signed_edge_path(key, cfg, secret=secret, now=time.time(),
                                                                       ttl=3600)
            assert fetch(static_url)[2] == body
            status, first, got = fetch(edge_url)            # MISS: from the shield (or S3) into the edge's cache
            assert status == 200 and got == body, status
            status, again, got = fetch(edge_url)
            if again.get("X-Cache-Status") != "HIT" or got != body:
                raise RuntimeError(f"the edge did not answer a HIT the second time: {again}")
            for i in range(args.rounds):
                # who goes first alternates, so a load that drifts during a round favours neither
                order = ("static", "edge") if i % 2 == 0 else ("edge", "static")
                measured = {name: wrk(static_url if name == "static" else edge_url, args.seconds, args.connections)
                            for name in order}
                results["rounds"].append({"static": measured["static"], "edge": measured["edge"]})
            hits = _edge_cache_statuses(edge_dir / "access.log")
        finally:
            edge.stop()
            static.stop()
    static_rate = statistics.median(r["static"]["requests_per_s"] for r in results["rounds"])
    edge_rate = statistics.median(r["edge"]["requests_per_s"] for r in results["rounds"])
    refused = sum(r["static"]["non_2xx"] + r["edge"]["non_2xx"] for r in results["rounds"])
    ratio = edge_rate / static_rate
    pair_ratio = statistics.median(r["edge"]["requests_per_s"] / r["static"]["requests_per_s"]
                                   for r in results["rounds"])
    results.update(static_median=static_rate, edge_median=edge_rate, ratio=ratio, pair_ratio=pair_ratio,
                   non_2xx=refused, edge_cache_statuses=hits)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edge.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "edge.md").write_text(render_md(results))
    print(render_md(results))
    return 0 if min(ratio, pair_ratio) >= TARGET and refused == 0 and set(hits) <= {"HIT"} else 1


def _run_as() -> tuple[str, str] | None:
    import grp
    import pwd

    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name


def _edge_cache_statuses(log: Path) -> dict[str, int]:
    """How many of the measured edge requests were HIT, MISS... (the first two fetches excluded)."""
    counts: dict[str, int] = {}
    lines = log.read_text().splitlines()[2:]
    for line in lines:
        status = json.loads(line).get("cache") or "-"
        counts[status] = counts.get(status, 0) + 1
    return counts


def render_md(r: dict) -> str:
    rows = "\n".join(f"| {i + 1} | {x['static']['requests_per_s']:.0f} | {x['edge']['requests_per_s']:.0f} | "
                     f"{x['edge']['requests_per_s'] / x['static']['requests_per_s']:.2f} | "
                     f"{x['static']['load1']:.1f} / {x['edge']['load1']:.1f} |" for i, x in enumerate(r["rounds"]))
    verdict = "met" if min(r["ratio"], r["pair_ratio"]) >= r["target"] else "NOT met"
    return f"""# Edge vs plain nginx: a cached segment (bench/bench_edge.py)

Host `{r['host']}`, {r['cpus']} CPUs. One {r['segment_bytes'] / 1e6:.1f} MB segment, wrk with one thread and
{r['connections']} connections, {r['seconds']} s per measurement, static and edge back to back in each
round (who goes first alternates). Static: plain nginx
(1 worker, sendfile, default access log) serving the file from disk. Edge: the primary edge's generated
configuration (signed path checked by `secure_link`, cache HIT, CORS and cache headers, JSON access log),
per-client limits lifted (one load generator stands for many viewers).

| round | static req/s | edge req/s | edge/static | load1 (static / edge) |
|---|---|---|---|---|
{rows}

**Median: static {r['static_median']:.0f} req/s, edge {r['edge_median']:.0f} req/s, ratio {r['ratio']:.2f};
median of the rounds' own ratios {r['pair_ratio']:.2f}** (target >= {r['target']} for both: {verdict}). Non-2xx answers: {r['non_2xx']}. Edge cache statuses of the measured
requests: {r['edge_cache_statuses']}.
"""


if __name__ == "__main__":
    sys.exit(main())
