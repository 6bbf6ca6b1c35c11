"""Per-state-directory credentials for Kafka and S3: generated on first ``stack up``, never shipped.

``<state_dir>/credentials/`` (0700) holds two JSON files, each 0600:

* ``kafka.json``: ``{principal: password}`` for every SCRAM user of the broker (admin, api,
  sink, one per worker group, the broker itself) and the controller listener's PLAIN password.
* ``s3.json``: ``{identity: {"access_key", "secret_key"}}`` for the S3 gateway's identities.

Names missing from a file are added (a new pipeline stage gets its user on the next
``stack up``); existing ones are never changed. Writes are atomic (written aside, then
renamed) under an exclusive lock, so concurrent ``stack up`` runs agree on one file.
Services read the files through framelog.streams.kafka_auth and framelog.sinks.s3, or take
FRAMELOG_KAFKA_USERNAME/PASSWORD and FRAMELOG_S3_ACCESS_KEY/SECRET_KEY from the environment.
Every function takes the state dir (``config.stack.state_dir``), all it reads of the configuration.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from framelog.core.errors import FramelogError

DIR_NAME = "credentials"
KAFKA_FILE = "kafka.json"
S3_FILE = "s3.json"
PASSWORD_BYTES = 32
ACCESS_KEY_BYTES = 10


class MissingCredentials(FramelogError):
    """The state directory has no credentials for a principal: ``framelog stack up`` generates them."""


def credentials_dir(state_dir: Path) -> Path:
    return state_dir / DIR_NAME


def kafka_credentials_path(state_dir: Path) -> Path:
    return credentials_dir(state_dir) / KAFKA_FILE


def s3_credentials_path(state_dir: Path) -> Path:
    return credentials_dir(state_dir) / S3_FILE


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """The file's mapping, or {} if absent. Refuses a file others can read (someone loosened it)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return {}
    if mode & 0o077:
        raise FramelogError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise FramelogError(f"{path}: expected a JSON object")
    return data


def ensure_entries(path: Path, names: Iterable[str], make: Callable[[str], Any]) -> dict[str, Any]:
    """Load ``path``, add ``make(name)`` for every missing name, write back if anything was added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_json(path)
        missing = [n for n in names if n not in data]
        for name in missing:
            data[name] = make(name)
        if missing or not path.exists():
            write_private(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        return data


def new_password(_: str = "") -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def new_s3_keys(_: str = "") -> dict[str, str]:
    return {"access_key": "FL" + secrets.token_hex(ACCESS_KEY_BYTES).upper(),
            "secret_key": secrets.token_urlsafe(PASSWORD_BYTES)}


def ensure_kafka_passwords(state_dir: Path, names: Iterable[str]) -> dict[str, str]:
    return ensure_entries(kafka_credentials_path(state_dir), names, new_password)


def ensure_s3_identities(state_dir: Path, names: Iterable[str]) -> dict[str, dict[str, str]]:
    return ensure_entries(s3_credentials_path(state_dir), names, new_s3_keys)


def kafka_password(state_dir: Path, principal: str) -> str:
    password = read_json(kafka_credentials_path(state_dir)).get(principal)
    if not isinstance(password, str) or not password:
        raise MissingCredentials(f"no Kafka credentials for {principal!r} in {kafka_credentials_path(state_dir)}: "
                                 "run `framelog stack up` (it generates them) or set "
                                 "FRAMELOG_KAFKA_USERNAME/FRAMELOG_KAFKA_PASSWORD")
    return password


def s3_keys(state_dir: Path, identity: str) -> tuple[str, str]:
    entry = read_json(s3_credentials_path(state_dir)).get(identity)
    if not isinstance(entry, dict) or not entry.get("access_key") or not entry.get("secret_key"):
        raise MissingCredentials(f"no S3 credentials for identity {identity!r} in {s3_credentials_path(state_dir)}: "
                                 "run `framelog stack up` (it generates them) or set "
                                 "FRAMELOG_S3_ACCESS_KEY/FRAMELOG_S3_SECRET_KEY")
    return entry["access_key"], entry["secret_key"]
