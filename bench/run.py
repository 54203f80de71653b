"""`make bench`: Kintsugi's `/v1/chat/completions` against a direct upstream call and a bare Temporal
baseline.

    python -m bench.run                 # full run (~10 min on 2 cores)
    python -m bench.run --quick         # smoke run
    python -m bench.run --requests 300  # the same number of measured requests in every phase

In one run, against the fake upstream (`tests.fake_upstream`) at 0 ms and 200 ms latency, at concurrency
1, 10 and 50, it measures three systems:

- direct:   the load generator calls the upstream itself;
- baseline: `bench.baseline` (an API process + a worker process, one activity per workflow);
- kintsugi: Kintsugi's API process + worker process.

Baseline and Kintsugi each get a fresh Temporal dev server, started with Kintsugi's flags and state in a
file (like `make up`), so the server's CPU-seconds per 1,000 jobs are attributable. The table, the target
checks (PASS/MISS) and one workflow history per system (events by type) are printed and written to
`bench/results/latest.json`. Exit 0 whatever the numbers; non-zero only if the harness breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.load import LoadResult, run_phase
from bench.procs import Child, Children, HarnessError, wait_http_ok
from devserver import dev_server_command, free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"
HOST = "127.0.0.1"
UPSTREAM_MODEL = "bench-model"
ADMIN_KEY = "bench-admin-key-0123456789"
KINTSUGI_ID_HEADER = "X-Kintsugi-Job-Id"
BASELINE_ID_HEADER = "X-Bench-Workflow-Id"
SYSTEMS = ("direct", "baseline", "kintsugi", "kintsugi-local")
KINTSUGI_SYSTEMS = {"kintsugi": "activity", "kintsugi-local": "local"}
"""Kintsugi with its default `call: activity` deployments, and with `call: local` (calls as local activities)."""
METERS = ("server", "worker", "api", "upstream")

OVERHEAD_TARGET_MS = 25.0
THROUGHPUT_RATIO_TARGET = 0.8
THROUGHPUT_TARGET = 50.0


@dataclass
class Target:
    """Where the load goes for one system at one upstream latency, and the processes to meter."""

    system: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    id_header: str | None = None
    meters: dict[str, Child] = field(default_factory=dict)


@dataclass
class Phase:
    system: str
    latency_ms: int
    concurrency: int
    result: LoadResult
    warmup_errors: list[str]
    cpu_s: dict[str, float]

    @property
    def p50(self) -> float | None:
        return self.result.percentile(50)

    def cpu_per_1k(self, meter: str) -> float | None:
        if meter not in self.cpu_s or self.result.ok == 0:
            return None
        return self.cpu_s[meter] / self.result.ok * 1000


# --- processes ------------------------------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINTSUGI_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _uvicorn(app: str, port: int) -> list[str]:
    # Access logs off for both APIs: a log line per request would be measured as platform cost.
    return [sys.executable, "-m", "uvicorn", app, "--factory", "--host", HOST, "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


def start_upstream(children: Children, latency_ms: int) -> tuple[Child, str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.fake_upstream", "--host", HOST, "--port", str(port),
               "--latency-ms", str(latency_ms)]  # fmt: skip
    child = children.start(f"upstream-{latency_ms}ms", command, _base_env())
    url = f"http://{HOST}:{port}"
    wait_http_ok(f"{url}/v1/models", child, timeout_s=30)
    return child, url


async def _wait_temporal(address: str, timeout_s: float) -> None:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = await Client.connect(address)
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
            return
        except Exception as err:
            if time.monotonic() > deadline:
                raise HarnessError(f"Temporal at {address} not ready after {timeout_s:.0f} s: {err}") from err
            await asyncio.sleep(0.3)


@contextmanager
def dev_server(children: Children, workdir: Path) -> Iterator[tuple[Child, str]]:
    """A fresh dev server, exactly as Kintsugi runs it (flags, search attributes, SQLite file, WAL)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = dev_server_command(port=port, ui_port=None, db_file=workdir / "temporal.db")
    child = children.start("temporal", command, _base_env())
    try:
        wait_for_port(HOST, port, timeout_s=30)
        child.check()
        address = f"{HOST}:{port}"
        asyncio.run(_wait_temporal(address, 30))
        yield child, address
    finally:
        children.stop(child)


