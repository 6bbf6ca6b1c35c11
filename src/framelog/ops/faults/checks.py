"""The verdicts at the end of a fault run: nothing acknowledged lost, nothing counted twice, everyone caught up.

Each check is a ``Verdict`` with the figures it judged, so the report shows
what was measured, not only pass or fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from framelog.core.config import Config
from framelog.ops.faults.load import EVENT_TYPE, Ledger
from framelog.ops.groups import describe_groups
from framelog.sinks.clickhouse.runner import GROUP_ID as SINK_GROUP
from framelog.stack.process import Component

TERMINAL = ("ready", "failed")
POLL = 2.0                       # seconds between looks at a condition with a deadline

EVENTS_PER_VIDEO_SQL = ("SELECT count(), uniqExact(event_id) FROM playback_events "
                        "WHERE video_id = {video:String} AND type = {type:String}")


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)         # polling interval of a condition with a deadline


def uploads_settled(http: httpx.Client, ledger: Ledger, owner: Mapping[str, str], timeout: float) -> Verdict:
    """Every acknowledged upload published, or failed with a reason, within ``timeout``."""
    states: dict[str, dict[str, Any]] = {}

    def settled() -> bool:
        for video_id in ledger.uploads:
            if states.get(video_id, {}).get("state") in TERMINAL:
                continue
            try:
                r = http.get(f"/videos/{video_id}", headers=dict(owner))
            except httpx.HTTPError:
                return False
            if r.status_code == 200:
                states[video_id] = r.json()
        return all(states.get(v, {}).get("state") in TERMINAL for v in ledger.uploads)

    done = _wait(settled, timeout)
    ready = [v for v, s in states.items() if s.get("state") == "ready"]
    failed = {v: s.get("error") for v, s in states.items() if s.get("state") == "failed"}
    unexplained = [v for v, why in failed.items() if not why]
    pending = {v: states.get(v, {}).get("state", "unknown") for v in ledger.uploads
               if states.get(v, {}).get("state") not in TERMINAL}
    ok = done and not unexplained
    return Verdict("uploads published or failed with a reason", ok,
                   f"{len(ready)} published, {len(failed)} failed, {len(pending)} not settled"
                   + (f" ({pending})" if pending else "") + (f"; failed without a reason: {unexplained}"
                                                              if unexplained else ""),
                   {"acknowledged": len(ledger.uploads), "ready": len(ready), "failed": failed, "pending": pending})


def _matches(ledger: Ledger, video_id: str, found: Mapping[str, tuple[int, int]]) -> bool:
    acked = len(ledger.events.get(video_id, ()))
    sent = acked + len(ledger.unconfirmed.get(video_id, ()))
    total, distinct = found.get(video_id, (-1, -1))
    return total == distinct and acked <= distinct <= sent


def _events_verdict(ledger: Ledger, found: Mapping[str, tuple[int, int]], done: bool, how: str) -> Verdict:
    rows = {v: {"acknowledged": len(ledger.events.get(v, ())), "unconfirmed": len(ledger.unconfirmed.get(v, ())),
                "rows": found.get(v, (None, None))[0], "distinct": found.get(v, (None, None))[1]}
            for v in sorted(set(ledger.events) | set(ledger.unconfirmed))}
    lost = {v: rows[v] for v in rows if found.get(v, (-1, -1))[1] < len(ledger.events.get(v, ()))}
    doubled = {v: rows[v] for v, (total, distinct) in found.items() if total != distinct}
    return Verdict("ClickHouse holds exactly the acknowledged events", done,
                   f"{ledger.acknowledged_events()} acknowledged events over {len(rows)} videos; "
                   f"lost on {len(lost)} videos, counted twice on {len(doubled)} ({how})",
                   {"per_video": rows, "lost": lost, "doubled": doubled})


def events_exact(http: httpx.Client, ledger: Ledger, analyst: Mapping[str, str], timeout: float) -> Verdict:
    """ClickHouse holds, per video, every acknowledged event exactly once and nothing the generator did not send
    (read through the API's /v1/sql: an API that hosts the sink, or a ClickHouse server)."""
    found: dict[str, tuple[int, int]] = {}

    def per_video(video_id: str) -> tuple[int, int] | None:
        r = http.post("/v1/sql", headers=dict(analyst),
                      json={"sql": EVENTS_PER_VIDEO_SQL, "parameters": {"video": video_id, "type": EVENT_TYPE}})
        if r.status_code != 200:
            return None
        rows = r.json().get("rows") or [[0, 0]]
        return int(rows[0][0]), int(rows[0][1])

    def all_in() -> bool:
        for video_id in set(ledger.events) | set(ledger.unconfirmed):
            if video_id in found and _matches(ledger, video_id, found):
                continue
            try:
                got = per_video(video_id)
            except httpx.HTTPError:
                return False
            if got is not None:
                found[video_id] = got
        return all(_matches(ledger, v, found) for v in set(ledger.events) | set(ledger.unconfirmed))

    done = _wait(all_in, timeout)
    return _events_verdict(ledger, found, done, "read through the API")


def engine_counts(config: Config, video_ids: Sequence[str], timeout: float = 120.0) -> dict[str, tuple[int, int]]:
    """(rows, distinct event ids) of the generator's type per video, read from the embedded engine's data
    directory by a process of its own (chdb: one process per directory and one per process; its owner, the
    sink, must be stopped first). See engine_counts.py."""
    env = {**os.environ, "FRAMELOG_STATE_DIR": str(config.stack.state_dir),
           "FRAMELOG_CLICKHOUSE_DSN": config.clickhouse_dsn}
    done = subprocess.run([sys.executable, "-m", "framelog.ops.faults.engine_counts"], env=env, timeout=timeout,
                          input=json.dumps({"videos": list(video_ids), "type": EVENT_TYPE}),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"counting in the engine failed: {done.stderr[-2000:]}")
    return {v: (int(n), int(d)) for v, (n, d) in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def events_exact_in_engine(config: Config, ledger: Ledger, sink: Component, timeout: float) -> Verdict:
    """As :func:`events_exact`, with the embedded engine owned by the standalone sink process ``sink``.

    Once the sink's group has lag zero, every acknowledged event (on the broker,
    acks=all) went through an insert that returned before its offset was
    committed, so one count settles it: the sink is stopped (SIGTERM, it
    flushes), its data directory counted, and the sink started again.
    """
    caught_up = _wait(lambda: _group_lag(config, SINK_GROUP) == 0, timeout)
    if not caught_up:
        return _events_verdict(ledger, {}, False, f"the sink's group did not reach lag zero in {timeout:.0f}s")
    sink.stop()
    try:
        found = engine_counts(config, sorted(set(ledger.events) | set(ledger.unconfirmed)))
    finally:
        sink.start(timeout=120)
    done = all(_matches(ledger, v, found) for v in set(ledger.events) | set(ledger.unconfirmed))
    return _events_verdict(ledger, found, done, "counted in the engine once the sink's lag was zero")


def _group_lag(config: Config, group_id: str) -> int | None:
    try:
        reports = describe_groups(config.kafka, config.stack, [group_id], timeout=10)
    except Exception:  # noqa: BLE001 - the broker may still be electing: not known yet
        return None
    return reports[0].lag if reports else None


def groups_caught_up(config: Config, group_ids: Sequence[str], timeout: float) -> Verdict:
    """Each of ``group_ids`` (the worker's groups and the sink's) has lag zero within ``timeout`` seconds.

    Only the long-lived groups are judged: the API's replayed views (status,
    catalog...) use a group per process, and a killed API leaves its old one
    behind, idle by design.
    """
    t0 = time.monotonic()
    last: dict[str, int] = {}

    def zero() -> bool:
        nonlocal last
        try:
            reports = describe_groups(config.kafka, config.stack, group_ids, timeout=10)
        except Exception:  # noqa: BLE001 - the broker may still be electing: not yet
            return False
        last = {r.group_id: r.lag for r in reports}
        return bool(last) and all(lag == 0 for lag in last.values())

    done = _wait(zero, timeout)
    took = time.monotonic() - t0
    behind = {g: lag for g, lag in last.items() if lag}
    if behind:
        try:
            detail = {r.group_id: {f"{p.topic}[{p.partition}]": p.lag for p in r.partitions
                                   if p.lag and not p.is_changelog}
                      for r in describe_groups(config.kafka, config.stack, list(behind), timeout=10)}
            behind = {g: {"lag": lag, "partitions": detail.get(g)} for g, lag in behind.items()}  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the totals stand on their own
            pass
    return Verdict(f"consumer groups' lag back to zero within {timeout:.0f}s", done,
                   f"zero after {took:.0f}s" if done else f"still behind: {behind}",
                   {"seconds": round(took, 1), "behind": behind})


def api_refusals_honest(ledger: Ledger) -> Verdict:
    """A 5xx from the API always carries Retry-After (503: the broker or the store could not take it)."""
    return Verdict("the API answers 5xx only with Retry-After", not ledger.bare_5xx,
                   f"{len(ledger.bare_5xx)} bare 5xx answers" + (f": {ledger.bare_5xx[:5]}" if ledger.bare_5xx else ""),
                   {"answers": dict(ledger.answers)})


def memory_flat(samples: Mapping[str, list[tuple[float, int, int]]], max_growth: float,
                still_growing: float = 0.1) -> Verdict:
    """No process leaks: judged on each role's longest-lived incarnation (``samples``: role -> [(t, pid, rss)]).

    A leak grows and keeps growing. A JVM or a Python process that has just
    (re)started grows too, while it warms up, and then levels off. So a process
    fails only if its last quarter's median is more than ``max_growth`` above its
    second quarter's AND still more than ``still_growing`` above its third
    quarter's. An incarnation with fewer than eight samples is too short to judge.
    """
    growth: dict[str, float] = {}
    failing: dict[str, float] = {}
    for role, rows in samples.items():
        by_pid: dict[int, list[int]] = {}
        for _, pid, rss in rows:
            by_pid.setdefault(pid, []).append(rss)
        longest = max(by_pid.values(), key=len, default=[])
        if len(longest) < 8:
            continue
        q = len(longest) // 4
        second, third, last = (sorted(part)[len(part) // 2]
                               for part in (longest[q:2 * q], longest[2 * q:3 * q], longest[-q:]))
        growth[role] = last / second - 1 if second else 0.0
        if growth[role] > max_growth and third and last / third - 1 > still_growing:
            failing[role] = round(growth[role], 3)
    return Verdict(f"memory flat (no process grew more than {max_growth:.0%} and kept growing)", not failing,
                   f"{len(growth)} processes judged" + (f"; growing: {failing}" if failing else ""),
                   {"growth": {r: round(g, 3) for r, g in sorted(growth.items())}})
