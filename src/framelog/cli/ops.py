"""The operator commands: `framelog groups`, `framelog dlq list|show|replay`, `framelog reprocess`,
`framelog faults run`.

Kept apart from the user-facing commands in cli.py; each only parses its
arguments, calls the streams/ module that does the work, and prints.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from framelog.core.config import Config
from framelog.core.errors import FramelogError


def _groups(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops.groups import describe_groups, format_reports

    reports = describe_groups(config.kafka, config.stack, args.group or None, timeout=args.timeout)
    if args.json:
        print(json.dumps([{"group": r.group_id, "state": r.state, "lag": r.lag,
                           "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                                        "partitions": [f"{t}[{p}]" for t, p in m.partitions]} for m in r.members],
                           "partitions": [{"topic": p.topic, "partition": p.partition, "committed": p.committed,
                                           "end": p.end, "lag": p.lag, "changelog": p.is_changelog}
                                          for p in r.partitions]}
                          for r in reports], indent=2))
    else:
        print(format_reports(reports, by_partition=not args.summary) or "no consumer groups")
    return 0


def _dlq(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops import dlq

    try:
        if args.dlq_command == "list":
            for s in dlq.summarize(config.streams, timeout=args.timeout):
                if s.records or args.all:
                    print(f"{s.topic:<40} records={s.records}  replayed={s.replayed}  pending={s.pending}")
            return 0
        if args.dlq_command == "show":
            from framelog.ops.tail import tail_topic

            dlq._check_dlq(config.topics, args.topic)
            return tail_topic(config.streams, args.topic, from_beginning=True, limit=args.limit, timeout=args.timeout,
                              video_id=args.video)
        report = dlq.replay(config.streams, args.topic, timeout=args.timeout)
    except KeyError as exc:
        raise FramelogError(str(exc.args[0])) from None
    print(f"replayed {report.total} dead letters of {report.topic}"
          + "".join(f"\n  {n} → {topic}" for topic, n in sorted(report.replayed.items())))
    for why in report.skipped:
        print(f"  skipped {why}", file=sys.stderr)
    return 0


def _reprocess(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops.reprocess import ReprocessError, reprocess
    from framelog.sinks.object_store import ObjectStore

    try:
        job_id = reprocess(config.streams, args.video_id, args.from_stage,
                           store=lambda: ObjectStore(config.object_storage, config.stack.state_dir),
                           timeout=args.timeout)
    except (ReprocessError, TimeoutError) as exc:
        raise FramelogError(f"cannot reprocess {args.video_id}: {exc}") from None
    print(f"video {args.video_id}: job {job_id} queued at {args.from_stage or config.pipeline.stage_names[0]} "
          f"(follow it with `framelog status {args.video_id}`)")
    return 0


def _faults(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from framelog.ops.faults.run import FaultRunSettings, run_faults

    settings = FaultRunSettings(duration=args.seconds, pairs=args.pairs,
                                targets=tuple(args.targets.split(",")) if args.targets else None,
                                upload_interval=args.upload_interval, out=Path(args.out) if args.out else None,
                                command=" ".join(["framelog", *sys.argv[1:]]))
    try:
        run = run_faults(config, settings)
    except ValueError as exc:
        print(f"framelog: error: {exc}", file=sys.stderr)
        return 2
    return 0 if run.ok else 1


def add_parsers(sub: Any) -> None:
    """Register the operator commands on the top-level subparsers."""
    p = sub.add_parser("groups", help="consumer groups: members and lag per partition (operators)")
    p.add_argument("group", nargs="*", help="only these groups (default: every group the broker knows)")
    p.add_argument("--summary", action="store_true", help="one line per group")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=_groups)

    p = sub.add_parser("dlq", help="dead-letter topics: list, show, replay after a fix (operators)")
    dsub = p.add_subparsers(dest="dlq_command", required=True)
    t = dsub.add_parser("list", help="dead-letter topics with records, replayed and pending counts")
    t.add_argument("--all", action="store_true", help="also the empty ones")
    t.add_argument("--timeout", type=float, default=10.0)
    t.set_defaults(func=_dlq)
    t = dsub.add_parser("show", help="print a dead-letter topic's records as JSON lines")
    t.add_argument("topic")
    t.add_argument("--limit", type=int, default=0)
    t.add_argument("--video", help="only dead letters keyed by this video id")
    t.add_argument("--timeout", type=float, default=2.0, help="stop after this many idle seconds")
    t.set_defaults(func=_dlq)
    t = dsub.add_parser("replay", help="send dead letters back to their original topic, once each")
    t.add_argument("topic")
    t.add_argument("--timeout", type=float, default=30.0)
    t.set_defaults(func=_dlq)

    p = sub.add_parser("faults", help="the fault suite: kill -9 and restart processes under load, then check "
                                      "nothing was lost or counted twice (operators)")
    fsub = p.add_subparsers(dest="faults_command", required=True)
    t = fsub.add_parser("run", help="load on, faults on schedule, verdicts and a report")
    t.add_argument("--seconds", type=float, default=300.0, help="how long the load runs (faults in its first 80%%)")
    t.add_argument("--targets", help="comma-separated (default: every target: broker, s3, edge, api, sink, "
                                     "worker:<group>)")
    t.add_argument("--pairs", type=int, default=2, help="pairs of targets killed together after the singles")
    t.add_argument("--upload-interval", type=float, default=10.0)
    t.add_argument("--out", help="directory for faults.md and faults.svg (e.g. bench/results)")
    t.set_defaults(func=_faults)

    p = sub.add_parser("reprocess", help="run a video's pipeline again from a stage (operators)")
    p.add_argument("video_id")
    p.add_argument("--from", dest="from_stage", help="the stage to start from (default: the first)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to read the video's log")
    p.set_defaults(func=_reprocess)
