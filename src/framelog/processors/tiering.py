"""Storage-tier policy (seed §1.1): which tier a rendition belongs in, what
moving it back costs in time, and what the tiers cost per month.

Pure decisions: no S3, no Kafka. Every number comes from the tiering section (``config.tiering``):
``tiering.rules`` (evaluated top to bottom, first match wins),
``tiering.default_tier`` and ``tiering.tiers``.

Rule bounds: ``min_age_days`` is inclusive, ``max_age_days`` is exclusive and
``max_access_count`` is exclusive (``access_count < max_access_count``). A
bound left as ``None`` does not constrain.

Each (video, rendition) is decided on its own: the 4K rendition nobody watches
can go cold while the 720p rendition of the same video stays hot.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from framelog.core.clock import ensure_utc
from framelog.core.config import StorageTier, TieringConfig, TieringRule
from framelog.core.errors import FramelogError

SECONDS_PER_DAY = 86400.0
BYTES_PER_GB = 2**30  # S3 bills "GB-month" in units of 2**30 bytes
DEFAULT_RULE_NAME = "default"


class UnknownTierError(FramelogError, KeyError):
    """A tier name that the configuration does not define."""

    def __init__(self, tier: str, known: Iterable[str]):
        self.tier = tier
        self.known = sorted(known)
        super().__init__(f"unknown storage tier {tier!r}; known: {self.known}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@dataclass(frozen=True)
class TierDecision:
    tier: str
    rule_name: str


@dataclass(frozen=True)
class RenditionState:
    """What the tiering job knows about one stored rendition."""
    video_id: str
    rendition: str
    created_at: datetime
    access_count: int
    last_access: datetime | None
    current_tier: str
    tier_since: datetime | None = None     # when it entered current_tier (None: since created_at)

    def age_days(self, now: datetime) -> float:
        """Age in days at ``now``; a creation time in the future (clock skew) counts as 0."""
        seconds = (ensure_utc(now) - ensure_utc(self.created_at)).total_seconds()
        return max(0.0, seconds / SECONDS_PER_DAY)

    def accessed(self, at: datetime, count: int = 1) -> RenditionState:
        """A copy with ``count`` more accesses, the last one at ``at``."""
        if count < 0:
            raise ValueError(f"access count delta must be >= 0, got {count}")
        at = ensure_utc(at)
        last = at if self.last_access is None else max(ensure_utc(self.last_access), at)
        return dataclasses.replace(self, access_count=self.access_count + count, last_access=last)

    def moved_to(self, tier: str) -> RenditionState:
        return dataclasses.replace(self, current_tier=tier)


@dataclass(frozen=True)
class TierChange:
    """A decided move; mirrors the ``TierTransition`` event's fields."""
    video_id: str
    rendition: str
    from_tier: str
    to_tier: str
    rule_name: str
    age_days: float
    access_count: int
    decided_at: datetime


@dataclass(frozen=True)
class RestorePlan:
    tier: str
    requested_at: datetime
    ready_at: datetime
    estimate_seconds: float

    @property
    def immediate(self) -> bool:
        return self.estimate_seconds == 0


def tier(name: str, tiering: TieringConfig) -> StorageTier:
    try:
        return tiering.tiers[name]
    except KeyError:
        raise UnknownTierError(name, tiering.tiers) from None


def storage_class(tier_name: str, tiering: TieringConfig) -> str:
    """The S3 storage class label for a tier (``hot_tier`` -> ``STANDARD``)."""
    return tier(tier_name, tiering).storage_class


def tier_for_storage_class(label: str, tiering: TieringConfig) -> str:
    """Reverse of :func:`storage_class`; S3 reports no label for STANDARD objects."""
    label = label or "STANDARD"
    for t in tiering.tiers.values():
        if t.storage_class == label:
            return t.name
    raise UnknownTierError(label, (t.storage_class for t in tiering.tiers.values()))


def rule_matches(rule: TieringRule, age_days: float, access_count: int, idle_days: float | None = None) -> bool:
    """Whether every bound of ``rule`` holds; ``idle_days`` None means never watched."""
    if rule.min_age_days is not None and age_days < rule.min_age_days:
        return False
    if rule.min_idle_days is not None and idle_days is not None and idle_days < rule.min_idle_days:
        return False
    if rule.max_age_days is not None and age_days >= rule.max_age_days:
        return False
    if rule.max_access_count is not None and access_count >= rule.max_access_count:
        return False
    return True


