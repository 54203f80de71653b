"""`make bench`: Kintsugi's `/v1/chat/completions` against a direct upstream call, a bare Temporal baseline,
Temporal's floor for a durable call and LiteLLM's proxy.

    python -m bench.run                 # full run (~12 min on 2 cores)
    python -m bench.run --quick         # smoke run
    python -m bench.run --requests 300  # the same number of measured requests in every phase

In one run, against the fake upstream (`tests.support.fake_upstream`) at 0 ms and 200 ms latency, at concurrency
1, 10 and 50, it measures seven systems:

- direct:            the load generator calls the upstream itself;
- baseline:          `bench.baseline` (an API process + a worker process, one activity per workflow);
- floor:             `bench.floor`, Temporal's own floor for a durable call here: one API process that runs the
                     worker on its client, starts each workflow eagerly, and makes the call as a local activity;
- litellm:           LiteLLM's proxy (`bench.litellm`), one process, no database: a gateway without durability.
                     The bench installs it into `.data/bench/litellm-venv` on first use and reuses it; when it
                     cannot (no network), the system is skipped with the reason and the rest goes on;
- kintsugi:          Kintsugi's API process + worker process, its provider on the default call path;
- kintsugi-activity: the same with `call: activity` (the path for long calls, on the shared worker pool);
- kintsugi-cache:    the default with the response cache on: the bench's repeated prompt is answered from it;
- kintsugi-exports:  the default with every exporter on (warehouse, Langfuse, OTLP job traces from the outbox, live
                     OpenTelemetry) against a local receiver (`bench.sinks`), and the payload codec encrypting
                     history: the plain job's cost of "exports on".

Baseline, floor and Kintsugi each get a fresh Temporal dev server, started with Kintsugi's flags and state in a
file (like `make up`), so the server's CPU-seconds per 1,000 jobs are attributable. The table, the target
checks of `kintsugi` (PASS/MISS/SKIP), the floor's overhead over direct (INFO: reported, not targeted) and one
workflow history per system (events by type) are printed and written to `bench/results/latest.json`. Exit 0
whatever the numbers; non-zero only if the harness breaks.

This module is the command line; `bench.systems` and `bench.litellm` start the processes, `bench.load` drives
requests, `bench.measure` times phases and meters CPU, `bench.report` derives the figures and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import litellm, report
from bench.measure import Phase, history_of, measure, probe
from bench.systems import (
    KINTSUGI_SYSTEMS,
    HarnessError,
    Target,
    Upstream,
    app_target,
    dev_server,
    direct_target,
    kintsugi_database,
    start_upstream,
)
from bench.ttft import STREAM_MODEL, TtftResult, configure_upstream, measure_ttft
from bench.ttft import table as ttft_table
from ops.processes import ChildDied, ProcessGroup

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"
LITELLM_VENV = REPO / ".data" / "bench" / "litellm-venv"
"""Kept between runs (`.data/` is not committed; `make clean` removes it)."""
SYSTEMS = ("direct", "baseline", "floor", "litellm", *KINTSUGI_SYSTEMS)
UNSTREAMED = ("baseline", "floor")
"""Systems that do not stream (their call returns one JSON answer), so have no time to first token."""


@dataclass
class Measured:
    phases: list[Phase] = field(default_factory=list)
    histories: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """One workflow history per system that runs workflows."""
    ttft: list[TtftResult] = field(default_factory=list)
    """Time to first token of the systems that stream (not those in `UNSTREAMED`)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Systems that could not run, with the reason (LiteLLM when it cannot be installed or started)."""


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
    parser.add_argument(
        "--ttft-requests", type=int, metavar="N", help="streamed requests timed per system (default 20; 0: none)"
    )
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


def bench(
    args: argparse.Namespace, group: ProcessGroup, workdir: Path, counts: dict[int, int], warmup: int
) -> Measured:
    """Every system at every upstream latency and concurrency; a system's processes stop before the next starts."""
    measured = Measured()
    upstreams = [start_upstream(group, latency_ms) for latency_ms in args.latencies]

    ttft_n = args.ttft_requests if args.ttft_requests is not None else (5 if args.quick else 20)
    if ttft_n:
        configure_upstream(upstreams[0].url)

    def time_first_tokens(target: Target, upstream: Upstream) -> None:
        if ttft_n and upstream is upstreams[0] and target.system not in UNSTREAMED:
            model = STREAM_MODEL if target.system == "direct" else "bench-stream"
            measured.ttft.append(measure_ttft(target.system, target.url, model, target.headers, n=ttft_n))

    def scenarios(target: Target, latency_ms: int) -> None:
        probe(target)
        for concurrency in args.concurrency:
            phase = measure(target, latency_ms, concurrency, counts[concurrency], max(warmup, concurrency))
            print(report.progress(phase), flush=True)
            measured.phases.append(phase)

    for system in args.systems:
        print(f"{system}:", flush=True)
        if system == "direct":
            for upstream in upstreams:
                scenarios(direct_target(upstream), upstream.latency_ms)
                time_first_tokens(direct_target(upstream), upstream)
            continue
        if system == "litellm":
            try:
                command = litellm.ensure_installed(LITELLM_VENV, note=lambda text: print(f"  {text}", flush=True))
                for upstream in upstreams:
                    with litellm.litellm_target(command, workdir / system, upstream) as target:
                        scenarios(target, upstream.latency_ms)
                        time_first_tokens(target, upstream)
            except litellm.LiteLLMUnavailable as err:
                print(f"  skipped: {err}", flush=True)
                measured.skipped[system] = str(err)
            continue
        system_dir = workdir / system
        with dev_server(group, system_dir) as server:
            database_url = kintsugi_database(system_dir) if system in KINTSUGI_SYSTEMS else ""
            for upstream in upstreams:
                with app_target(system, group, system_dir, server, upstream, database_url) as target:
                    scenarios(target, upstream.latency_ms)
                    time_first_tokens(target, upstream)
            measured.histories[system] = history_of(system, server.address, measured.phases)
    return measured


