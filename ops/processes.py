"""Child processes: each in its own session, its output in a log file or prefixed onto our stdout, stopped by its
own pid (SIGTERM, then SIGKILL), and a group that stops everything it started, newest first."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 10.0
TAIL_LINES = 25


class ChildDied(Exception):
    """A child exited while we still needed it."""

    def __init__(self, name: str, pid: int, returncode: int, tail: str) -> None:
        super().__init__(f"{name} (pid {pid}) exited with code {returncode}")
        self.name, self.pid, self.returncode, self.tail = name, pid, returncode, tail


class Console:
    """Our stdout, shared by our own notes and the children's prefixed lines. One lock, so lines from several
    reader threads never interleave mid-line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        """A line of our own, tagged with our name: `[up] started worker (pid 42)`."""
        self.say(f"[{self.name}] {text}")


@dataclass(eq=False)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path | None
    """Where its output goes; None when it is prefixed onto `console`."""
    console: Console | None = None
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    """Its last lines when they go to the console (a log file is read back instead)."""
    reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        name: str,
        command: list[str],
        *,
        output: Path | Console,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """Start `command`. `output` is a log file (appended to) or the console (each line prefixed with the name).

        The child gets its own session, so a Ctrl-C on the terminal reaches only us and we stop it in order.
        """
        console = output if isinstance(output, Console) else None
        log = output if isinstance(output, Path) else None
        with contextlib.ExitStack() as stack:
            stdout = subprocess.PIPE if log is None else stack.enter_context(log.open("ab"))
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = cls(name, process, log=log, console=console)
        if console is not None:
            child.reader = threading.Thread(target=child._pump, name=f"{name}-output", daemon=True)
            child.reader.start()
            console.note(f"started {name} (pid {process.pid})")
        return child

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        stream = self.process.stdout
        if stream is None or self.console is None:
            return
        prefix = f"{self.name:<10}| "
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.recent.append(line)
            self.console.say(prefix + line)

    def check(self) -> None:
        """Raise `ChildDied` if it has exited."""
        code = self.process.poll()
        if code is not None:
            raise ChildDied(self.name, self.pid, code, self.tail())

    def tail(self, lines: int = TAIL_LINES) -> str:
        if self.log is None:
            text = list(self.recent.copy())[-lines:]  # copy: atomic while the reader thread appends
        else:
            try:
                text = self.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                return f"  ({self.log} unreadable)"
        return "\n".join(f"  {self.name}| {line}" for line in text)

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM by its own pid; SIGKILL if it is still alive after `timeout_s`; then any process it started."""
        process = self.process
        if process.poll() is None:
            descendants = _descendants(process.pid)
            self._note(f"stopping {self.name} (pid {process.pid})")
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._note(f"{self.name} ignored SIGTERM for {timeout_s:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
            _kill_survivors(descendants)
        if self.reader is not None:
            self.reader.join(timeout=2.0)

    def _note(self, text: str) -> None:
        if self.console is not None:
            self.console.note(text)


def _descendants(pid: int) -> list[Any]:
    """The processes `pid` started, noted before it stops so that none outlives it.

    psutil is a dev dependency (the bench and the tests); without it — Kintsugi installed to run — none are
    tracked, and none exist: the dev server, the worker and uvicorn start no processes of their own.
    """
    try:
        import psutil
    except ImportError:
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_survivors(descendants: list[Any]) -> None:
    import psutil  # only reached with a non-empty list, which only psutil makes

    for descendant in descendants:
        # By pid, and only while it is still the process we noted (`is_running` compares its start time).
        with contextlib.suppress(psutil.Error):
            if descendant.is_running():
                descendant.kill()


@dataclass
class ProcessGroup:
    """Everything one owner started. `stop_all` stops it newest first: the API before the worker before the dev
    server, so nothing loses what it depends on while it is still serving.

    With `log_dir`, each child's output goes to `<log_dir>/<name>-<n>.log`; otherwise onto `console`.
    """

    log_dir: Path | None = None
    console: Console | None = None
    cwd: Path | None = None
    children: list[Child] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if (self.log_dir is None) == (self.console is None):
            raise ValueError("a ProcessGroup writes its children's output to a log_dir or a console: name one")

    def start(self, name: str, command: list[str], *, env: dict[str, str] | None = None) -> Child:
        child = Child.start(name, command, output=self._output(name), env=env, cwd=self.cwd)
        self.children.append(child)
        return child

    def _output(self, name: str) -> Path | Console:
        if self.log_dir is not None:
            return self.log_dir / f"{name}-{next(self._numbers)}.log"
        if self.console is not None:
            return self.console
        raise ValueError("a ProcessGroup needs a log_dir or a console")

    def check(self) -> None:
        """Raise `ChildDied` if any child has exited."""
        for child in self.children:
            child.check()

    def stop(self, child: Child) -> None:
        if child in self.children:
            self.children.remove(child)
        child.stop()

    def stop_all(self) -> None:
        while self.children:
            self.stop(self.children[-1])

    def pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children}

    def tails(self) -> str:
        return "\n".join(child.tail() for child in self.children)
