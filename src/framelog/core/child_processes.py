"""The child processes a job starts, each in its own process group, killable as a whole.

A stage timeout must not depend on the job's cooperation: an ffmpeg that stops
reading its input, or a child that ignores SIGTERM, never calls back, so the
runner kills what the job started instead of asking. Every child framelog
runs for a job goes through :func:`popen` in the job's thread; while the
runner's :func:`tracking` context is active there, the child is recorded in
that job's :class:`ChildGroup`. ``ChildGroup.kill`` sends SIGTERM to each
child's process group (grandchildren included), waits ``grace`` seconds, then
SIGKILL; once killed, the group refuses to start new children.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from framelog.core.errors import FramelogError

_POLL = 0.05
_local = threading.local()


class ChildrenKilled(FramelogError):
    """The job's children were killed (its stage timed out); it may start no more."""


class ChildGroup:
    """The live child processes of one job."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[Any]] = set()
        self.killed = False

    def add(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            if self.killed:         # started while the group was being killed: it goes too
                _signal_group(proc.pid, signal.SIGKILL)
                raise ChildrenKilled(f"{self.name}: its child processes were killed")
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def live(self) -> list[subprocess.Popen[Any]]:
        with self._lock:
            return [p for p in self._procs if p.poll() is None]

    def kill(self, grace: float) -> list[int]:
        """SIGTERM to every child's group, SIGKILL after ``grace`` s; the pids that were signalled."""
        with self._lock:
            self.killed = True
            procs = list(self._procs)
        pids = [p.pid for p in procs]
        for pid in pids:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids):
            time.sleep(_POLL)
        for pid in pids:            # the leader may be gone while its group (a grandchild) lives on
            _signal_group(pid, signal.SIGKILL)
        return pids


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@contextmanager
def tracking(group: ChildGroup) -> Iterator[ChildGroup]:
    """Record every :func:`popen` of this thread in ``group`` while the block runs."""
    previous = getattr(_local, "group", None)
    _local.group = group
    try:
        yield group
    finally:
        _local.group = previous


def popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a new process group, recorded in this thread's job (if any)."""
    group: ChildGroup | None = getattr(_local, "group", None)
    if group is not None and group.killed:
        raise ChildrenKilled(f"{group.name}: its child processes were killed")
    proc = subprocess.Popen(list(args), process_group=0, **kwargs)
    if group is not None:
        group.add(proc)
    return proc


def forget(proc: subprocess.Popen[Any]) -> None:
    """The child ended: stop tracking it (its pid may be reused)."""
    group: ChildGroup | None = getattr(_local, "group", None)
    if group is not None:
        group.discard(proc)


def run(args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(args, capture_output=True)`` through :func:`popen`."""
    proc = popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        forget(proc)
    return subprocess.CompletedProcess(list(args), proc.returncode, out, err)
