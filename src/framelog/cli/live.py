"""Command-line faces of live progress and webhooks: ``upload --wait``, ``status --follow``, ``webhooks ...``.

Progress comes from the API's server-sent events (``GET /videos/{id}/events``,
api/live.py): one ``rich`` progress bar per pipeline stage, updated on every
transition, until the video is ready, failed or deleted. A dropped stream is
reopened (the API replays the stages so far, so nothing is lost).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from framelog.core.config import Config
from framelog_client.status import FollowError
from framelog_client.status import follow as follow_stream
from framelog_client.status import sse_events as client_sse_events

RECONNECTS = 5


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a text/event-stream response; comments (heartbeats) skipped."""
    for item in client_sse_events(response.iter_lines()):
        yield item.event, item.data


def follow(api: str, video_id: str, headers: dict[str, str], *, stage_names: tuple[str, ...],
           quiet: bool = False) -> dict[str, Any]:
    """Show the video's progress per stage until it ends; returns the final status. The stream and its
    reconnects are the light client's (framelog_client.status.follow)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr, quiet=quiet)
    progress = Progress(TextColumn("{task.fields[stage]:<22}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console, transient=False)
    tasks = {name: progress.add_task(name, total=1.0, stage=name, state="waiting") for name in stage_names}
    with progress:
        try:
            for item in follow_stream(api, video_id, headers=headers, reconnects=RECONNECTS):
                data = item.data
                if item.event == "transition":
                    stage = data["stage"]
                    if stage not in tasks:
                        tasks[stage] = progress.add_task(stage, total=1.0, stage=stage, state="")
                    label = data["state"] + (f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else "")
                    if data.get("error_type"):
                        label += f": {data['error_type']}"
                    done = 1.0 if data["state"] == "succeeded" else float(data.get("progress") or 0.0)
                    progress.update(tasks[stage], completed=done, state=label)
                elif item.final:
                    return data
        except FollowError as exc:
            raise RuntimeError(str(exc)) from exc
    raise RuntimeError(f"the event stream of {video_id} ended before the video did")


def print_final(view: dict[str, Any]) -> int:
    state = view.get("state")
    if state == "failed" and view.get("error"):
        e = view["error"]
        print(f"video {view['video_id']}: failed in {e['stage']}: {e.get('error_type')}: {e.get('error_message')}",
              file=sys.stderr)
        return 1
    print(f"video {view['video_id']}: {state}", file=sys.stderr)
    return 0 if state == "ready" else 1


# ------------------------------------------------------------ webhooks

def webhooks_command(args: Any, config: Config) -> int:
    from framelog.processors.tokens import load_or_create_secret
    from framelog.streams.producer import EventProducer
    from framelog.views.webhook_registry import EndpointRegistry
    from framelog.views.webhook_replay import delivery_steps, replay_endpoint

    with EndpointRegistry(config.streams) as registry:
        if not registry.wait_ready(60.0):
            raise RuntimeError(f"the webhook registry did not catch up ({registry.last_error})")
        if args.webhooks_command == "list":
            for e in sorted(registry.live(), key=lambda e: e.created_at_ms):
                print(json.dumps(e.view(), sort_keys=True))
            return 0
        endpoint = registry.get(args.endpoint)
    if endpoint is None or endpoint.deleted:
        print(f"framelog: no webhook endpoint {args.endpoint}", file=sys.stderr)
        return 1
    if args.webhooks_command == "deliveries":
        for step in delivery_steps(config.streams, endpoint.endpoint_id, limit=args.limit):
            print(json.dumps(step, sort_keys=True))
        return 0
    from framelog.api.webhooks import parse_since

    with EventProducer(config.streams) as producer:
        since = parse_since(args.since)
        master = load_or_create_secret(config.security, config.stack.state_dir)
        summary = replay_endpoint(config.streams, config.webhooks, endpoint, since_ms=since, producer=producer,
                                  master=master).summary()
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["failed"] == 0 else 1


def add_webhooks_parser(sub: Any) -> None:
    p = sub.add_parser("webhooks", help="webhook endpoints: list, delivery steps, replay")
    wsub = p.add_subparsers(dest="webhooks_command", required=True)
    wsub.add_parser("list", help="every registered endpoint (never the secrets)").set_defaults(func=webhooks_command)
    d = wsub.add_parser("deliveries", help="an endpoint's latest delivery steps (attempt, status, latency, error)")
    d.add_argument("endpoint")
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(func=webhooks_command)
    r = wsub.add_parser("replay", help="send an endpoint's messages again (same webhook-ids), in event order")
    r.add_argument("endpoint")
    r.add_argument("--since", help="only events from then on (epoch seconds or ISO 8601)")
    r.set_defaults(func=webhooks_command)

