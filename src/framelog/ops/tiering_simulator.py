"""``framelog tiering simulate``: a synthetic catalogue through the tiering decisions, day by day.

The decisions are the worker's own: ``processors.tier_ledger`` (publication,
accesses, restore requests, ``next_move``, transitions folded back) on top of
``processors.tiering`` with the configured rules, tiers and prices. Only the
surroundings are simulated: no Kafka, no S3, a ``ManualClock`` that moves one
day per step (evaluating once a day is enough for rules counted in days).

Workload (synthetic, its parameters are the simulator's, not the seed's):
videos are uploaded at an even rate over the period; each has a popularity
drawn from a Zipf law over the catalogue (a few videos get most views) that
decays with age as ``(1 + age / DECAY_DAYS) ** -DECAY_POWER``; its daily
sessions are Poisson around that, split over the renditions by
``RENDITION_SHARES`` (highest quality first). A rendition's size is its
profile's bitrate times the video's duration (log-normal around
``MEDIAN_DURATION``). Every object a video keeps is counted, not the HLS
renditions only: the raw upload (``SOURCE_BITRATE_FACTOR`` times the top
profile's bitrate), the progressive MP4 (the top rendition's size) and the
thumbnails (``THUMBNAIL_BYTES_PER_SECOND``), each decided by its own rules
(``tiering_object_rules``) on the video's sessions, as the worker does.

Compared: the configured rules (ages and access counts), the same rules with
the access-count bounds removed ("age only") and keeping everything hot. A
session on a rendition in a tier with a restore delay asks for a restore (as
the stream API does) and has to wait; those waits and the bytes restored are
reported, since a cheaper tier that viewers keep restoring is not cheaper.
Not modelled: retrieval and request fees, minimum storage durations
(Glacier bills 90 days at least, Deep Archive 180).
"""
from __future__ import annotations

import dataclasses
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from framelog.core import object_keys
from framelog.core.clock import ManualClock
from framelog.core.config import PipelineConfig, TieringConfig
from framelog.processors import tier_ledger as ledger
from framelog.processors.tiering import BYTES_PER_GB, monthly_cost_by_tier

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS_PER_MONTH = 30
ZIPF_EXPONENT = 1.0
SESSIONS_PER_VIDEO_PER_DAY = 20.0       # catalogue average on upload day
DECAY_DAYS = 7.0
DECAY_POWER = 1.5
MEDIAN_DURATION = 240.0                 # seconds
DURATION_SIGMA = 0.8
RENDITION_SHARES = (0.05, 0.35, 0.40, 0.20)   # of sessions, highest profile first
SOURCE_BITRATE_FACTOR = 1.6             # a camera or phone upload against the top rung's bitrate
SIMULATED_UPLOAD_MONTH = datetime(2025, 1, 1, tzinfo=UTC)   # the dated MP4 key's month (any one will do)
THUMBNAIL_BYTES_PER_SECOND = 2_000      # poster, a thumbnail every few seconds, storyboard, chapters


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:                        # normal approximation; exact enough for daily totals
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def age_only(tiering: TieringConfig) -> TieringConfig:
    """The configured rules (``config.tiering``) without their access-count bounds (and popularity guards)."""
    def strip(rules: tuple) -> tuple:
        return tuple(dataclasses.replace(r, max_access_count=None, min_idle_days=None) for r in rules)

    objects = tiering.object_rules
    return dataclasses.replace(tiering, rules=strip(tiering.rules),
                               object_rules=dataclasses.replace(
                                   objects, source=strip(objects.source), mp4=strip(objects.mp4),
                                   thumbnails=strip(objects.thumbnails)))


@dataclass(frozen=True)
class Video:
    video_id: str
    upload_day: int
    popularity: float                   # expected sessions on upload day
    duration: float
    renditions: tuple[tuple[str, int, float], ...]   # (name, size_bytes, share of sessions)
    objects: tuple[tuple[str, str, int], ...] = ()   # (object group, key or prefix, size_bytes)