@contextmanager
def baseline_app(
    children: Children, address: str, upstream_url: str, task_queue: str
) -> Iterator[tuple[Child, Child, str]]:
    env = {**_base_env(), "BENCH_TEMPORAL_ADDRESS": address, "BENCH_TASK_QUEUE": task_queue,
           "BENCH_UPSTREAM_URL": upstream_url}  # fmt: skip
    with _worker_and_api(
        children, "baseline", ["-m", "bench.baseline", "worker"], "bench.baseline:create_app", "/healthz", env
    ) as app:
        yield app


@contextmanager
def _worker_and_api(
    children: Children, name: str, worker_args: list[str], app_factory: str, ready_path: str, env: dict[str, str]
) -> Iterator[tuple[Child, Child, str]]:
    """A system's worker and API processes, the same layout for the baseline and Kintsugi."""
    worker = children.start(f"{name}-worker", [sys.executable, *worker_args], env)
    port = free_port()
    api = children.start(f"{name}-api", _uvicorn(app_factory, port), env)
    try:
        url = f"http://{HOST}:{port}"
        wait_http_ok(f"{url}{ready_path}", api)
        worker.check()
        yield worker, api, url
    finally:
        children.stop(api)
        children.stop(worker)


ROUTES_TEMPLATE = """\
providers:
  upstream:
    kind: openai
    base_url: "{base_url}/v1"
    timeout_s: 30
    retry: {{max_attempts: 3}}
    call: {call}
routes:
  bench:
    - {{provider: upstream, model: {model}, price: {{input_per_mtok: 0.0, output_per_mtok: 0.0}}}}
"""


@contextmanager
def kintsugi_app(
    children: Children,
    workdir: Path,
    address: str,
    upstream_url: str,
    task_queue: str,
    database_url: str,
    call: str,
) -> Iterator[tuple[Child, Child, str]]:
    routes_file = workdir / f"routes-{task_queue}.yaml"
    routes_file.write_text(ROUTES_TEMPLATE.format(base_url=upstream_url, model=UPSTREAM_MODEL, call=call))
    env = {
        **_base_env(),
        "KINTSUGI_ENV": "dev",
        "KINTSUGI_DATA_DIR": str(workdir),
        "KINTSUGI_ADMIN_API_KEY": ADMIN_KEY,
        "KINTSUGI_DATABASE_URL": database_url,
        "KINTSUGI_TEMPORAL_ADDRESS": address,
        "KINTSUGI_TASK_QUEUE": task_queue,
        "KINTSUGI_ROUTES_FILE": str(routes_file),
    }
    with _worker_and_api(children, "kintsugi", ["-m", "worker"], "api.app:create_app", "/readyz", env) as app:
        yield app


# --- measuring ------------------------------------------------------------------------------------------


def _body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def probe(target: Target, timeout_s: float = 90.0) -> None:
    """One request end to end (the worker is polling, the route works) before any phase."""
    deadline = time.monotonic() + timeout_s
    last: list[str] = []
    while time.monotonic() < deadline:
        for child in target.meters.values():
            child.check()
        _, result = asyncio.run(
            run_phase(target.url, target.body, target.headers, n=1, concurrency=1, warmup=0, settle_s=0)
        )
        if result.ok:
            return
        last = result.errors
        time.sleep(0.5)
    raise HarnessError(f"{target.system} at {target.url} never answered a request: {last[:1]}")


def measure(target: Target, latency_ms: int, concurrency: int, n: int, warmup: int) -> Phase:
    before: dict[str, float] = {}
    after: dict[str, float] = {}

    def snapshot(into: dict[str, float]) -> None:
        for name, child in target.meters.items():
            into[name] = child.cpu_seconds()

    warm, result = asyncio.run(
        run_phase(
            target.url,
            target.body,
            target.headers,
            n=n,
            concurrency=concurrency,
            warmup=warmup,
            id_header=target.id_header,
            on_start=lambda: snapshot(before),
            on_stop=lambda: snapshot(after),
        )
    )
    for child in target.meters.values():
        child.check()
    cpu = {name: after[name] - before[name] for name in before}
    phase = Phase(target.system, latency_ms, concurrency, result, warm.errors, cpu)
    print(_progress(phase), flush=True)
    return phase


