"""The `framelog` command: one entry point for operators, analysts and the demo.

Each subcommand is a thin shell over a module that does the work, so the
command line never holds logic worth testing on its own.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from framelog.config import Config, get_config
from framelog.exceptions import FramelogError


def _stack(args: argparse.Namespace, config: Config) -> int:
    from framelog.stack import cli as stack_cli

    action: Callable[[Config], int] = {
        "up": stack_cli.stack_up, "down": stack_cli.stack_down, "status": stack_cli.stack_status,
    }[args.action]
    return action(config)


def _topics(args: argparse.Namespace, config: Config) -> int:
    from framelog.streams.admin import create_topics

    summary = create_topics(config)
    for line in summary.lines() if hasattr(summary, "lines") else [str(summary)]:
        print(line)
    return 0


def _worker(args: argparse.Namespace, config: Config) -> int:
    from framelog.streams.worker import run_worker

    return run_worker(config, stages=args.stage or None)


def _upload(args: argparse.Namespace, config: Config) -> int:
    from framelog.streams.uploader import upload_file

    result = upload_file(config, args.file, owner_id=args.owner)
    print(f"uploaded {args.file} as video {result.video_id} ({result.size_bytes} bytes, sha256 {result.sha256})")
    print(f"object s3://{config.object_storage.bucket}/{result.object_key}; UploadCompleted at offset {result.offset}")
    return 0


def _tail(args: argparse.Namespace, config: Config) -> int:
    from framelog.streams.tail import tail_topic

    return tail_topic(config, args.topic, from_beginning=args.from_beginning, limit=args.limit,
                      timeout=args.timeout, video_id=args.video)


def _demo(args: argparse.Namespace, config: Config) -> int:
    from framelog.demo import run_demo

    return run_demo(config)


def _config(args: argparse.Namespace, config: Config) -> int:
    print(f"configuration {config.source} is valid")
    print(f"state dir {config.stack.state_dir}; kafka {config.kafka.bootstrap_servers}; "
          f"s3 {config.object_storage.endpoint_url}; clickhouse {config.clickhouse_dsn}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framelog", description=__doc__)
    parser.add_argument("--config", help="path to a framelog.yaml (default: FRAMELOG_CONFIG or the packaged one)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the embedded local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=_stack)

    p = sub.add_parser("topics", help="manage Kafka topics")
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=_topics)

    p = sub.add_parser("worker", help="run the Faust worker (pipeline agents)")
    p.add_argument("--stage", action="append", help="only these stages' agents (repeatable); default all")
    p.set_defaults(func=_worker)

    p = sub.add_parser("upload", help="upload a video file and emit UploadCompleted")
    p.add_argument("file")
    p.add_argument("--owner", default="local-user")
    p.set_defaults(func=_upload)

    p = sub.add_parser("events", help="inspect events on the log")
    esub = p.add_subparsers(dest="events_command", required=True)
    t = esub.add_parser("tail", help="print decoded events of a topic")
    t.add_argument("topic")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--limit", type=int, default=0, help="stop after this many events (0: no limit)")
    t.add_argument("--timeout", type=float, default=0, help="stop after this many idle seconds (0: never)")
    t.add_argument("--video", help="only events of this video id")
    t.set_defaults(func=_tail)

    p = sub.add_parser("demo", help="run the main job end to end on the local stack")
    p.set_defaults(func=_demo)

    p = sub.add_parser("config", help="validate and summarise the configuration")
    p.set_defaults(func=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.config:
            import os
            os.environ["FRAMELOG_CONFIG"] = args.config
        config = get_config()
        return args.func(args, config)
    except FramelogError as exc:
        print(f"framelog: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
