"""The one exponential backoff: how long to wait after the n-th failure in a row.

Every retry loop (stage retries, webhook deliveries, the upload and analytics
clients, replayed tables, the live CLI) asks this for its delay, so the rule
is written once: ``initial * 2^(n-1)`` capped at ``maximum``, optionally
stretched by up to ``jitter`` of itself so many clients do not retry in step.
It lives in the light client because the client ships alone (only httpx);
the back end imports it from here (framelog.core.backoff).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Backoff:
    initial: float          # seconds after the first failure
    maximum: float          # cap of the exponential part
    jitter: float = 0.0     # fraction the delay may be stretched by (0: none)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (1-based) failures in a row, without jitter."""
        return min(self.maximum, self.initial * (2 ** max(failures - 1, 0)))

    def jittered(self, failures: int, rng: Optional[random.Random] = None) -> float:
        """``delay`` stretched by a random fraction up to ``jitter``; never above maximum * (1 + jitter)."""
        base = self.delay(failures)
        spread = (rng or random).random() * self.jitter if self.jitter else 0.0
        return min(self.maximum * (1 + self.jitter), base * (1 + spread))
