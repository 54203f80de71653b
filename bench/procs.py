"""Child processes of the benchmark: started with their output in a log file, stopped by pid, CPU-metered."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

STOP_TIMEOUT_S = 10.0


class HarnessError(RuntimeError):
    """The benchmark itself broke (a child died, something never became ready)."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise HarnessError(f"{self.name} (pid {self.pid}) exited with code {code}\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"  ({self.log} unreadable)"
        return "\n".join(f"  {self.name}| {line}" for line in text)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live descendants since they started."""
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for process in tree:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total


@dataclass
class Children:
    """Everything the benchmark started; `stop_all` (or `stop`) ends them by pid, newest first."""

    log_dir: Path
    cwd: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        log = self.log_dir / f"{name}-{len(self.children)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on the terminal reaches the harness only, which stops us
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        if child in self.children:
            self.children.remove(child)
        _stop(child)

    def stop_all(self) -> None:
        while self.children:
            self.stop(self.children[-1])

    def tails(self) -> str:
        return "\n".join(child.tail() for child in self.children)


def _stop(child: Child) -> None:
    process = child.process
    if process.poll() is not None:
        return
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
    for descendant in descendants:  # by pid, and only if it is still the process we saw
        with contextlib.suppress(psutil.Error):
            if descendant.is_running():
                descendant.kill()


def wait_http_ok(url: str, child: Child, *, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        child.check()
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(0.2)
    raise HarnessError(f"{url} not ready after {timeout_s:.0f} s (last: {last})\n{child.tail()}")
