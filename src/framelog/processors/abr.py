"""Adaptive-bitrate decision (seed §5.2 ``AdaptiveBitrateController``), in Python.

The player runs the same rule in JavaScript; this module is its reference:
``render_js_constants`` emits the numbers the player needs from the
configuration, ``reference_cases`` emits input/expected pairs the player's
tests can replay, and the unit tests pin the rule itself.

The seed's rule (``selectOptimalQuality``):

* average the last ``abr.bandwidth_history`` bandwidth samples (0 if none);
* if the buffer holds less than ``abr.low_buffer_seconds``, step one level
  down from the current quality;
* otherwise pick the highest level whose ``bandwidth * abr.switch_threshold``
  is at most the average, falling back to the lowest level;
* a quality the viewer picked by hand is kept until they return to auto.

Deliberate differences from the seed, each a fix:

* ``trackQualitySwitch`` read ``currentQuality`` after ``switchQuality`` had
  overwritten it, so every event said from == to. Here the switch records the
  quality it left (``"auto"``, the seed's initial value, for the first choice,
  whose reason is ``startup``).
* The seed's manual mode checks ``currentQuality === 'manual'``, which no
  switch ever sets; here manual mode is its own flag.
* On a low buffer at the lowest level the seed fell through to the bandwidth
  rule and could switch *up* while starving; here a low buffer never raises
  the quality, and if the bandwidth rule asks for an even lower level than one
  step down, that lower level is taken at once.
* With no known current quality (the seed's ``'auto'``) the low-buffer step
  has no reference, so the bandwidth rule decides.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from framelog.core.config import AbrConfig, QualityLevel

REASON_BANDWIDTH = "bandwidth"
REASON_LOW_BUFFER = "low_buffer"
REASON_MANUAL = "manual"
REASON_STARTUP = "startup"
AUTO = "auto"  # the seed's initial currentQuality: nothing chosen yet


@dataclass(frozen=True)
class BandwidthSample:
    bandwidth: float      # bits per second
    buffer_level: float   # seconds buffered ahead
    timestamp: float      # epoch seconds


@dataclass(frozen=True)
class QualityDecision:
    quality: str
    reason: str


@dataclass(frozen=True)
class QualitySwitch:
    """Mirrors the ``QualitySwitch`` event: the quality left (``"auto"`` for the
    first choice, reason ``startup``) and the one entered."""
    from_quality: str
    to_quality: str
    bandwidth: float
    buffer_level: float
    reason: str
    timestamp: float


def ascending(levels: Iterable[QualityLevel]) -> list[QualityLevel]:
    return sorted(levels, key=lambda q: q.bandwidth)


def average_bandwidth(samples: Sequence[float], abr: AbrConfig) -> float:
    """Mean of the last ``abr.bandwidth_history`` samples; 0 when there are none."""
    recent = list(samples)[-abr.bandwidth_history:]
    return sum(recent) / len(recent) if recent else 0.0


def fitting_quality(bandwidth: float, abr: AbrConfig, levels: Sequence[QualityLevel]) -> QualityLevel:
    """Highest of ``levels`` (the ladder: ``config.hls.quality_levels``, or a video's renditions) with
    ``bandwidth * switch_threshold <= bandwidth``; else the lowest."""
    asc = ascending(levels)
    if not asc:
        raise ValueError("no quality levels to choose from")
    for level in reversed(asc):
        if level.bandwidth * abr.switch_threshold <= bandwidth:
            return level
    return asc[0]


def lower_quality(current: str, levels: Sequence[QualityLevel]) -> QualityLevel | None:
    """The next level down from ``current`` (seed ``findLowerQuality``), or None at the bottom."""
    asc = ascending(levels)
    for i, level in enumerate(asc):
        if level.name == current:
            return asc[i - 1] if i > 0 else None
    return None


def decide_quality(bandwidth: float, buffer_level: float, current: str | None, abr: AbrConfig,
                   levels: Sequence[QualityLevel]) -> QualityDecision:
    """The seed's ``selectOptimalQuality`` with the reason of the choice."""
    levels = list(levels)
    fit = fitting_quality(bandwidth, abr, levels)
    by_name = {level.name: level for level in levels}
    if buffer_level < abr.low_buffer_seconds and current in by_name:
        target = lower_quality(current, levels) or by_name[current]
        if fit.bandwidth < target.bandwidth:
            target = fit
        return QualityDecision(target.name, REASON_LOW_BUFFER)
    return QualityDecision(fit.name, REASON_BANDWIDTH)


def select_quality(bandwidth: float, buffer_level: float, current: str | None, abr: AbrConfig,
                   levels: Sequence[QualityLevel]) -> str:
    return decide_quality(bandwidth, buffer_level, current, abr, levels).quality


class AdaptiveBitrateController:
    """The seed's controller without the player: feed it measurements, ask it to adjust.

    ``levels``: the renditions this video actually has (or the HLS ladder, ``config.hls.quality_levels``).
    """

    def __init__(self, abr: AbrConfig, levels: Sequence[QualityLevel], current: str | None = None):
        self.abr = abr
        self.levels = ascending(levels)
        if not self.levels:
            raise ValueError("no quality levels to choose from")
        self.current = current
        self.manual = False
        self.history: deque[BandwidthSample] = deque(maxlen=abr.bandwidth_history)

    def _check(self, quality: str) -> str:
        if quality not in {q.name for q in self.levels}:
            raise ValueError(f"unknown quality {quality!r}; available: {[q.name for q in self.levels]}")
        return quality

    def measure(self, bandwidth: float, buffer_level: float, timestamp: float) -> None:
        if bandwidth < 0:
            raise ValueError(f"bandwidth must be >= 0, got {bandwidth}")
        self.history.append(BandwidthSample(bandwidth, buffer_level, timestamp))

    def average_bandwidth(self) -> float:
        return average_bandwidth([s.bandwidth for s in self.history], self.abr)

    def _switch(self, to: str, buffer_level: float, reason: str, timestamp: float) -> QualitySwitch | None:
        previous = self.current  # read before it is overwritten (the seed's from == to bug)
        if to == previous:
            return None
        self.current = to
        if previous is None and reason != REASON_MANUAL:
            reason = REASON_STARTUP
        return QualitySwitch(previous or AUTO, to, self.average_bandwidth(), buffer_level, reason, timestamp)

    def adjust(self, buffer_level: float, timestamp: float) -> QualitySwitch | None:
        """One tick of the seed's ``adjustQuality``; the switch made, if any."""
        if self.manual:
            return None
        decision = decide_quality(self.average_bandwidth(), buffer_level, self.current, self.abr, self.levels)
        return self._switch(decision.quality, buffer_level, decision.reason, timestamp)

    def set_manual(self, quality: str, buffer_level: float, timestamp: float) -> QualitySwitch | None:
        """The viewer picked ``quality``: switch to it and stop adapting."""
        self.manual = True
        return self._switch(self._check(quality), buffer_level, REASON_MANUAL, timestamp)

    def set_auto(self) -> None:
        """Back to automatic selection from the next ``adjust``."""
        self.manual = False


# ------------------------------------------------------------ for the JavaScript player

def js_constants(abr: AbrConfig, levels: Iterable[QualityLevel]) -> dict:
    """What the player's controller needs, in the player's units (ms, bits/s, seconds).

    ``abr``: ``config.abr``; ``levels``: ``config.hls.quality_levels``."""
    return {
        "checkIntervalMs": int(round(abr.check_interval * 1000)),
        "bandwidthHistory": abr.bandwidth_history,
        "lowBufferSeconds": abr.low_buffer_seconds,
        "switchThreshold": abr.switch_threshold,
        "qualityLevels": [{"name": q.name, "width": q.width, "height": q.height, "bandwidth": q.bandwidth}
                          for q in ascending(levels)],
    }


def render_js_constants(abr: AbrConfig, levels: Iterable[QualityLevel], source_name: str,
                        name: str = "FRAMELOG_ABR", export: bool = False) -> str:
    """A JavaScript source file declaring ``js_constants`` as a frozen object (``source_name``: the
    configuration file's name, ``config.source.name``, for the header)."""
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a JavaScript identifier")
    body = json.dumps(js_constants(abr, levels), indent=2, sort_keys=False)
    prefix = "export " if export else ""
    return (f"// Generated from {source_name} by framelog.processors.abr; do not edit.\n"
            f"{prefix}const {name} = Object.freeze({body});\n")


def reference_cases(abr: AbrConfig, levels: Iterable[QualityLevel]) -> list[dict]:
    """Input/expected pairs covering every threshold, for the player's tests to replay."""
    ladder = ascending(levels)
    low, ok = abr.low_buffer_seconds, abr.low_buffer_seconds + 1
    inputs: list[tuple[float, float, str | None]] = [(0.0, ok, None), (0.0, ok, ladder[-1].name)]
    for level in ladder:
        edge = level.bandwidth * abr.switch_threshold
        inputs += [(edge, ok, None), (edge - 1, ok, None), (edge, ok, level.name)]
        for other in ladder:
            inputs.append((edge, low - 0.5, other.name))
    inputs.append((ladder[-1].bandwidth * 10, low, ladder[-1].name))   # exactly at the threshold: not low
    return [{"bandwidth": bw, "bufferLevel": buf, "current": cur,
             "expected": select_quality(bw, buf, cur, abr, ladder)} for bw, buf, cur in inputs]