def catalogue(pipeline: PipelineConfig, videos: int, days: int, seed: int) -> list[Video]:
    rng = random.Random(seed)
    profiles = sorted(pipeline.transcoding_profiles, key=lambda p: -p.bitrate)
    shares = list(RENDITION_SHARES[:len(profiles)]) + [RENDITION_SHARES[-1]] * (len(profiles) - len(RENDITION_SHARES))
    shares = [s / sum(shares) for s in shares]
    ranks = list(range(1, videos + 1))
    rng.shuffle(ranks)
    weights = [r ** -ZIPF_EXPONENT for r in ranks]
    scale = SESSIONS_PER_VIDEO_PER_DAY * videos / sum(weights)
    out = []
    for i in range(videos):
        duration = MEDIAN_DURATION * math.exp(rng.gauss(0, DURATION_SIGMA))
        rs = tuple((p.name.removesuffix("_profile"), int(p.bitrate / 8 * duration), share)
                   for p, share in zip(profiles, shares))
        vid = f"sim{i:06d}"
        top = profiles[0]
        mp4 = object_keys.progressive_mp4(vid, top.name.removesuffix("_profile"), SIMULATED_UPLOAD_MONTH)
        objects = (("_source", object_keys.raw_upload(vid), int(top.bitrate / 8 * duration * SOURCE_BITRATE_FACTOR)),
                   ("_mp4", mp4, rs[0][1]),
                   ("_thumbnails", object_keys.thumbnails_root(vid), int(THUMBNAIL_BYTES_PER_SECOND * duration)))
        out.append(Video(vid, i * days // videos, weights[i] * scale, duration, rs, objects))
    return out


@dataclass
class Policy:
    name: str
    tiering: TieringConfig | None       # the policy's config.tiering; None: everything stays in the entry tier
    records: dict[str, ledger.RenditionRecord] = field(default_factory=dict)
    restores: int = 0
    restored_bytes: int = 0
    waiting_sessions: int = 0
    transitions: int = 0
    monthly: list[dict[str, float]] = field(default_factory=list)    # per month: cost by tier
    _day_bytes: list[dict[str, int]] = field(default_factory=list)

    def publish(self, video: Video, now: datetime, base: TieringConfig) -> None:
        asset = {"video_id": video.video_id, "event_time": now}
        for name, size, _ in video.renditions:
            r = {"name": name, "playlist_key": object_keys.rendition_playlist(video.video_id, name), "size_bytes": size}
            record = ledger.on_asset_published(None, asset, r, (self.tiering or base))
            self.records[record.key] = record
        for group, prefix, size in video.objects:
            record = ledger.on_object_published(None, asset, group, prefix, size, (self.tiering or base))
            self.records[record.key] = record

    def count(self, key: str, sessions: int, now: datetime) -> None:
        """Sessions of the video counted on an object group (nobody reads the source to play: no restore)."""
        self.records[key] = ledger.on_accesses(self.records[key], sessions, now)

    def access(self, key: str, sessions: int, now: datetime) -> None:
        record = ledger.on_accesses(self.records[key], sessions, now)
        if self.tiering is not None and ledger.needs_restore(record.tier, self.tiering):
            self.waiting_sessions += sessions
            record, started = ledger.on_restore_request(record, {
                "event_id": str(uuid.uuid4()), "event_time": now, "to_tier": self.tiering.restore_tier},
                self.tiering)
            self.restores += started
        self.records[key] = record

    def evaluate(self, now: datetime) -> None:
        if self.tiering is None:
            return
        for key, record in self.records.items():
            move = ledger.next_move(record, now, self.tiering)
            if move is None:
                continue
            event = {"event_id": move.event_id, "event_time": now, "video_id": move.video_id,
                     "rendition": move.rendition, "from_tier": move.from_tier, "to_tier": move.to_tier,
                     "rule": move.rule_name, "age_days": move.age_days, "size_bytes": record.size_bytes}
            self.records[key] = ledger.on_transition(record, event, self.tiering)[0]
            self.transitions += 1
            if move.rule_name == ledger.RESTORE_RULE:
                self.restored_bytes += record.size_bytes

    def account(self, base: TieringConfig) -> None:
        by_tier = {name: 0 for name in base.tiers}
        for r in self.records.values():
            by_tier[r.tier] += r.size_bytes
        self._day_bytes.append(by_tier)
        if len(self._day_bytes) == DAYS_PER_MONTH:
            self.close_month(base)

    def close_month(self, base: TieringConfig) -> None:
        if not self._day_bytes:
            return
        days = len(self._day_bytes)
        mean = {t: sum(d[t] for d in self._day_bytes) // days for t in base.tiers}
        cost = monthly_cost_by_tier(mean, base)
        self.monthly.append({**{f"{t}_cost": c for t, c in cost.items()},
                             **{f"{t}_bytes": float(mean[t]) for t in base.tiers},
                             "days": float(days)})
        self._day_bytes = []

    def total(self, month: int) -> float:
        """The month's cost as a monthly rate (USD per month)."""
        return sum(v for k, v in self.monthly[month].items() if k.endswith("_cost"))

    def period_cost(self) -> float:
        """What the whole period cost: each month's rate for the days it covers."""
        return sum(self.total(m) * self.monthly[m]["days"] / DAYS_PER_MONTH for m in range(len(self.monthly)))


@dataclass
class SimulationResult:
    tiering: TieringConfig
    videos: int
    days: int
    seed: int
    policies: list[Policy]
    sessions: int


def simulate(pipeline: PipelineConfig, tiering: TieringConfig, *, videos: int, days: int,
             seed: int = 1) -> SimulationResult:
    """Run the three policies over a synthetic catalogue (``config.pipeline``: its renditions;
    ``config.tiering``: the tiers, prices and rules)."""
    if videos < 1 or days < 1:
        raise ValueError("videos and days must be at least 1")
    rng = random.Random(seed + 1)
    catalog = catalogue(pipeline, videos, days, seed)
    policies = [Policy("rules", tiering), Policy("age only", age_only(tiering)), Policy("all hot", None)]
    clock = ManualClock(START)
    by_day: dict[int, list[Video]] = {}
    for v in catalog:
        by_day.setdefault(v.upload_day, []).append(v)
    live: list[Video] = []
    sessions_total = 0
    for day in range(days):
        clock.set(START + timedelta(days=day, hours=12))           # uploads and views at noon
        for v in by_day.get(day, []):
            live.append(v)
            for p in policies:
                p.publish(v, clock.now(), tiering)
        for v in live:
            lam = v.popularity * (1 + (day - v.upload_day) / DECAY_DAYS) ** -DECAY_POWER
            video_sessions = 0
            for name, _, share in v.renditions:
                n = poisson(rng, lam * share)
                if n:
                    sessions_total += n
                    video_sessions += n
                    key = ledger.rendition_key(v.video_id, name)
                    for p in policies:
                        p.access(key, n, clock.now())
            if video_sessions:
                for group, _, _ in v.objects:
                    for p in policies:
                        p.count(ledger.rendition_key(v.video_id, group), video_sessions, clock.now())
        clock.set(START + timedelta(days=day + 1) - timedelta(seconds=1))   # the day's last evaluation
        for p in policies:
            p.evaluate(clock.now())
            p.account(tiering)
    for p in policies:
        p.close_month(tiering)
    return SimulationResult(tiering, videos, days, seed, policies, sessions_total)


# ---------------------------------------------------------------- report

def _money(x: float) -> str:
    return f"{x:,.2f}"


def report_markdown(result: SimulationResult) -> str:
    rules, ages, hot = result.policies
    tiers = list(result.tiering.tiers)
    lines = [
        f"# Storage tiering: {result.videos} videos over {result.days} days",
        "",
        f"`framelog tiering simulate --days {result.days} --videos {result.videos} --seed {result.seed}`: "
        "a synthetic catalogue (uploads at an even rate, Zipf popularity decaying with age, "
        f"{result.sessions:,} playback sessions in all) through the tiering worker's decision code "
        "(`processors/tier_ledger.py`, rules and prices from `core/framelog.yaml`), evaluated daily. "
        "Every object a video keeps is stored and priced: its HLS renditions (`tiering_rules`), the raw "
        "upload, the progressive MP4 and the thumbnails (`tiering_object_rules`).",
        "",
        f"Monthly storage cost (USD per month: mean bytes stored that month x the tier's price per GB-month; "
        f"months of {DAYS_PER_MONTH} days, the last one may be shorter):",
        "",
        "| month | " + " | ".join(tiers) + " | **rules** | age only | all hot | rules vs all hot |",
        "|---|" + "---:|" * (len(tiers) + 4),
    ]
    for m in range(len(rules.monthly)):
        row = rules.monthly[m]
        saving = 1 - rules.total(m) / hot.total(m) if hot.total(m) else 0.0
        lines.append(f"| {m + 1} | " + " | ".join(_money(row[f"{t}_cost"]) for t in tiers)
                     + f" | **{_money(rules.total(m))}** | {_money(ages.total(m))} | {_money(hot.total(m))} "
                     f"| {saving:.0%} |")
    last = len(rules.monthly) - 1
    stored = sum(rules.monthly[last][f"{t}_bytes"] for t in tiers) / BYTES_PER_GB
    lines += [
        "",
        f"In the last month {stored:,.0f} GB are stored: "
        + ", ".join(f"{t} {rules.monthly[last][f'{t}_bytes'] / BYTES_PER_GB:,.0f} GB" for t in tiers) + ".",
        "",
        "| over the whole period | rules | age only | all hot |",
        "|---|---:|---:|---:|",
        "| storage cost over the period (USD) | "
        + " | ".join(_money(p.period_cost()) for p in (rules, ages, hot)) + " |",
        "| tier transitions | " + " | ".join(str(p.transitions) for p in (rules, ages, hot)) + " |",
        "| restores (a session found the rendition in a tier with a restore delay) | "
        + " | ".join(str(p.restores) for p in (rules, ages, hot)) + " |",
        "| GB restored | " + " | ".join(f"{p.restored_bytes / BYTES_PER_GB:,.1f}" for p in (rules, ages, hot)) + " |",
        "| sessions that had to wait for a restore | "
        + " | ".join(f"{p.waiting_sessions:,}" for p in (rules, ages, hot)) + " |",
        "",
        f"Age-only rules store {1 - ages.period_cost() / rules.period_cost():.0%} cheaper than the configured rules "
        f"but restore {ages.restored_bytes / max(rules.restored_bytes, 1):.1f}x the bytes and make "
        f"{ages.waiting_sessions / max(rules.waiting_sessions, 1):.1f}x as many sessions wait for a restore "
        "(hours, for Glacier): the access-count bound keeps watched renditions readable.",
        "",
        "Not modelled: retrieval and request fees, minimum storage durations (Glacier bills at least 90 days, "
        "Deep Archive 180). The workload's parameters are in `ops/tiering_simulator.py`.",
        "",
    ]
    return "\n".join(lines)


def print_summary(result: SimulationResult, out: TextIO) -> None:
    rules, ages, hot = result.policies
    tiers = list(result.tiering.tiers)
    head = f"{'month':>5} " + " ".join(f"{t:>18}" for t in tiers) + f" {'rules':>10} {'age only':>10} {'all hot':>10}"
    print(head, file=out)
    for m in range(len(rules.monthly)):
        print(f"{m + 1:>5} " + " ".join(f"{rules.monthly[m][f'{t}_cost']:>18.2f}" for t in tiers)
              + f" {rules.total(m):>10.2f} {ages.total(m):>10.2f} {hot.total(m):>10.2f}", file=out)
    for p in (rules, ages, hot):
        print(f"{p.name:>9}: {p.period_cost():,.2f} USD over {result.days} days, "
              f"{p.transitions} transitions, {p.restores} restores, {p.waiting_sessions:,} sessions waited",
              file=out)


def write_report(result: SimulationResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(result))
