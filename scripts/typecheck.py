#!/usr/bin/env python3
"""The test command's type check: mypy over src/framelog ([tool.mypy] in pyproject.toml), no new errors.

The code predates the checker, so its known errors are listed in scripts/mypy-baseline.txt, one per
line as ``path: [code] message``. Line numbers are left out: they move with every edit above an
error, and a baseline keyed on them would break on unrelated changes. The comparison counts: a
second identical error in one file is a new error. An error whose file moved (``git mv``) matches
the baseline entry of the old path that is gone with the same code and message.

    scripts/typecheck.py            # exit 1 on any error not in the baseline
    scripts/typecheck.py --update   # drop the baseline entries that were fixed (never adds one)

A new error is fixed, or silenced on its line with ``# type: ignore[code]`` and a reason; the
baseline only shrinks.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "scripts" / "mypy-baseline.txt"
ERROR = re.compile(r"^(?P<path>[^:\n]+):\d+(?::\d+)?: error: (?P<message>.*?)  \[(?P<code>[a-z-]+)\]$")
LINE_REF = re.compile(r"\bline \d+\b")      # "defined on line 45" moves like the error itself


def current_errors() -> tuple[Counter[str], str]:
    """mypy's errors as baseline entries (with their multiplicity), and mypy's raw output."""
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-pretty", "--no-error-summary",
                          "--hide-error-context", "--show-error-codes"],
                         cwd=ROOT, capture_output=True, text=True)
    if run.returncode not in (0, 1):            # 2: mypy itself failed (bad config, crash)
        sys.exit(f"typecheck: mypy failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    entries: Counter[str] = Counter()
    for line in run.stdout.splitlines():
        m = ERROR.match(line)
        if m:
            entries[f"{m['path']}: [{m['code']}] {LINE_REF.sub('line N', m['message'])}"] += 1
    return entries, run.stdout


def read_baseline() -> Counter[str]:
    if not BASELINE.exists():
        return Counter()
    return Counter(line for line in BASELINE.read_text().splitlines() if line and not line.startswith("#"))


def write_baseline(entries: Counter[str]) -> None:
    header = ("# mypy errors known when the checker was introduced; scripts/typecheck.py fails on any other.\n"
              "# Only shrinks: `scripts/typecheck.py --update` drops fixed entries. path: [code] message\n")
    BASELINE.write_text(header + "".join(f"{e}\n" for e in sorted(entries.elements())))


def compare(errors: Counter[str], baseline: Counter[str]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(new, fixed, moved): errors not in the baseline, baseline entries that no longer occur, and the
    errors that match a fixed entry's code and message under another path (their file moved)."""
    new, fixed = errors - baseline, baseline - errors
    moved: Counter[str] = Counter()
    for entry in sorted(new.elements()):
        twin = next((f for f in sorted(fixed) if fixed[f] > 0 and _tail(f) == _tail(entry)), None)
        if twin is not None:
            fixed[twin] -= 1
            moved[entry] += 1
    return new - moved, +fixed, moved


def _tail(entry: str) -> str:
    """``[code] message`` of a baseline entry, without its path."""
    return entry.split(": ", 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="drop the baseline entries that were fixed")
    args = parser.parse_args(argv)
    errors, output = current_errors()
    baseline = read_baseline()
    new, fixed, moved = compare(errors, baseline)
    if args.update:
        kept = (baseline & errors) + moved
        write_baseline(kept)
        print(f"typecheck: baseline {sum(baseline.values())} -> {sum(kept.values())} entries")
    elif fixed:
        print(f"typecheck: {sum(fixed.values())} baseline entries no longer occur; "
              "shrink the baseline with scripts/typecheck.py --update")
    if new:
        wanted = set(new)
        print(f"typecheck: {sum(new.values())} new mypy error(s), not in {BASELINE.relative_to(ROOT)}:")
        for line in output.splitlines():
            m = ERROR.match(line)
            if m and f"{m['path']}: [{m['code']}] {LINE_REF.sub('line N', m['message'])}" in wanted:
                print(f"  {line}")
        return 1
    print(f"typecheck: no new mypy errors ({sum(errors.values())} known, in the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
