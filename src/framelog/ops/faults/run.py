"""Run the fault suite: load on, faults on schedule, load off, verdicts, report."""
from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from framelog.core.config import Config
from framelog.ops.faults import cdn_applied, checks
from framelog.ops.faults.checks import Verdict
from framelog.ops.faults.load import BATCH, SESSIONS, LoadGenerator
from framelog.ops.faults.report import Outage, markdown, timeline_svg
from framelog.ops.faults.schedule import Fault, build_schedule
from framelog.ops.faults.targets import Target, all_targets, rss_bytes, wait_back
from framelog.pipeline.worker import groups
from framelog.processors.identity import ANALYTICS_READ, VIDEOS_WRITE, Keyring, mint_token
from framelog.processors.media import ffmpeg_commands as fc
from framelog.sinks.clickhouse.client import is_embedded
from framelog.sinks.clickhouse.runner import GROUP_ID as SINK_GROUP
from framelog.stack.services import EMBEDDED_SINK_ENV, ApiService, SinkService, WorkerService

SAMPLE_EVERY = 5.0          # seconds between memory samples
OWNER = "faults-owner"
# killed together first: the sink's commits fail while the broker is away, and it restarts into the outage
LEAD_PAIRS = (("sink", "broker"),)


@dataclass(frozen=True)
class FaultRunSettings:
    """How long, what, how hard (``framelog faults run`` flags)."""

    duration: float = 300.0
    targets: tuple[str, ...] | None = None           # None: every target
    pairs: int = 2
    upload_interval: float = 10.0
    event_interval: float = 2.0
    revoke_interval: float = 15.0                    # a share link issued and revoked: an edge purge
    restart_timeout: float = 240.0
    settle_timeout: float = 900.0                    # acknowledged uploads published or failed
    events_timeout: float = 180.0                    # acknowledged events in ClickHouse
    lag_timeout: float = 300.0
    cdn_timeout: float = 120.0                       # the edges show every CDN command applied (after the lag)
    max_memory_growth: float = 0.5
    out: Path | None = None                          # a directory: faults.md and faults.svg
    command: str = "framelog faults run"


@dataclass
class FaultRun:
    settings: FaultRunSettings
    verdicts: list[Verdict] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)


def _api_embeds_sink(pid: int, config: Config) -> bool:
    """Whether the running API ``pid`` hosts the analytics sink (its environment, as analytics_engine reads it)."""
    try:
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in item)
    except OSError:
        return False
    setting = environ.get(EMBEDDED_SINK_ENV, "auto")
    return is_embedded(config.clickhouse_dsn) if setting == "auto" else setting in ("1", "true", "yes")


def _ensure_services(config: Config, say: Callable[[str], None]) -> Callable[[], None]:
    """The worker, the analytics sink as a process of its own and the API without it; returns what puts
    back an API that hosted the sink before (the sink stopped, that API started again as it was)."""
    worker, sink, api = WorkerService(config), SinkService(config), ApiService(config, embedded_sink=False)
    worker.start(timeout=300)
    pid = api.pid()
    embedded_before = pid is not None and _api_embeds_sink(pid, config)
    if embedded_before:
        say("the API hosts the analytics sink: restarting it without, the sink as its own process")
        api.stop()               # it owns the embedded engine's directory until it exits
    sink.start(timeout=120)
    api.start(timeout=300)

    def restore() -> None:
        if embedded_before:
            say("putting back the API with its embedded sink")
            api.stop()
            sink.stop()
            ApiService(config).start(timeout=300)
    return restore


def _sampler(targets: Sequence[Target], samples: dict[str, list[tuple[float, int, int]]], started: float,
             stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_EVERY):
        now = time.monotonic() - started
        for target in targets:
            for pid in target.pids():
                rss = rss_bytes(pid)
                if rss is not None:
                    samples.setdefault(target.name, []).append((now, pid, rss))


def _apply(fault: Fault, targets: dict[str, Target], now: Callable[[], float], timeout: float,
           say: Callable[[str], None]) -> list[Outage]:
    """Kill every target of ``fault`` together, then bring each back; one Outage per target."""
    killed = {}
    for name in fault.targets:
        targets[name].kill()
        killed[name] = now()
        say(f"  {killed[name]:6.0f}s  kill -9 {name}")
    outages = []
    for name in fault.targets:
        target = targets[name]
        try:
            target.restart(timeout)
            back = wait_back(target, timeout)
        except Exception as exc:  # noqa: BLE001 - a target that does not come back is a finding, not a crash
            say(f"  {now():6.0f}s  {name} did not come back: {str(exc).splitlines()[0]}")
            back = None
        end = now() if back is not None else None
        outages.append(Outage(name, killed[name], end))
        if end is not None:
            say(f"  {end:6.0f}s  {name} healthy again ({end - killed[name]:.1f}s down)")
    return outages


