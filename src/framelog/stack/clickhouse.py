"""The ClickHouse part of the stack: no server locally, the engine is embedded through chdb.

``clickhouse.dsn`` empty means ``chdb:///<state_dir>/clickhouse``. chdb lets one
process at a time open a data path (it holds an flock on ``<path>/status``),
and the sink process owns it. So ``stack up`` only creates the directory and
checks once, in a short-lived subprocess (never in the caller's process, which
may open chdb itself later), that the engine answers ``SELECT 1``. If another
process already holds the path, that process is reported instead.
With an ``http(s)://`` DSN the server is external: ``up`` checks it answers.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from framelog.core.config import Config
from framelog.stack.process import StackError

CHECK_SCRIPT = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
try:
    print(client.command("SELECT 1"))
finally:
    client.close()
"""


def flock_owner(path: Path) -> int | None:
    """The pid holding an flock on ``path`` (from /proc/locks), without touching the lock."""
    try:
        st = os.stat(path)
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in locks.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 7820 fe:00:9987167 0 EOF" (blocked waiters have "->")
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
        except ValueError:
            continue
        if int(inode) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
            return pid
    return None


class ClickHouse:
    name = "clickhouse"

    def __init__(self, config: Config):
        self.config = config
        self.dsn = config.clickhouse_dsn
        self.embedded = self.dsn.startswith("chdb://")
        self.path = Path(self.dsn[len("chdb://"):]) if self.embedded else None
        self.log_path = config.stack.state_dir / self.name / f"{self.name}-check.log"
        self.timeout = config.stack.startup_timeout

    @property
    def address(self) -> str:
        return self.dsn

    def owner_pid(self) -> int | None:
        """The process that has the chdb data path open, if any."""
        if self.path is None:
            return None
        return flock_owner(self.path / "status")

    def check(self) -> None:
        """``SELECT 1`` through clickhouse-connect in a subprocess; StackError on failure."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, self.dsn], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise StackError(self.name, f"SELECT 1 on {self.dsn} did not answer within {self.timeout:.0f}s") from exc
        self.log_path.write_text(f"$ SELECT 1 on {self.dsn}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0 or proc.stdout.strip() != "1":
            raise StackError(self.name, f"SELECT 1 on {self.dsn} failed", self.log_path)

    def up(self) -> str:
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            owner = self.owner_pid()
            if owner is not None:
                return f"in use by pid {owner} (chdb allows one process per path)"
        self.check()
        return "ready (embedded chdb, opened by the sink process)" if self.embedded else "server answers"

    def down(self) -> str:
        return "nothing to stop (embedded in its owning process)" if self.embedded else "external server, not managed"

    def status(self) -> dict:
        owner = self.owner_pid()
        if self.embedded:
            exists = self.path.is_dir()
            state = f"open by pid {owner}" if owner else ("ready" if exists else "not created")
        else:
            state = "external"
        return {"name": self.name, "state": state, "running": owner is not None, "healthy": None,
                "pid": owner, "address": self.dsn, "path": str(self.path) if self.path else None,
                "log": str(self.log_path)}