def _progress(phase: Phase) -> str:
    r = phase.result
    server = phase.cpu_per_1k("server")
    return (
        f"  {phase.system:<14} {phase.latency_ms:>3} ms  c={phase.concurrency:<3} n={r.n:<5} "
        f"err={len(r.errors):<3} p50={_ms(r.percentile(50))} p99={_ms(r.percentile(99))} "
        f"{r.jobs_per_s:7.1f} jobs/s" + (f"  server {server:.1f} CPU-s/1k" if server is not None else "")
    )


def run_scenarios(
    target: Target, latency_ms: int, concurrencies: list[int], counts: dict[int, int], warmup: int
) -> list[Phase]:
    probe(target)
    return [measure(target, latency_ms, c, counts[c], max(warmup, c)) for c in concurrencies]


async def _history(address: str, workflow_id: str) -> dict[str, Any]:
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    counts = Counter(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events)
    size = sum(event.ByteSize() for event in history.events)
    return {"workflow_id": workflow_id, "events": len(history.events), "bytes": size, "by_type": dict(counts)}


def history_of(system: str, address: str, phases: list[Phase]) -> dict[str, Any] | None:
    ids = [i for p in phases if p.system == system for i in p.result.ids]
    if not ids:
        return None
    return asyncio.run(_history(address, ids[len(ids) // 2]))


# --- report ---------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else "      -"


def _find(phases: list[Phase], system: str, latency_ms: int, concurrency: int) -> Phase | None:
    for phase in phases:
        if (phase.system, phase.latency_ms, phase.concurrency) == (system, latency_ms, concurrency):
            return phase
    return None


def derived(phases: list[Phase]) -> list[dict[str, Any]]:
    rows = []
    for phase in phases:
        r = phase.result
        direct = _find(phases, "direct", phase.latency_ms, phase.concurrency)
        baseline = _find(phases, "baseline", phase.latency_ms, phase.concurrency)
        overhead = None
        direct_p50 = direct.p50 if direct is not None else None
        if phase.system != "direct" and direct_p50 is not None and phase.p50 is not None:
            overhead = phase.p50 - direct_p50
        ratio = None
        if phase.system in KINTSUGI_SYSTEMS and baseline is not None and baseline.result.jobs_per_s > 0:
            ratio = r.jobs_per_s / baseline.result.jobs_per_s
        rows.append(
            {
                "system": phase.system,
                "latency_ms": phase.latency_ms,
                "concurrency": phase.concurrency,
                "n": r.n,
                "ok": r.ok,
                "errors": len(r.errors),
                "error_samples": sorted(set(r.errors))[:5],
                "warmup_errors": len(phase.warmup_errors),
                "p50_ms": r.percentile(50),
                "p95_ms": r.percentile(95),
                "p99_ms": r.percentile(99),
                "elapsed_s": r.elapsed_s,
                "jobs_per_s": r.jobs_per_s,
                "overhead_p50_ms": overhead,
                "kintsugi_over_baseline_throughput": ratio,
                "cpu_s": phase.cpu_s,
                "cpu_s_per_1k_jobs": {m: phase.cpu_per_1k(m) for m in METERS if m in phase.cpu_s},
            }
        )
    return rows


def _opt(value: float | None, fmt: str, width: int) -> str:
    return format(value, fmt).rjust(width) if value is not None else "-".rjust(width)


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'system':<14} {'lat':>4} {'conc':>4} {'n':>5} {'err':>4} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'jobs/s':>7} {'+p50':>7} {'k/b':>5} {'srvCPU':>7} {'wrkCPU':>7} {'apiCPU':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        per_1k = row["cpu_s_per_1k_jobs"]
        lines.append(
            f"{row['system']:<14} {row['latency_ms']:>4} {row['concurrency']:>4} {row['n']:>5} "
            f"{row['errors']:>4} {_ms(row['p50_ms'])} {_ms(row['p95_ms'])} {_ms(row['p99_ms'])} "
            f"{row['jobs_per_s']:7.1f} {_opt(row['overhead_p50_ms'], '+.1f', 7)} "
            f"{_opt(row['kintsugi_over_baseline_throughput'], '.2f', 5)} "
            f"{_opt(per_1k.get('server'), '.1f', 7)} {_opt(per_1k.get('worker'), '.1f', 7)} "
            f"{_opt(per_1k.get('api'), '.1f', 7)}"
        )
    lines.append(
        "lat = upstream latency (ms); p50/p95/p99 in ms; +p50 = p50 minus direct's p50 (ms); "
        "k/b = kintsugi/baseline jobs/s;\nsrvCPU/wrkCPU/apiCPU = CPU-seconds (user+system) per 1,000 jobs "
        "of the Temporal dev server / worker process / API process during the measured phase."
    )
    return "\n".join(lines)


def _row(rows: list[dict[str, Any]], system: str, latency_ms: int, concurrency: int) -> dict[str, Any] | None:
    for row in rows:
        if (row["system"], row["latency_ms"], row["concurrency"]) == (system, latency_ms, concurrency):
            return row
    return None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, goal: str, passed: bool | None) -> None:
        verdict = "SKIP" if value is None or passed is None else ("PASS" if passed else "MISS")
        checks.append({"target": name, "value": value, "goal": goal, "verdict": verdict})

    for system in KINTSUGI_SYSTEMS:
        row = _row(rows, system, 0, 1)
        overhead = row["overhead_p50_ms"] if row else None
        check(
            f"{system}: p50 overhead over direct, concurrency 1, 0 ms upstream",
            overhead,
            f"<= {OVERHEAD_TARGET_MS:.0f} ms",
            None if overhead is None else overhead <= OVERHEAD_TARGET_MS,
        )
        for concurrency in (10, 50):
            row = _row(rows, system, 200, concurrency)
            ratio = row["kintsugi_over_baseline_throughput"] if row else None
            check(
                f"{system}: throughput vs baseline, concurrency {concurrency}, 200 ms upstream",
                ratio,
                f">= {THROUGHPUT_RATIO_TARGET}x",
                None if ratio is None else ratio >= THROUGHPUT_RATIO_TARGET,
            )
        row = _row(rows, system, 200, 50)
        rate = row["jobs_per_s"] if row else None
        check(
            f"{system}: throughput, concurrency 50, 200 ms upstream",
            rate,
            f">= {THROUGHPUT_TARGET:.0f} jobs/s",
            None if rate is None else rate >= THROUGHPUT_TARGET,
        )
    return checks


def _unit(check: dict[str, Any]) -> str:
    value = check["value"]
    if value is None:
        return "not measured"
    if "overhead" in check["target"]:
        return f"{value:+.1f} ms"
    if "vs baseline" in check["target"]:
        return f"{value:.2f}x"
    return f"{value:.1f} jobs/s"


def histories_table(histories: dict[str, dict[str, Any] | None]) -> str:
    present = {k: v for k, v in histories.items() if v}
    if not present:
        return "(no histories fetched)"
    types = sorted({t for h in present.values() for t in h["by_type"]})
    width = max(len(t) for t in [*types, "total events"])
    lines = [f"{'event type':<{width}} " + " ".join(f"{s:>9}" for s in present)]
    for t in types:
        lines.append(f"{t:<{width}} " + " ".join(f"{h['by_type'].get(t, 0):>9}" for h in present.values()))
    lines.append(f"{'total events':<{width}} " + " ".join(f"{h['events']:>9}" for h in present.values()))
    lines.append(f"{'history bytes':<{width}} " + " ".join(f"{h['bytes']:>9}" for h in present.values()))
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few requests per phase)")
    parser.add_argument("--requests", type=int, metavar="N", help="measured requests in every phase")
    parser.add_argument("--warmup", type=int, metavar="N", help="warm-up requests per phase (default 20)")
    parser.add_argument("--latencies", default="0,200", help="upstream latencies in ms (default 0,200)")
    parser.add_argument("--concurrency", default="1,10,50", help="concurrency levels (default 1,10,50)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"default {','.join(SYSTEMS)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    args.latencies = [int(x) for x in args.latencies.split(",")]
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    if "direct" not in args.systems:
        print("note: without direct, no overhead is computed", file=sys.stderr)
    return args


def counts_for(args: argparse.Namespace) -> tuple[dict[int, int], int]:
    if args.requests is not None:
        counts = dict.fromkeys(args.concurrency, args.requests)
    elif args.quick:
        counts = {c: 30 if c == 1 else 100 for c in args.concurrency}
    else:
        counts = {c: 200 if c == 1 else 500 for c in args.concurrency}
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 20)
    return counts, warmup


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def bench(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    counts, warmup = counts_for(args)
    phases: list[Phase] = []
    histories: dict[str, dict[str, Any] | None] = {}
    upstreams = {lat: start_upstream(children, lat) for lat in args.latencies}

    def scenarios(target: Target, latency_ms: int) -> None:
        phases.extend(run_scenarios(target, latency_ms, args.concurrency, counts, warmup))

    for system in args.systems:
        print(f"{system}:", flush=True)
        if system == "direct":
            for lat, (upstream, url) in upstreams.items():
                endpoint = f"{url}/v1/chat/completions"
                target = Target("direct", endpoint, _body(UPSTREAM_MODEL), meters={"upstream": upstream})
                scenarios(target, lat)
            continue
        system_dir = workdir / system
        with dev_server(children, system_dir) as (server, address):
            database_url = f"sqlite+aiosqlite:///{system_dir / 'k.db'}"
            if system in KINTSUGI_SYSTEMS:
                from store.migrate import upgrade

                upgrade(database_url)
            for lat, (upstream, upstream_url) in upstreams.items():
                queue = f"{system}-{lat}ms"
                if system == "baseline":
                    app = baseline_app(children, address, upstream_url, queue)
                    body, headers, id_header = _body(UPSTREAM_MODEL), {}, BASELINE_ID_HEADER
                else:
                    app = kintsugi_app(
                        children, system_dir, address, upstream_url, queue, database_url, KINTSUGI_SYSTEMS[system]
                    )
                    body = _body("bench")
                    headers, id_header = {"Authorization": f"Bearer {ADMIN_KEY}"}, KINTSUGI_ID_HEADER
                with app as (worker, api, url):
                    meters = {"server": server, "worker": worker, "api": api, "upstream": upstream}
                    target = Target(system, f"{url}/v1/chat/completions", body, headers, id_header, meters)
                    scenarios(target, lat)
            histories[system] = history_of(system, address, phases)
    rows = derived(phases)
    checks = targets(rows)
    return {"rows": rows, "targets": checks, "histories": histories, "counts": counts, "warmup": warmup}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    started_at = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="kintsugi-bench-"))
    children = Children(log_dir=workdir, cwd=REPO)
    print(f"bench: {os.cpu_count()} CPUs, systems {args.systems}, latencies {args.latencies} ms, "
          f"concurrency {args.concurrency}{' (quick)' if args.quick else ''}", flush=True)  # fmt: skip
    try:
        report = bench(args, children, workdir)
    except HarnessError as err:
        print(f"bench: harness failure: {err}", file=sys.stderr)
        if children.children:
            print(children.tails(), file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    duration = time.monotonic() - started

    print()
    print(table(report["rows"]))
    print()
    print("Targets (Kintsugi):")
    for check in report["targets"]:
        print(f"  {check['verdict']:<4}  {check['target']}: {_unit(check)} (goal {check['goal']})")
    failed = sum(row["errors"] for row in report["rows"])
    print(f"  {'PASS' if failed == 0 else 'MISS'}  failed requests in measured phases: {failed}")
    for row in report["rows"]:
        for sample in row["error_samples"]:
            print(f"        {row['system']} {row['latency_ms']} ms c={row['concurrency']}: {sample}")
    print()
    print("One workflow history per system (events by type):")
    print(histories_table(report["histories"]))
    print(f"\nbench: done in {duration:.0f} s")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "started_at": started_at.isoformat(),
        "duration_s": duration,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {
            "quick": args.quick,
            "requests": report["counts"],
            "warmup": report["warmup"],
            "latencies_ms": args.latencies,
            "concurrency": args.concurrency,
            "systems": args.systems,
        },
        "phases": report["rows"],
        "targets": report["targets"],
        "histories": report["histories"],
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"bench: results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
