"""The systems under load, each started as separate processes: the fake upstream, a fresh Temporal dev server,
the bare baseline (`bench.baseline`) and Kintsugi, each API + worker pair on one dev server and task queue, and
Temporal's floor (`bench.floor`), one API process that runs its own worker. LiteLLM's proxy, which needs none of
these, is in `bench.litellm`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.baseline import WORKFLOW_ID_HEADER as BENCH_ID_HEADER
from bench.ttft import STREAM_MODEL
from ops.devserver import DevServer, start_dev_server
from ops.processes import Child, ProcessGroup
from ops.waits import free_port, wait_http_ok

HOST = "127.0.0.1"
UPSTREAM_MODEL = "bench-model"
ADMIN_KEY = "bench-admin-key-0123456789"
KINTSUGI_ID_HEADER = "X-Kintsugi-Job-Id"
KINTSUGI_SYSTEMS: dict[str, str | None] = {
    "kintsugi": None,
    "kintsugi-activity": "activity",
    "kintsugi-cache": None,
    "kintsugi-exports": None,
    "kintsugi-traced": None,
}
"""The `call:` of the upstream provider per Kintsugi system: none (Kintsugi's default: the hot path), and
`activity` (the path for long calls, on the shared worker pool)."""
EXPORTING_SYSTEMS = frozenset({"kintsugi-exports", "kintsugi-traced"})
"""Systems run with every exporter configured against a local receiver (`bench.sinks`): the warehouse, Langfuse
and the OTLP trace export from the outbox, and the payload codec; `kintsugi-traced` adds live OpenTelemetry
tracing of every request, workflow, activity and upstream call."""
LIVE_TRACING_SYSTEMS = frozenset({"kintsugi-traced"})
BENCH_CODEC_KEY = "YmVuY2gtY29kZWMta2V5LTMyLWJ5dGVzLWxvbmchISE="
"""32 bytes, base64: the bench's payload codec key (a fixed one: nothing secret is benchmarked)."""
KINTSUGI_FLAGS: dict[str, dict[str, bool]] = {"kintsugi-cache": {"enable_response_cache": True}}
"""Flags a Kintsugi system turns on (globally, through `PUT /v1/flags`) before its load: `kintsugi-cache` answers
the bench's one repeated prompt from the response cache after its first call."""

ROUTES_TEMPLATE = """\
providers:
  upstream:
    kind: openai
    base_url: "{base_url}/v1"
    timeout_s: 30
    retry: {{max_attempts: 3}}
{call_line}routes:
  bench:
    - {{provider: upstream, model: {model}, price: {{input_per_mtok: 0.0, output_per_mtok: 0.0}}}}
  bench-stream:
    - {{provider: upstream, model: {stream_model}, price: {{input_per_mtok: 0.0, output_per_mtok: 0.0}}}}
"""


class HarnessError(RuntimeError):
    """The benchmark itself broke: a system never became ready or never answered a request."""


@dataclass
class Upstream:
    latency_ms: int
    child: Child
    url: str


@dataclass
class App:
    """One system's worker and API processes."""

    worker: Child | None
    """None when the API process runs the worker itself (the floor)."""
    api: Child
    url: str


@dataclass
class Target:
    """Where the load goes for one system at one upstream latency, and the processes to meter."""

    system: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    id_header: str | None = None
    meters: dict[str, Child] = field(default_factory=dict)


def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINTSUGI_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _uvicorn(app: str, port: int) -> list[str]:
    # Access logs off for both APIs: a log line per request would be measured as platform cost.
    return [sys.executable, "-m", "uvicorn", app, "--factory", "--host", HOST, "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


def start_upstream(group: ProcessGroup, latency_ms: int) -> Upstream:
    """The fake upstream (`tests.support.fake_upstream`) answering after `latency_ms`; it lives for the run."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.fake_upstream", "--host", HOST, "--port", str(port),
               "--latency-ms", str(latency_ms)]  # fmt: skip
    child = group.start(f"upstream-{latency_ms}ms", command, env=base_env())
    url = f"http://{HOST}:{port}"
    wait_ready(f"{url}/v1/models", child, timeout_s=30)
    return Upstream(latency_ms, child, url)


def routes_yaml(upstream_url: str, call: str | None) -> str:
    """Kintsugi's routes file for the bench: `bench` and `bench-stream` on the upstream; `call` unset leaves the
    provider on Kintsugi's default."""
    call_line = f"    call: {call}\n" if call is not None else ""
    return ROUTES_TEMPLATE.format(
        base_url=upstream_url, model=UPSTREAM_MODEL, stream_model=STREAM_MODEL, call_line=call_line
    )


def direct_target(upstream: Upstream) -> Target:
    """The load generator calls the upstream itself."""
    url = f"{upstream.url}/v1/chat/completions"
    return Target("direct", url, chat_body(UPSTREAM_MODEL), meters={"upstream": upstream.child})


@contextmanager
def dev_server(group: ProcessGroup, workdir: Path) -> Iterator[DevServer]:
    """A fresh dev server, exactly as Kintsugi runs it (flags, search attributes, SQLite file, WAL), so its
    CPU-seconds per job are attributable to one system."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_dev_server(group, db_file=workdir / "temporal.db", env=base_env())
    try:
        yield server
    finally:
        group.stop(server.child)


def kintsugi_database(workdir: Path) -> str:
    """A migrated SQLite database for one Kintsugi system, shared by its runs at every upstream latency."""
    from store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{workdir / 'k.db'}"
    upgrade(url)
    return url


@contextmanager
def app_target(
    system: str, group: ProcessGroup, workdir: Path, server: DevServer, upstream: Upstream, database_url: str
) -> Iterator[Target]:
    """`system`'s processes against `upstream`, on a task queue of their own, as a load target."""
    queue = f"{system}-{upstream.latency_ms}ms"
    app: AbstractContextManager[App]
    # The baseline and the floor pass the upstream's own model on, take no auth, and share a workflow id header.
    body, id_header = chat_body(UPSTREAM_MODEL), BENCH_ID_HEADER
    headers: dict[str, str] = {}
    if system == "baseline":
        app = baseline_app(group, server.address, upstream.url, queue)
    elif system == "floor":
        app = floor_app(group, server.address, upstream.url, queue)
    else:
        call = KINTSUGI_SYSTEMS[system]
        extra_env = (
            exporter_env(start_sinks(group, queue), live_tracing=system in LIVE_TRACING_SYSTEMS)
            if system in EXPORTING_SYSTEMS
            else None
        )
        app = kintsugi_app(group, workdir, server.address, upstream.url, queue, database_url, call, extra_env)
        body, id_header = chat_body("bench"), KINTSUGI_ID_HEADER
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with app as running:
        for key, enabled in KINTSUGI_FLAGS.get(system, {}).items():
            response = httpx.put(f"{running.url}/v1/flags/{key}", json={"enabled": enabled}, headers=headers)
            response.raise_for_status()
        workers = {"worker": running.worker} if running.worker is not None else {}
        meters = {"server": server.child, **workers, "api": running.api, "upstream": upstream.child}
        yield Target(system, f"{running.url}/v1/chat/completions", body, headers, id_header, meters)


def start_sinks(group: ProcessGroup, name: str) -> str:
    """The exporters' stand-in (`bench.sinks`) for one system's run; returns its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "bench.sinks", "--host", HOST, "--port", str(port)]
    child = group.start(f"sinks-{name}", command, env=base_env())
    url = f"http://{HOST}:{port}"
    wait_ready(f"{url}/counts", child, timeout_s=30)
    return url


def exporter_env(sinks_url: str, *, live_tracing: bool) -> dict[str, str]:
    """Every exporter on, each pointed at the stand-in: what "exports on" means for the bench. The OTLP endpoint
    also turns live tracing on; without `live_tracing` the SDK is disabled, which leaves the outbox's OTLP job
    traces on."""
    return {
        **({} if live_tracing else {"OTEL_SDK_DISABLED": "true"}),
        "KINTSUGI_RUDDERSTACK_DATA_PLANE_URL": sinks_url,
        "KINTSUGI_RUDDERSTACK_WRITE_KEY": "bench-write-key",
        "LANGFUSE_BASE_URL": sinks_url,
        "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
        "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sinks_url,
        "KINTSUGI_CODEC_KEY": BENCH_CODEC_KEY,
    }


def bench_env(address: str, upstream_url: str, task_queue: str) -> dict[str, str]:
    """The configuration of the baseline's and the floor's processes."""
    return {**base_env(), "BENCH_TEMPORAL_ADDRESS": address, "BENCH_TASK_QUEUE": task_queue,
            "BENCH_UPSTREAM_URL": upstream_url}  # fmt: skip


@contextmanager
def baseline_app(group: ProcessGroup, address: str, upstream_url: str, task_queue: str) -> Iterator[App]:
    env = bench_env(address, upstream_url, task_queue)
    worker = ["-m", "bench.baseline", "worker"]
    with _worker_and_api(group, "baseline", worker, "bench.baseline:create_app", "/healthz", env) as app:
        yield app


@contextmanager
def floor_app(group: ProcessGroup, address: str, upstream_url: str, task_queue: str) -> Iterator[App]:
    env = bench_env(address, upstream_url, task_queue)
    with _worker_and_api(group, "floor", None, "bench.floor:create_app", "/healthz", env) as app:
        yield app


@contextmanager
def kintsugi_app(
    group: ProcessGroup,
    workdir: Path,
    address: str,
    upstream_url: str,
    task_queue: str,
    database_url: str,
    call: str | None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[App]:
    routes_file = workdir / f"routes-{task_queue}.yaml"
    routes_file.write_text(routes_yaml(upstream_url, call))
    env = {
        **base_env(),
        "KINTSUGI_ENV": "dev",
        "KINTSUGI_DATA_DIR": str(workdir),
        "KINTSUGI_ADMIN_API_KEY": ADMIN_KEY,
        "KINTSUGI_DATABASE_URL": database_url,
        "KINTSUGI_TEMPORAL_ADDRESS": address,
        "KINTSUGI_TASK_QUEUE": task_queue,
        "KINTSUGI_ROUTES_FILE": str(routes_file),
        **(extra_env or {}),
    }
    with _worker_and_api(group, "kintsugi", ["-m", "worker"], "api.app:create_app", "/readyz", env) as app:
        yield app


@contextmanager
def _worker_and_api(
    group: ProcessGroup,
    name: str,
    worker_args: list[str] | None,
    app_factory: str,
    ready_path: str,
    env: dict[str, str],
) -> Iterator[App]:
    """A system's worker and API processes, the same layout for the baseline and Kintsugi; `worker_args=None`
    starts the API alone, for a system whose API process runs its worker (the floor)."""
    port = free_port()
    # Kintsugi's API names its own address in streamed jobs so the worker can relay their tokens to it.
    env = {**env, "KINTSUGI_API_PORT": str(port)}
    worker = None if worker_args is None else group.start(f"{name}-worker", [sys.executable, *worker_args], env=env)
    api = group.start(f"{name}-api", _uvicorn(app_factory, port), env=env)
    try:
        url = f"http://{HOST}:{port}"
        wait_ready(f"{url}{ready_path}", api, timeout_s=60)
        if worker is not None:
            worker.check()
        yield App(worker, api, url)
    finally:
        group.stop(api)
        if worker is not None:
            group.stop(worker)


def wait_ready(url: str, child: Child, *, timeout_s: float) -> None:
    """Until `url` answers 200. A timeout names the child's last lines: its log goes with the work dir."""
    try:
        wait_http_ok(url, timeout_s=timeout_s, check=child.check)
    except TimeoutError as err:
        raise HarnessError(f"{err}\n{child.tail()}") from err
