"""Child-process supervision for `kintsugi up`: start, prefix output, notice a death, stop in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

STOP_TIMEOUT_S = 10.0


class Stopped(Exception):
    """SIGINT or SIGTERM arrived while `up` was starting or running."""


class ChildDied(Exception):
    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with code {returncode}; stopping the others")
        self.name, self.returncode = name, returncode


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    reader: threading.Thread


@dataclass
class Supervisor:
    """Children run in their own sessions, so a terminal's Ctrl-C reaches only `up`, which then stops them
    in reverse start order (API, worker, dev server). Their output goes to our stdout, each line prefixed."""

    pids_file: Path | None = None
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _out_lock: threading.Lock = field(default_factory=threading.Lock)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def say(self, text: str) -> None:
        with self._out_lock:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._pump, args=(name, process), daemon=True)
        reader.start()
        child = Child(name, process, reader)
        self.children.append(child)
        self._write_pids()
        self.say(f"[up] started {name} (pid {process.pid})")
        return child

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        prefix = f"{name:<10}| "
        for raw in iter(process.stdout.readline, b""):
            self.say(prefix + raw.decode(errors="replace").rstrip("\n"))

    def _write_pids(self) -> None:
        if self.pids_file is not None:
            pids = {"up": os.getpid(), **{c.name: c.process.pid for c in self.children}}
            self.pids_file.write_text(json.dumps(pids))

    def check(self) -> None:
        """Raise `Stopped` on a signal, `ChildDied` when a child has exited."""
        if self.stopping.is_set():
            raise Stopped
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise ChildDied(child.name, code)

    def sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise Stopped
        self.check()

    def wait_forever(self) -> None:
        while True:
            self.sleep(0.2)

    def wait_http_ok(self, url: str, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            self.sleep(0.2)
        raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")

    def wait_temporal(self, address: str, namespace: str, task_queue: str | None, *, timeout_s: float) -> None:
        """Until a client connects (and, with `task_queue`, until a worker polls it)."""
        asyncio.run(self._wait_temporal(address, namespace, task_queue, timeout_s))

    async def _wait_temporal(self, address: str, namespace: str, task_queue: str | None, timeout_s: float) -> None:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
        from temporalio.client import Client

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check()
            try:
                client = await asyncio.wait_for(Client.connect(address, namespace=namespace), 2.0)
                if task_queue is None:
                    return
                request = DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
                response = await asyncio.wait_for(client.workflow_service.describe_task_queue(request), 2.0)
                if response.pollers:
                    return
                last = RuntimeError(f"no worker polls task queue {task_queue!r} yet")
            except Exception as err:  # not up yet: retry until the deadline
                last = err
            await asyncio.sleep(0.25)
        raise TimeoutError(f"Temporal at {address} not ready within {timeout_s:.0f} s: {last}")

    def stop_all(self) -> None:
        """SIGTERM each child by its pid, newest first; SIGKILL any still alive after 10 s."""
        for child in reversed(self.children):
            process = child.process
            if process.poll() is None:
                self.say(f"[up] stopping {child.name} (pid {process.pid})")
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.say(f"[up] {child.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    process.wait()
            child.reader.join(timeout=2.0)
        if self.pids_file is not None:
            self.pids_file.unlink(missing_ok=True)