def _harness_failure(message: str, group: ProcessGroup) -> int:
    print(f"bench: harness failure: {message}", file=sys.stderr)
    if group.children:
        print(group.tails(), file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    started_at = datetime.now(UTC)
    counts, warmup = counts_for(args)
    workdir = Path(tempfile.mkdtemp(prefix="kintsugi-bench-"))
    group = ProcessGroup(log_dir=workdir, cwd=REPO)
    print(f"bench: {os.cpu_count()} CPUs, systems {args.systems}, latencies {args.latencies} ms, "
          f"concurrency {args.concurrency}{' (quick)' if args.quick else ''}", flush=True)  # fmt: skip
    try:
        measured = bench(args, group, workdir, counts, warmup)
    except ChildDied as err:
        return _harness_failure(f"{err}\n{err.tail}", group)
    except (HarnessError, TimeoutError) as err:
        return _harness_failure(str(err), group)
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    duration = time.monotonic() - started

    rows = report.rows(measured.phases, measured.histories)
    checks = report.targets(measured.phases)
    notes = report.reported(measured.phases)
    print()
    print(report.summary(rows, checks, notes, measured.histories, measured.skipped))
    if measured.ttft:
        print()
        print(ttft_table(measured.ttft))
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
            "requests": counts,
            "warmup": warmup,
            "latencies_ms": args.latencies,
            "concurrency": args.concurrency,
            "systems": args.systems,
        },
        "litellm": litellm.REQUIREMENT if "litellm" in args.systems else None,
        "skipped": measured.skipped,
        "phases": rows,
        "targets": [check.to_json() for check in checks],
        "reported": [note.to_json() for note in notes],
        "histories": measured.histories,
        "ttft": [result.row() for result in measured.ttft],
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"bench: results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
