"""When each fault happens: every target alone, then pairs together, then a quiet tail to catch up (pure)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Fault:
    """Kill -9 every target in ``targets`` at ``at`` seconds after the load started, then restart them."""

    at: float
    targets: tuple[str, ...]


def build_schedule(targets: Sequence[str], duration: float, *, pairs: int = 2,
                   quiet_fraction: float = 0.2, lead_pairs: Sequence[tuple[str, str]] = ()) -> list[Fault]:
    """Singles first (each target once), then ``pairs`` pairs of different targets, evenly spread.

    The last ``quiet_fraction`` of ``duration`` has no fault, so the system
    shows it recovers under load, not only once the load stops. Pairs are taken
    in a fixed order: ``lead_pairs`` whose both targets are in ``targets``
    first, then an order that mixes kinds (broker with a worker, the API with
    S3...): target i with target len/2 + i.
    """
    if not targets:
        return []
    if duration <= 0 or not 0 <= quiet_fraction < 1:
        raise ValueError("duration must be > 0 and quiet_fraction in [0, 1)")
    half = len(targets) // 2
    mixed = [(targets[i], targets[half + i]) for i in range(half)]
    rest = [p for p in combinations(targets, 2) if p not in mixed]
    lead = [(a, b) for a, b in lead_pairs if a in targets and b in targets and a != b]
    ordered: dict[frozenset[str], tuple[str, str]] = {}
    for pair in lead + mixed + rest:
        ordered.setdefault(frozenset(pair), pair)       # a pair once, in whichever order it came first
    chosen = list(ordered.values())[:max(pairs, 0)]
    plan: list[tuple[str, ...]] = [(t,) for t in targets] + [tuple(p) for p in chosen]
    active = duration * (1 - quiet_fraction)
    step = active / len(plan)
    return [Fault(at=round(step * i + step / 4, 3), targets=group) for i, group in enumerate(plan)]
