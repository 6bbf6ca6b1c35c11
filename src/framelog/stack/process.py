"""Shared helpers for the embedded stack: detached processes, pid files, health waits.

Every component of ``framelog stack`` is a detached background process
(``start_new_session=True``) with its output in ``<state>/<name>/<name>.log``
and its pid in ``<state>/<name>.pid``. A pid only counts as "ours" while the
process lives and its command line names our state directory, so a recycled
pid never passes for a running broker.

Waits poll a condition against a deadline; nothing sleeps to synchronise.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from framelog.core.config import Config
from framelog.core.errors import FramelogError

POLL_INTERVAL = 0.2
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 30
LOG_ROTATE_BYTES = 50 * 2**20


class StackError(FramelogError):
    """A stack component failed: names the component, what failed and its log file."""

    def __init__(self, component: str, what: str, log_path: Path | None = None, tail_lines: int = LOG_TAIL_LINES):
        message = f"{component}: {what}"
        if log_path is not None:
            message += f"\n  log file: {log_path}"
            lines = tail(log_path, tail_lines)
            if lines:
                message += f"\n  last {len(lines)} lines of the log:\n" + "\n".join(f"    | {line}" for line in lines)
        super().__init__(message)
        self.component = component
        self.what = what
        self.log_path = log_path


# ---------------------------------------------------------------- small helpers

def tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``n`` lines of a text file ([] if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-n:]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _reap(pid: int) -> None:
    """Collect a dead child of this process, if it is one (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True while ``pid`` runs (zombies count as dead) and, given ``marker``, its command line contains it."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2:].startswith("Z"):
            # A zombie leader with other threads still exiting still holds its sockets
            # and files; the process is gone once only the leader's task is left.
            return len(os.listdir(f"/proc/{pid}/task")) > 1
        if marker is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            # An empty cmdline is transient (mid-exec: the java launcher re-execs itself): still alive.
            return not cmdline.strip() or marker in cmdline
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # it exists (kill 0 succeeded) but /proc is unreadable: do not call it dead
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def send_signal(pid: int, sig: int) -> None:
    """Signal the process group we created (start_new_session) or just the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def rotate_log(path: Path, max_bytes: int = LOG_ROTATE_BYTES) -> None:
    """Keep one previous log (``.1``) once the log grows past ``max_bytes``."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- component base

class Component:
    """One detached process of the stack. Subclasses give the command and the health check."""

    name: str = "component"

    def __init__(self, config: Config):
        self.config = config
        self.host = config.stack.host
        self.state_dir = config.stack.state_dir
        self.dir = self.state_dir / self.name
        self.log_path = self.dir / f"{self.name}.log"
        self.pid_path = self.state_dir / f"{self.name}.pid"
        self.startup_timeout = config.stack.startup_timeout
        self._proc: subprocess.Popen | None = None
        self.last_start_seconds: float | None = None

    # --- to override
    @property
    def address(self) -> str:
        raise NotImplementedError

    def ports(self) -> list[tuple[str, int]]:
        """(label, port) of every port the process binds, checked free before starting."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Work before spawning (fetch binaries, write config files, format storage)."""

    def check_health(self) -> None:
        """Raise (any exception, with a useful message) unless the component answers."""
        raise NotImplementedError

    def after_healthy(self) -> None:
        """Work once healthy (create buckets, ...)."""

    def env(self) -> dict[str, str] | None:
        return None

    @property
    def marker(self) -> str:
        """A string the process's command line contains: our own state directory."""
        return str(self.dir)

    # --- state
    def pid(self) -> int | None:
        """The pid of our running process, or None."""
        pid = read_pid(self.pid_path)
        if self._proc is not None and pid == self._proc.pid:
            # our own child: its Popen knows for sure (and reaps it, keeping the exit code)
            return pid if self._proc.poll() is None else None
        if pid is not None and pid_alive(pid, self.marker):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_healthy(self) -> bool:
        try:
            self.check_health()
            return True
        except Exception:
            return False

    def _exit_description(self) -> str:
        if self._proc is not None and self._proc.poll() is not None:
            return f"the process exited with code {self._proc.returncode}"
        return "the process is no longer running"

    # --- lifecycle
    def launch(self) -> bool:
        """Spawn the process unless ours already runs. True if it was spawned now."""
        if self.is_running():
            return False
        remove_file(self.pid_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        busy = [(label, port) for label, port in self.ports() if port_open(self.host, port)]
        if busy:
            what = ", ".join(f"{label} port {port}" for label, port in busy)
            raise StackError(self.name, f"cannot start: {what} on {self.host} already in use by another process "
                                        f"(not this stack's, state dir {self.state_dir})", self.log_path)
        self.prepare()
        rotate_log(self.log_path)
        argv = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== framelog stack: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, env=self.env())
            except OSError as exc:
                raise StackError(self.name, f"cannot run {argv[0]}: {exc}", self.log_path) from exc
        write_pid(self.pid_path, self._proc.pid)
        self._launched_at = time.monotonic()
        return True

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Poll the health check until it passes; StackError on deadline or if the process dies."""
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            if not self.is_running():
                raise StackError(self.name, f"not running: {self._exit_description()} before becoming healthy"
                                            + (f" (last check: {last_error})" if last_error else ""), self.log_path)
            try:
                self.check_health()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last_error = exc
            if time.monotonic() >= deadline:
                raise StackError(self.name, f"did not become healthy within {timeout:.0f}s "
                                            f"(address {self.address}; last check: {last_error})", self.log_path)
            time.sleep(POLL_INTERVAL)

    def finish_start(self, launched: bool, timeout: float | None = None) -> str:
        """Wait for health after ``launch``; stops a process we launched that never got healthy."""
        try:
            self.wait_healthy(timeout)
            self.after_healthy()
        except StackError:
            if launched:
                self.stop()
            raise
        except Exception as exc:
            if launched:
                self.stop()
            raise StackError(self.name, f"setup after start failed: {exc}", self.log_path) from exc
        if launched:
            self.last_start_seconds = time.monotonic() - self._launched_at
            return f"started in {self.last_start_seconds:.1f}s"
        return "already running"

    def start(self, timeout: float | None = None) -> str:
        """Start (or reuse) the component and wait until it is healthy. Returns what happened."""
        return self.finish_start(self.launch(), timeout)

    def request_stop(self, sig: int = signal.SIGTERM) -> int | None:
        pid = self.pid()
        if pid is None:
            remove_file(self.pid_path)
            return None
        send_signal(pid, sig)
        return pid

    def wait_stopped(self, pid: int, timeout: float) -> bool:
        return wait_until(lambda: not pid_alive(pid), timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> str:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns what happened."""
        pid = self.request_stop(signal.SIGTERM)
        if pid is None:
            return "not running"
        return self._finish_stop(pid, timeout)

    def _finish_stop(self, pid: int, timeout: float) -> str:
        """Wait up to ``timeout`` for ``pid`` (already sent SIGTERM) to exit, else kill it."""
        if not self.wait_stopped(pid, timeout):
            return self.force_stop(pid, f"did not stop within {timeout:.0f}s of SIGTERM")
        self._forget()
        return "stopped"

    def force_stop(self, pid: int, why: str, timeout: float = 10.0) -> str:
        """SIGKILL ``pid`` and wait until it is dead; ``why`` goes into the outcome."""
        send_signal(pid, signal.SIGKILL)
        if not self.wait_stopped(pid, timeout):
            raise StackError(self.name, f"pid {pid} survived SIGKILL", self.log_path)
        self._forget()
        return f"killed ({why})"

    def kill9(self, timeout: float = 10.0) -> str:
        """SIGKILL the process (a crash, for recovery tests) and wait until it is dead."""
        pid = self.pid()
        if pid is None:
            remove_file(self.pid_path)
            return "not running"
        self.force_stop(pid, "kill -9", timeout)
        return "killed"

    def _forget(self) -> None:
        """The process is gone: reap it if it is our child, drop its pid file."""
        self._reap_own()
        remove_file(self.pid_path)

    def _reap_own(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=0)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
            self._proc = None

    def status(self) -> dict:
        pid = self.pid()
        healthy = pid is not None and self.is_healthy()
        return {
            "name": self.name,
            "state": ("running" if healthy else "unhealthy") if pid is not None else "stopped",
            "running": pid is not None,
            "healthy": healthy,
            "pid": pid,
            "address": self.address,
            "log": str(self.log_path),
        }


def run_checked(component: str, argv: Sequence[str], log_path: Path, timeout: float, what: str,
                cwd: Path | None = None) -> None:
    """Run a helper command to completion, appending its output to ``log_path``; StackError on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== framelog stack: {what}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except FileNotFoundError as exc:
            raise StackError(component, f"{what}: {argv[0]} not found ({exc})", log_path) from exc
        except subprocess.TimeoutExpired as exc:
            raise StackError(component, f"{what}: did not finish within {timeout:.0f}s", log_path) from exc
    if proc.returncode != 0:
        raise StackError(component, f"{what}: exit code {proc.returncode}", log_path)
