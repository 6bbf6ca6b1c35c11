"""The fault run's report: Markdown with every verdict and figure, and an SVG timeline of faults and load."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from framelog.ops.faults.checks import Verdict
from framelog.ops.faults.load import Ledger


@dataclass(frozen=True)
class Outage:
    """One target down: killed at ``start``, healthy again at ``end`` (None: never came back)."""

    target: str
    start: float
    end: float | None


WIDTH, LANE, LEFT, TOP = 1000, 18, 150, 20
BUCKET = 5.0                    # seconds per bar of the acknowledged-events chart


def timeline_svg(outages: Sequence[Outage], ledger: Ledger, duration: float) -> str:
    """Lanes of outages per target, upload acknowledgements as ticks, acknowledged events per 5 s as bars."""
    targets = sorted({o.target for o in outages})
    scale = (WIDTH - LEFT - 10) / max(duration, 1.0)
    chart_top = TOP + LANE * (len(targets) + 2)
    height = chart_top + 110
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
           'font-size="11">', f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    for i, target in enumerate(targets):
        y = TOP + i * LANE
        out.append(f'<text x="5" y="{y + 12}">{escape(target)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y + 8}" x2="{WIDTH - 10}" y2="{y + 8}" stroke="#ddd"/>')
        for o in outages:
            if o.target != target:
                continue
            end = o.end if o.end is not None else duration
            colour = "#d33" if o.end is not None else "#700"
            width = max((end - o.start) * scale, 2)
            out.append(f'<rect x="{LEFT + o.start * scale:.1f}" y="{y + 2}" width="{width:.1f}" height="{LANE - 6}" '
                       f' fill="{colour}"><title>{escape(target)} down {o.start:.0f}-{end:.0f}s'
                       '</title></rect>')
    y = TOP + len(targets) * LANE + 4
    out.append(f'<text x="5" y="{y + 12}">uploads acknowledged</text>')
    for t, kind, _ in ledger.acks:
        if kind == "upload":
            out.append(f'<line x1="{LEFT + t * scale:.1f}" y1="{y}" x2="{LEFT + t * scale:.1f}" y2="{y + 14}" '
                       'stroke="#27a" stroke-width="2"/>')
    buckets: dict[int, int] = {}
    for t, kind, n in ledger.acks:
        if kind == "events":
            buckets[int(t // BUCKET)] = buckets.get(int(t // BUCKET), 0) + n
    peak = max(buckets.values(), default=1)
    out.append(f'<text x="5" y="{chart_top + 50}">events acknowledged</text>')
    out.append(f'<text x="5" y="{chart_top + 64}">per {BUCKET:.0f} s (max {peak})</text>')
    for b, n in buckets.items():
        h = 90 * n / peak
        out.append(f'<rect x="{LEFT + b * BUCKET * scale:.1f}" y="{chart_top + 95 - h:.1f}" '
                   f'width="{max(BUCKET * scale - 1, 1):.1f}" height="{h:.1f}" fill="#4a4"/>')
    for s in range(0, int(duration) + 1, max(int(duration // 10), 1)):
        out.append(f'<text x="{LEFT + s * scale:.1f}" y="{height - 3}" text-anchor="middle">{s}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(verdicts: Sequence[Verdict], outages: Sequence[Outage], ledger: Ledger, run: dict[str, Any],
             svg_name: str) -> str:
    rows = "\n".join(f"| {'PASS' if v.ok else 'FAIL'} | {escape(v.name)} | {escape(v.detail)} |" for v in verdicts)
    downs = "\n".join(f"| {o.target} | {o.start:.0f} | "
                      + (f"{o.end:.0f} | {o.end - o.start:.1f}" if o.end is not None else "never | -") + " |"
                      for o in outages)
    answers = ", ".join(f"{k}: {n}" for k, n in sorted(ledger.answers.items()))
    failures = "".join(f"\n* upload failed at {t:.0f}s: {escape(why[:300])}" for t, why in ledger.upload_failures[:10])
    return f"""# Fault suite (framelog faults run)

{run['when']}, host `{run['host']}`, {run['cpus']} CPUs, load average at the end {run['load']:.1f}.
Load for {run['duration']:.0f} s: an upload every {run['upload_interval']:.0f} s and {run['sessions']} playback
sessions posting {run['batch']} events every {run['event_interval']:.0f} s each, a share link issued and revoked
every {run.get('revoke_interval', 0):.0f} s (an edge purge); faults: every target killed -9
alone, then {run['pairs']} pairs together. Command: `{run['command']}`.

![timeline]({svg_name})

## Verdicts

| | check | measured |
|---|---|---|
{rows}

## Outages (seconds after the load started)

| target | killed | healthy again | down for |
|---|---|---|---|
{downs}

## What the generator saw

{len(ledger.uploads)} uploads acknowledged ({len(ledger.upload_failures)} attempts failed after the client's
retries), {ledger.acknowledged_events()} events acknowledged,
{sum(len(v) for v in ledger.unconfirmed.values())} unconfirmed, {len(ledger.revoked)} share links revoked
(each purges its video from the edges). API answers: {answers}.
{failures}"""