def run_faults(config: Config, settings: FaultRunSettings, say: Callable[[str], None] = print) -> FaultRun:
    """Everything the suite does; the caller decides what a failed verdict means (exit code, assertion)."""
    run = FaultRun(settings)
    known = all_targets(config)
    names = list(settings.targets or known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown fault target(s) {unknown}; known: {sorted(known)}")
    restore = _ensure_services(config, say)
    try:
        return _run(config, settings, run, known, names, say)
    finally:
        restore()


def _run(config: Config, settings: FaultRunSettings, run: FaultRun, known: dict[str, Target], names: list[str],
         say: Callable[[str], None]) -> FaultRun:
    api_url = ApiService(config).address
    keyring = Keyring(config.auth, config.stack.state_dir)
    owner_token = mint_token(config.auth, keyring, OWNER, scopes=[VIDEOS_WRITE])
    analyst = {"Authorization": f"Bearer {mint_token(config.auth, keyring, 'faults-analyst', scopes=[ANALYTICS_READ])}"}
    schedule = build_schedule(names, settings.duration, pairs=settings.pairs, lead_pairs=LEAD_PAIRS)
    samples: dict[str, list[tuple[float, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="framelog-faults-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        fc.run_ffmpeg(fc.sample_clip_args(clip, width=320, height=180, duration=4, fps=25))
        gen = LoadGenerator(api_url, clip, owner_token=owner_token, upload_interval=settings.upload_interval,
                            event_interval=settings.event_interval, revoke_interval=settings.revoke_interval)
        say(f"warm-up: {gen.warm_up(settings.settle_timeout)} published")
        cdn_since = cdn_applied.command_offsets(config)      # the commands after this are the run's
        gen.start()
        ledger = gen.ledger
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=_sampler, args=([known[n] for n in names], samples, ledger.started,
                                                          stop_sampling), daemon=True)
        sampler.start()
        say(f"load on: {api_url}; {len(schedule)} faults over {settings.duration:.0f}s")
        try:
            for fault in schedule:
                wait = fault.at - ledger.now()
                if wait > 0:
                    time.sleep(wait)         # the schedule's clock, not a synchronisation
                run.outages += _apply(fault, known, ledger.now, settings.restart_timeout, say)
            rest = settings.duration - ledger.now()
            if rest > 0:
                time.sleep(rest)
        finally:
            say(f"  {ledger.now():6.0f}s  load off")
            gen.stop(timeout=gen.give_up_after + 30)
        duration = ledger.now()
        with httpx.Client(base_url=api_url, timeout=30) as http:
            owner = {"Authorization": f"Bearer {owner_token}"}
            run.verdicts = [
                Verdict("every target came back", all(o.end is not None for o in run.outages),
                        f"{sum(o.end is not None for o in run.outages)} of {len(run.outages)} outages ended"),
                checks.uploads_settled(http, ledger, owner, settings.settle_timeout),
                (checks.events_exact_in_engine(config, ledger, SinkService(config), settings.events_timeout)
                 if is_embedded(config.clickhouse_dsn) else
                 checks.events_exact(http, ledger, analyst, settings.events_timeout)),
                checks.api_refusals_honest(ledger),
                checks.groups_caught_up(config, [*(f"framelog-{g}" for g in groups(config.pipeline)), SINK_GROUP],
                                        settings.lag_timeout),
                cdn_applied.cdn_commands_applied(config, cdn_since, settings.cdn_timeout),
            ]
        stop_sampling.set()            # memory is sampled through the catching up too
        run.verdicts.append(checks.memory_flat(samples, settings.max_memory_growth))
    if gen.errors:
        run.verdicts.append(Verdict("the generator's sessions were never refused", False,
                                    "; ".join(gen.errors[:5])))
    for v in run.verdicts:
        say(f"{'PASS' if v.ok else 'FAIL'}  {v.name}: {v.detail}")
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        (settings.out / "faults.svg").write_text(timeline_svg(run.outages, ledger, duration))
        info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
                "cpus": os.cpu_count(), "load": os.getloadavg()[0], "duration": duration,
                "upload_interval": settings.upload_interval, "event_interval": settings.event_interval,
                "revoke_interval": settings.revoke_interval,
                "sessions": SESSIONS, "batch": BATCH, "pairs": settings.pairs, "command": settings.command}
        run.report = settings.out / "faults.md"
        run.report.write_text(markdown(run.verdicts, run.outages, ledger, info, "faults.svg"))
        say(f"report: {run.report}")
    return run