def decide_tier(age_days: float, access_count: int, tiering: TieringConfig,
                idle_days: float | None = None, rules: Iterable[TieringRule] | None = None) -> TierDecision:
    """The tier of the first matching rule (``rules``, default ``tiering_rules``), else the default tier
    (rule ``"default"``)."""
    if age_days < 0:
        raise ValueError(f"age_days must be >= 0, got {age_days}")
    if access_count < 0:
        raise ValueError(f"access_count must be >= 0, got {access_count}")
    for rule in tiering.rules if rules is None else rules:
        if rule_matches(rule, age_days, access_count, idle_days):
            return TierDecision(rule.target_tier, rule.name)
    return TierDecision(tiering.default_tier, DEFAULT_RULE_NAME)


def retention_until(state: RenditionState, tiering: TieringConfig) -> datetime:
    """Until when the rendition must stay in its current tier (its retention_period from entering it)."""
    since = ensure_utc(state.tier_since or state.created_at)
    return since + timedelta(seconds=tier(state.current_tier, tiering).retention_period)


def idle_days(state: RenditionState, now: datetime) -> float | None:
    """Days since the last view (None: never viewed)."""
    if state.last_access is None:
        return None
    return max(0.0, (ensure_utc(now) - ensure_utc(state.last_access)).total_seconds() / SECONDS_PER_DAY)


@dataclass(frozen=True)
class RetentionHold:
    """Renditions a video keeps in a locked (compliance) tier whose retention has not ended."""
    tier: str
    until: datetime                   # the latest retention end among them
    renditions: tuple[str, ...]

    @property
    def reason(self) -> str:
        return (f"under compliance retention in {self.tier} until {self.until:%Y-%m-%d} "
                f"(renditions {', '.join(self.renditions)})")


def deletion_hold(states: Iterable[RenditionState], now: datetime, tiering: TieringConfig) -> RetentionHold | None:
    """What forbids deleting a video now: its renditions in a tier with a retention lock, within retention."""
    held = [(s, retention_until(s, tiering)) for s in states
            if tier(s.current_tier, tiering).retention_lock != "none"]
    held = [(s, until) for s, until in held if ensure_utc(now) < until]
    if not held:
        return None
    return RetentionHold(held[0][0].current_tier, max(u for _, u in held), tuple(sorted(s.rendition for s, _ in held)))


def evaluate(state: RenditionState, now: datetime, tiering: TieringConfig,
             rules: Iterable[TieringRule] | None = None) -> TierChange | None:
    """The move this rendition (or object group, with its ``rules``) needs at ``now``, or ``None`` if it is
    already in place or its current tier's retention period still holds it there."""
    age = state.age_days(now)
    decision = decide_tier(age, state.access_count, tiering, idle_days(state, now), rules)
    if decision.tier == state.current_tier or ensure_utc(now) < retention_until(state, tiering):
        return None
    return TierChange(
        video_id=state.video_id, rendition=state.rendition, from_tier=state.current_tier,
        to_tier=decision.tier, rule_name=decision.rule_name, age_days=age,
        access_count=state.access_count, decided_at=ensure_utc(now))


def evaluate_all(states: Iterable[RenditionState], now: datetime, tiering: TieringConfig) -> list[TierChange]:
    """Each rendition decided independently; only the ones that move are returned."""
    return [c for c in (evaluate(s, now, tiering) for s in states) if c is not None]


def restore_plan(current_tier: str, now: datetime, tiering: TieringConfig) -> RestorePlan:
    """When an object in ``current_tier`` becomes readable if a restore is asked for at ``now``."""
    delay = tier(current_tier, tiering).restore_delay
    now = ensure_utc(now)
    return RestorePlan(current_tier, now, now + timedelta(seconds=delay), delay)


def monthly_cost_by_tier(bytes_by_tier: Mapping[str, int], tiering: TieringConfig) -> dict[str, float]:
    """Monthly price per tier, in the currency of ``price_per_gb_month``."""
    out = {}
    for name, size in bytes_by_tier.items():
        if size < 0:
            raise ValueError(f"byte count for {name!r} must be >= 0, got {size}")
        out[name] = size / BYTES_PER_GB * tier(name, tiering).price_per_gb_month
    return out


def monthly_cost(bytes_by_tier: Mapping[str, int], tiering: TieringConfig) -> float:
    """Total monthly price of storing ``bytes_by_tier``."""
    return sum(monthly_cost_by_tier(bytes_by_tier, tiering).values())
