"""A private stack for the test suite: its own state directory and ports, so tests never touch a user's data.

The test command (scripts/test.sh) writes an overlay with this module and points
FRAMELOG_CONFIG_OVERLAY at it. The overlay is derived from the configuration
itself: every ``*_port`` key and every loopback ``host:port`` in a URL moves by
one offset, so a port added to framelog.yaml later is moved too without anyone
remembering to list it here. A separate Kafka and SeaweedFS mean separate
topics, consumer groups and bucket; a separate state directory means a separate
ClickHouse engine, token secret and credentials.

    python -m framelog.stack.private_stack --offset 1100 --state-dir .state-test > overlay.yaml
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH

DEFAULT_OFFSET = 1100          # clear of the default stack and of the offsets helpers use (multiples of 97)
_LOOPBACK_PORT = re.compile(r"(?P<host>127\.0\.0\.1|localhost):(?P<port>\d{2,5})")


def _moved(value: Any, offset: int) -> Any:
    """``value`` with every loopback port in it moved by ``offset`` (strings), unchanged otherwise."""
    if isinstance(value, str):
        return _LOOPBACK_PORT.sub(lambda m: f"{m['host']}:{int(m['port']) + offset}", value)
    return value


def private_overlay(raw: Any, offset: int, state_dir: str) -> dict[str, Any]:
    """The overlay that moves every port of ``raw`` (the parsed framelog.yaml) and its state dir.

    Only the keys that change are in it, so the seed's numbers stay in one file.
    """
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("_port") and isinstance(value, int) and value > 0:
                    out[key] = value + offset
                elif isinstance(value, (dict, list)):
                    moved = walk(value)
                    if moved not in ({}, None):
                        out[key] = moved
                elif _moved(value, offset) != value:
                    out[key] = _moved(value, offset)
            return out
        if isinstance(node, list):
            # a list is replaced whole by an overlay: keep it only if something in it moved
            moved_list = [_moved(v, offset) if not isinstance(v, (dict, list)) else v for v in node]
            return moved_list if moved_list != node else None
        return None

    overlay = walk(raw)
    overlay.setdefault("stack", {})["state_dir"] = state_dir
    return overlay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offset", type=int, default=DEFAULT_OFFSET, help="added to every port")
    parser.add_argument("--state-dir", required=True, help="the private stack's state directory")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="the configuration to derive from")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        raw = yaml.safe_load(f)
    yaml.safe_dump(private_overlay(raw, args.offset, args.state_dir), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def users_objects() -> dict[str, tuple[str, int, str]] | None:
    """Every object of the user's stack (the configuration without overlay): key → (ETag, size, class).

    None when that stack is the one in use (no overlay), its S3 gateway is not up, or its
    credentials are not the ones in its state dir here (a stack of another checkout: each state
    dir generates its own S3 keys, so there is nothing this suite could touch there either).
    """
    import os
    from pathlib import Path

    from framelog.core.config import build_config
    from framelog.sinks.s3 import s3_client
    from framelog.stack.process import port_open

    if not os.environ.get("FRAMELOG_CONFIG_OVERLAY"):
        return None
    from framelog.core.config import get_config

    source = Path(os.environ.get("FRAMELOG_CONFIG") or DEFAULT_CONFIG_PATH)
    users = build_config(yaml.safe_load(source.read_text()), source)
    if users.object_storage.endpoint_url == get_config().object_storage.endpoint_url:
        return None                     # the overlay moved other things, not the store: it is the user's stack
    if not port_open(users.stack.host, users.stack.seaweed_s3_port):
        return None
    from botocore.exceptions import ClientError

    from framelog.core.service_credentials import MissingCredentials

    try:
        client = s3_client(users.object_storage, users.stack.state_dir)
    except MissingCredentials:
        return None
    out: dict[str, tuple[str, int, str]] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=users.object_storage.bucket):
            for o in page.get("Contents", []):
                out[o["Key"]] = (o["ETag"], o["Size"], o.get("StorageClass", "STANDARD"))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            return None
        if code != "NoSuchBucket":
            raise
    return out
