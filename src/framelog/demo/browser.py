"""A headless Debian chromium driven over pipes: demo/browser_driver.mjs (playwright-core).

Used by the browser integration tests and by ``framelog demo`` (one real viewer).

    with Browser() as b:
        b.goto(url)
        b.wait("window.framelogPlayer && window.framelogPlayer.ready", 30)
        b.screenshot(path, "#video")

Each call has a deadline; a browser that does not answer in time raises
BrowserError (with its console log) instead of hanging the caller.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]        # the repository: node_modules/ sits there
DRIVER = Path(__file__).resolve().with_name("browser_driver.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class BrowserError(AssertionError):
    """The browser cannot run, or did not do what was asked in time (an AssertionError so a test reads it as a
    failure, not an error of the test itself)."""


def missing_requirements() -> str | None:
    """Why the browser cannot run here, or None."""
    if not shutil.which("node"):
        return "node is not installed"
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        return "node_modules/playwright-core is missing (scripts/bootstrap.sh runs npm ci)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/bootstrap.sh installs Debian's chromium)"
    return None


class Browser:
    def __init__(self, start_timeout: float = 60.0):
        why = missing_requirements()
        if why:
            raise BrowserError(why)
        self.proc = subprocess.Popen(["node", str(DRIVER)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env=dict(os.environ, CHROMIUM=CHROMIUM))
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.answers), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()
        hello = self._answer(start_timeout, "start")
        self.version = hello.get("version")

    def _read(self, stream: Any, into: queue.Queue) -> None:
        for line in stream:
            into.put(line)
        into.put(None)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _answer(self, timeout: float, what: str) -> dict:
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"browser gave no answer to {what} within {timeout:g}s") from None
        if line is None:
            raise BrowserError(f"browser driver exited during {what}: {''.join(self.stderr)[-2000:]}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise BrowserError(f"{what}: {answer.get('error')}")
        return answer

    def call(self, op: str, timeout: float = 60.0, **args: Any) -> Any:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout, op).get("value")

    def goto(self, url: str) -> None:
        self.call("goto", url=url)

    def eval(self, expr: str) -> Any:
        return self.call("eval", expr=expr)

    def wait(self, expr: str, timeout: float) -> Any:
        """The value of ``expr`` once truthy; BrowserError (with the page's log) at the deadline."""
        try:
            return self.call("wait", timeout=timeout + 15, expr=expr, timeout_ms=int(timeout * 1000))
        except BrowserError as exc:
            raise BrowserError(f"{exc}\nwaiting for: {expr}\npage log:\n" + "\n".join(self.log()[-40:])) from None

    def throttle(self, download_bps: int = 0, upload_bps: int = 0, latency_ms: int = 0) -> None:
        self.call("throttle", download_bps=download_bps, upload_bps=upload_bps, latency_ms=latency_ms)

    def block(self, pattern: str) -> None:
        """Requests whose URL matches the glob ``pattern`` fail as if refused."""
        self.call("block", pattern=pattern)

    def delay(self, pattern: str, seconds: float) -> None:
        """Requests whose URL matches the glob ``pattern`` leave ``seconds`` late (a slow rendition or edge)."""
        self.call("delay", pattern=pattern, ms=int(seconds * 1000))

    def screenshot(self, path: Path, selector: str | None = None) -> Path:
        self.call("screenshot", path=str(path), selector=selector)
        return path

    def choose_files(self, selector: str, paths: list[Path]) -> None:
        """Put files in a file input, as a person choosing them would (large files are not copied)."""
        self.call("files", selector=selector, paths=[str(p) for p in paths])

    def log(self) -> list[str]:
        try:
            return self.call("log", timeout=10)
        except BrowserError:
            return []

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close", timeout=20)
            except (BrowserError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
