"""The `framelog` command: one entry point for operators, analysts and the demo.

Each subcommand is a thin shell over a module that does the work, so the
command line never holds logic worth testing on its own.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from framelog.core.config import Config, get_config
from framelog.core.errors import FramelogError


def _stack(args: argparse.Namespace, config: Config) -> int:
    from framelog.stack import cli as stack_cli

    if args.action == "down":                  # framelog's own processes first, then the stack
        from framelog.stack.services import ApiService, SinkService, WorkerService
        for service in (WorkerService(config), ApiService(config), SinkService(config)):
            if service.is_running():
                print(f"{service.name:<10} {service.stop()}")
    if args.action == "up":
        return stack_cli.stack_up(config, brokers=args.brokers)
    action: Callable[[Config], int] = {"down": stack_cli.stack_down, "status": stack_cli.stack_status}[args.action]
    return action(config)


def _healthcheck(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops.healthcheck import run_healthcheck

    return run_healthcheck(config, args.kind, stage=args.stage, provider=args.provider, port=args.port,
                           timeout=args.timeout)


def _services(args: argparse.Namespace, config: Config) -> int:
    from framelog.stack.services import ApiService, SinkService, WorkerService

    for service in (WorkerService(config), ApiService(config), SinkService(config)):
        if args.action == "stop":
            print(f"{service.name:<10} {service.stop() if service.is_running() else 'not running'}")
        else:
            print(f"{service.name:<10} {'running' if service.is_running() else 'stopped'}; log {service.log_path}")
    return 0


def _topics(args: argparse.Namespace, config: Config) -> int:
    from framelog.streams.acls import apply_acls
    from framelog.streams.admin import create_topics

    if args.action == "create":
        summary = create_topics(config.streams)
        for line in summary.lines() if hasattr(summary, "lines") else [str(summary)]:
            print(line)
    print(apply_acls(config.streams))        # topics create also (re)applies every principal's ACLs
    return 0


def _init(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops.provision import initialise

    for line in initialise(config, timeout=args.timeout).lines():
        print(line)
    return 0


def _worker(args: argparse.Namespace, config: Config) -> int:
    from framelog.pipeline.worker import run_worker

    return run_worker(config, stages=args.stage or None)


def _api_url(args: argparse.Namespace, config: Config) -> str:
    return args.api or f"http://{config.stack.host}:{config.stack.api_port}"


def _upload(args: argparse.Namespace, config: Config) -> int:
    from framelog_client.upload import UploadError, upload_resumable_outcome

    api = _api_url(args, config)
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = int(done * 100 / total) if total else 100
        if not args.quiet and percent != shown[0]:
            shown[0] = percent
            print(f"\ruploading {args.file}: {percent:3d}% ({done}/{total} bytes)", end="", file=sys.stderr,
                  flush=True)

    from framelog.clients.credentials import local_token
    from framelog.processors.identity import VIDEOS_WRITE

    token = local_token(config.auth, config.stack.state_dir, args.owner, [VIDEOS_WRITE],
                        [args.workspace] if args.workspace else [])
    try:
        outcome = upload_resumable_outcome(api, args.file, token=token, chunk_size=args.chunk_mib * 2**20,
                                           progress=progress, visibility=args.visibility, workspace=args.workspace,
                                           priority=args.priority)
    except UploadError as exc:
        print("", file=sys.stderr)
        raise FramelogError(f"upload via {api} failed: {exc}") from exc
    except OSError as exc:
        raise FramelogError(f"cannot read {args.file}: {exc}") from exc
    if not args.quiet:
        print(f"\nuploaded {args.file}: {outcome.size_bytes} bytes, sha256 {outcome.sha256}", file=sys.stderr)
    print(outcome.video_id, flush=True)
    if args.wait:
        return _follow(api, outcome.video_id, token, config, quiet=args.quiet)
    return 0


def _follow(api: str, video_id: str, token: str, config: Config, quiet: bool = False) -> int:
    from framelog.cli.live import follow, print_final
    from framelog.clients.credentials import bearer

    try:
        view = follow(api, video_id, bearer(token), stage_names=config.pipeline.stage_names, quiet=quiet)
    except RuntimeError as exc:
        raise FramelogError(str(exc)) from exc
    return print_final(view)


def _api(args: argparse.Namespace, config: Config) -> int:
    """The public API and, in a thread beside it, the operator listener (/metrics, /docs)."""
    import threading

    import uvicorn

    from framelog.api.app import create_app, create_ops_app

    app = create_app(config)
    port = args.port or config.stack.api_port
    ops_port = args.ops_port or port + config.auth.ops_port_offset
    ops = uvicorn.Server(uvicorn.Config(create_ops_app(app), host=config.auth.ops_host, port=ops_port,
                                        log_level=args.log_level, lifespan="off"))
    threading.Thread(target=ops.run, name="ops-listener", daemon=True).start()
    uvicorn.run(app, host=args.host or config.stack.host, port=port, log_level=args.log_level,
                limit_concurrency=config.api_protection.max_concurrent_requests)
    ops.should_exit = True
    return 0


def _status(args: argparse.Namespace, config: Config) -> int:
    import json

    from framelog.core.ids import validate_video_id

    video_id = validate_video_id(args.video_id)
    if args.follow:
        from framelog.clients.credentials import local_token
        from framelog.processors.identity import OPS

        token = local_token(config.auth, config.stack.state_dir, "framelog-cli", [OPS])
        return _follow(_api_url(args, config), video_id, token, config)
    if args.api:
        import httpx

        from framelog.clients.credentials import bearer, local_token
        from framelog.processors.identity import OPS

        r = httpx.get(f"{args.api.rstrip('/')}/videos/{video_id}", timeout=args.timeout + 5,
                      headers=bearer(local_token(config.auth, config.stack.state_dir, "framelog-cli", [OPS])))
        if r.status_code == 404:
            print(f"framelog: unknown video {video_id}", file=sys.stderr)
            return 1
        r.raise_for_status()
        view = r.json()
    else:
        from framelog.views.status import read_status

        try:
            view = read_status(config.streams, config.pipeline.stage_names, video_id, timeout=args.timeout)
        except TimeoutError as exc:
            raise FramelogError(str(exc)) from exc
        if view is None:
            from framelog.sinks.object_store import ObjectStore
            from framelog.sinks.upload_sessions import UploadService, UploadSettings

            store = ObjectStore(config.object_storage, config.stack.state_dir)
            settings = UploadSettings(config.upload_limits, config.streams, config.priorities)
            view = UploadService(settings, store, producer=lambda: None).status_view(video_id)
        if view is None:
            print(f"framelog: unknown video {video_id} (no upload, no stage transitions)", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return 0
    print(f"video {view['video_id']}: {view['state']}"
          + (f", stage {view['current_stage']}" if view.get("current_stage") else "")
          + f", {view.get('progress', 0) * 100:.0f}% done")
    for name, st in view.get("stages", {}).items():
        line = f"  {name:<22} {st['state']:<10} attempt {st['attempt']}  {st['progress'] * 100:5.1f}%"
        if st.get("duration_ms") is not None:
            line += f"  {st['duration_ms'] / 1000:.1f}s"
        if st.get("error_type") or st.get("error_message"):
            line += f"  error {st.get('error_type')}: {st.get('error_message')}"
        print(line)
    if view.get("error"):
        e = view["error"]
        print(f"failed in {e['stage']}: {e.get('error_type')}: {e.get('error_message')}")
    return 0


def _tail(args: argparse.Namespace, config: Config) -> int:
    from framelog.ops.tail import tail_topic

    return tail_topic(config.streams, args.topic, from_beginning=args.from_beginning, limit=args.limit,
                      timeout=args.timeout, video_id=args.video)


def _sql(args: argparse.Namespace, config: Config) -> int:
    from framelog.clients.sql import SqlClientSettings, parse_params, run_sql
    from framelog.sinks.clickhouse.client import connect_readonly

    settings = SqlClientSettings(dsn=config.clickhouse_dsn,
                                 api_url=f"http://{config.stack.host}:{config.stack.api_port}/v1/sql",
                                 auth=config.auth, state_dir=config.stack.state_dir, analyst_sql=config.analyst_sql)
    return run_sql(settings, args.statement,
                   connect_readonly=lambda: connect_readonly(config.clickhouse_dsn, config.clickhouse.database,
                                                             config.analyst_sql),
                   max_rows=args.max_rows, fmt="json" if args.json else args.format,
                   parameters=parse_params(args.param))


def _sink(args: argparse.Namespace, config: Config) -> int:
    from framelog.sinks.clickhouse.runner import AnalyticsSinkSettings, metrics_port, run_sink

    settings = AnalyticsSinkSettings(config.clickhouse_dsn, config.clickhouse.database, config.analytics,
                                     config.hls.quality_levels, config.streams)
    return run_sink(settings, metrics_host=config.stack.metrics_host,
                    metrics_port=metrics_port(config.stack, config.pipeline), group_id=args.group)


def _demo(args: argparse.Namespace, config: Config) -> int:
    from framelog.demo.run import run_demo

    return run_demo(config)


def _token_mint(args: argparse.Namespace, config: Config) -> int:
    from framelog.processors.identity import Keyring, mint_token, parse_scopes

    try:
        scopes = parse_scopes(" ".join(args.scope)) if args.scope else None
        print(mint_token(config.auth, Keyring(config.auth, config.stack.state_dir),
                         args.sub, workspaces=args.workspace or (), scopes=scopes,
                         ttl=args.ttl))
    except ValueError as exc:
        raise FramelogError(str(exc)) from exc
    return 0


def _viewer_token(args: argparse.Namespace, config: Config) -> int:
    args.sub, args.scope = args.user, None
    return _token_mint(args, config)


def _keys(args: argparse.Namespace, config: Config) -> int:
    import time

    from framelog.processors.identity import Keyring

    keyring = Keyring(config.auth, config.stack.state_dir)
    if args.keys_command == "rotate":
        key = keyring.rotate()
        print(f"{key.kid}  new signing key; older keys verify until `framelog keys retire KID`")
    elif args.keys_command == "retire":
        key = keyring.retire(args.kid)
        print(f"{key.kid}  retired: tokens it signed are refused from now on")
    current = keyring.current().kid
    for key in keyring.keys():
        state = "retired " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.retired)) if key.retired \
            else ("signing" if key.kid == current else "verifying")
        print(f"  {key.kid}  created {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(key.created))}  {state}")
    print(f"keyring: {keyring.path if not config.auth.keyring_json else 'FRAMELOG_KEYRING'}")
    return 0


def _tiering_simulate(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from framelog.ops.tiering_simulator import print_summary, simulate, write_report

    result = simulate(config.pipeline, config.tiering, videos=args.videos, days=args.days, seed=args.seed)
    print_summary(result, sys.stdout)
    if args.out:
        write_report(result, Path(args.out))
        print(f"wrote {args.out}")
    return 0


def _edge(args: argparse.Namespace, config: Config) -> int:
    from framelog.stack.edge_serve import serve

    serve(config, None if args.shield else args.provider, listen_host=args.listen)


def _config(args: argparse.Namespace, config: Config) -> int:
    print(f"configuration {config.source} is valid")
    print(f"state dir {config.stack.state_dir}; kafka {config.kafka.bootstrap_servers}; "
          f"s3 {config.object_storage.endpoint_url}; clickhouse {config.clickhouse_dsn}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from framelog import __version__

    parser = argparse.ArgumentParser(prog="framelog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"framelog {__version__}")
    parser.add_argument("--config", help="path to a framelog.yaml (default: FRAMELOG_CONFIG or the packaged one)")
    parser.add_argument("--state-dir", help="the local stack's state directory (default: FRAMELOG_STATE_DIR or "
                                            "stack.state_dir of the configuration)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the embedded local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--brokers", type=int, choices=range(1, 10), metavar="N",
                   help="up: Kafka nodes (KRaft broker+controller each) for a fresh state dir; default: the "
                        "state dir's, else kafka.brokers. With 3, topics get replication 3 and min ISR 2")
    p.set_defaults(func=_stack)

    p = sub.add_parser("services", help="framelog's own background processes (api, worker; the sink when the fault "
                                         "suite runs it apart)")
    p.add_argument("action", choices=["status", "stop"])
    p.set_defaults(func=_services)

    p = sub.add_parser("topics", help="manage Kafka topics")
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=_topics)

    p = sub.add_parser("acls", help="apply every Kafka principal's ACLs (streams/acls.py), idempotently")
    p.add_argument("action", choices=["apply"])
    p.set_defaults(func=_topics)

    p = sub.add_parser("healthcheck", help="exit 0 when this host's framelog process of KIND answers (compose "
                                           "healthchecks): api, worker --stage S, sink, edge --provider P, shield")
    p.add_argument("kind", choices=["api", "worker", "sink", "edge", "shield"])
    p.add_argument("--stage", help="worker: its group (framelog worker --stage)")
    p.add_argument("--provider", help="edge: its cdn_strategy provider")
    p.add_argument("--port", type=int, help="the port it listens on, when not the configured one (api --port)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=_healthcheck)

    p = sub.add_parser("init", help="create the topics, the bucket and the ClickHouse tables (idempotent; "
                                    "the compose one-shot every service waits for)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for Kafka, S3 and ClickHouse")
    p.set_defaults(func=_init)

    p = sub.add_parser("worker", help="run the Faust worker (pipeline agents)")
    p.add_argument("--stage", action="append", help="only these stages' agents (repeatable); default all")
    p.set_defaults(func=_worker)

    p = sub.add_parser("upload", help="upload a video file through the API (resumable); prints the video id")
    p.add_argument("file")
    p.add_argument("--owner", default="local-user",
                   help="whose upload (the token's sub; FRAMELOG_TOKEN, if set, decides instead)")
    p.add_argument("--visibility", choices=("public", "private", "share_link"),
                   help="who may watch (default: security.default_visibility)")
    p.add_argument("--workspace", help="the workspace whose members may watch")
    p.add_argument("--priority", help="processing priority, one of processing_priorities.levels "
                                      "(default: the workspace's, else processing_priorities.default)")
    p.add_argument("--api", help="API base URL (default http://<stack.host>:<stack.api_port>)")
    p.add_argument("--chunk-mib", type=int, default=64, help="bytes per PATCH in MiB (any size; each is checksummed)")
    p.add_argument("--quiet", action="store_true", help="print only the video id")
    p.add_argument("--wait", action="store_true", help="then show its progress per stage until ready or failed")
    p.set_defaults(func=_upload)

    p = sub.add_parser("api", help="run the HTTP API (uvicorn) on stack.host:stack.api_port")
    p.add_argument("--host", help="bind address (default stack.host)")
    p.add_argument("--port", type=int, help="port (default stack.api_port)")
    p.add_argument("--ops-port", type=int, help="operator listener port (default: --port + auth.ops_port_offset)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_api)

    p = sub.add_parser("status", help="a video's processing status, from the stage-transition log")
    p.add_argument("video_id")
    p.add_argument("--api", help="ask this API (base URL) instead of replaying the log directly")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the replay to catch up")
    p.add_argument("--json", action="store_true", help="print the JSON the API answers")
    p.add_argument("--follow", action="store_true",
                   help="progress per stage, live from the API's event stream, until ready or failed")
    p.set_defaults(func=_status)

    p = sub.add_parser("events", help="inspect events on the log")
    esub = p.add_subparsers(dest="events_command", required=True)
    t = esub.add_parser("tail", help="print decoded events of a topic")
    t.add_argument("topic")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--limit", type=int, default=0, help="stop after this many events (0: no limit)")
    t.add_argument("--timeout", type=float, default=0, help="stop after this many idle seconds (0: never)")
    t.add_argument("--video", help="only events of this video id")
    t.set_defaults(func=_tail)

    p = sub.add_parser("sql", help="run one read-only SQL statement against the analytics engine")
    p.add_argument("statement")
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--json", action="store_true", help="alias of --format json")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind {NAME:Type} in the statement, server-side (repeatable)")
    p.set_defaults(func=_sql)

    p = sub.add_parser("sink", help="run a sink in the foreground")
    p.add_argument("name", choices=["analytics"])
    p.add_argument("--group", default="framelog-analytics-sink",
                   help="consumer group id (the sink's Kafka principal may join framelog-analytics-sink*)")
    p.set_defaults(func=_sink)

    p = sub.add_parser("demo", help="run the main job end to end on the local stack")
    p.set_defaults(func=_demo)

    p = sub.add_parser("token", help="API tokens (JWTs signed with the local keyring)")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("mint", help="sign a token: Authorization: Bearer <token>")
    t.add_argument("--sub", required=True, help="the user (or service) id")
    t.add_argument("--workspace", action="append", help="a workspace it belongs to (repeatable)")
    t.add_argument("--scope", action="append",
                   help="videos:write, analytics:read, events:write, ops (repeatable; default videos:write; "
                        "--scope '' mints a viewer's token: identity only)")
    t.add_argument("--ttl", type=float, help="lifetime in seconds (default: auth.token_ttl)")
    t.set_defaults(func=_token_mint)

    p = sub.add_parser("viewer-token", help="alias of `token mint --sub USER` (default scopes)")
    p.add_argument("user", help="the user id")
    p.add_argument("--workspace", action="append", help="a workspace the user belongs to (repeatable)")
    p.add_argument("--ttl", type=float, help="lifetime in seconds (default: auth.token_ttl)")
    p.set_defaults(func=_viewer_token)

    p = sub.add_parser("keys", help="the keyring that signs API tokens (public keys: GET /.well-known/jwks.json)")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    ksub.add_parser("list", help="every key and whether it signs, verifies or is retired").set_defaults(func=_keys)
    ksub.add_parser("rotate", help="add a new signing key (older keys keep verifying)").set_defaults(func=_keys)
    t = ksub.add_parser("retire", help="stop accepting tokens signed with KID")
    t.add_argument("kid")
    t.set_defaults(func=_keys)

    p = sub.add_parser("tiering", help="storage tiering tools")
    tsub = p.add_subparsers(dest="tiering_command", required=True)
    t = tsub.add_parser("simulate", help="a synthetic catalogue through the tier rules: monthly cost by tier "
                                         "against everything hot and against age-only rules")
    t.add_argument("--days", type=int, default=400)
    t.add_argument("--videos", type=int, default=1000)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--out", help="also write the figures as Markdown here (e.g. bench/results/tiering.md)")
    t.set_defaults(func=_tiering_simulate)

    p = sub.add_parser("edge", help="CDN edges")
    esub = p.add_subparsers(dest="edge_command", required=True)
    t = esub.add_parser("serve", help="run one edge's nginx in the foreground (containers; locally `stack up` does it)")
    which = t.add_mutually_exclusive_group(required=True)
    which.add_argument("--provider", help="a cdn_strategy provider key, e.g. primary_cdn")
    which.add_argument("--shield", action="store_true", help="the origin shield between the edges and S3")
    t.add_argument("--listen", help="bind address (default stack.host; 0.0.0.0 in a container)")
    t.set_defaults(func=_edge)

    p = sub.add_parser("config", help="validate and summarise the configuration")
    p.set_defaults(func=_config)

    from framelog.cli import live as live_cli
    from framelog.cli import ops as ops_cli
    ops_cli.add_parsers(sub)
    live_cli.add_webhooks_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import os
        if args.config:
            os.environ["FRAMELOG_CONFIG"] = args.config
        if args.state_dir:
            os.environ["FRAMELOG_STATE_DIR"] = args.state_dir
        config = get_config()
        return args.func(args, config)
    except FramelogError as exc:
        print(f"framelog: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
