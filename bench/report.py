"""What the phases mean: derived figures (overhead over direct, throughput and server CPU over the baseline), the
rows written to JSON, the printed table, the target checks, the figures reported beside them, and the history
table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bench.measure import METERS, Phase
from bench.systems import KINTSUGI_SYSTEMS

TARGETED = "kintsugi"
"""The one system the targets are for; the others are reported, not targeted."""
FLOOR = "floor"
"""Temporal's floor (`bench.floor`): its overhead over direct is reported beside the targets, as the least a
durable call on Temporal costs on this machine."""
EXPORTING = "kintsugi-exports"
"""Kintsugi with every exporter on: its c=10 throughput over the plain `kintsugi` is reported."""
OVERHEAD_TARGET_MS = 10.0
THROUGHPUT_RATIO_TARGET = 1.6
SERVER_CPU_RATIO_TARGET = 0.6


@dataclass(frozen=True)
class Unit:
    """How a figure prints: its format and the unit after it."""

    fmt: str
    suffix: str

    def show(self, value: float) -> str:
        return f"{format(value, self.fmt)}{self.suffix}"


DELTA_MS = Unit("+.1f", " ms")
"""A difference of latencies, signed: Kintsugi can be faster than what it is compared with."""
RATIO = Unit(".2f", "x")


@dataclass(frozen=True)
class Check:
    """One target: the measured figure with its unit, and the bound it should meet."""

    target: str
    value: float | None
    unit: Unit
    op: Literal["<=", ">="]
    bound: float

    @property
    def goal(self) -> str:
        return f"{self.op} {self.bound:g}{self.unit.suffix}"

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        passed = self.value <= self.bound if self.op == "<=" else self.value >= self.bound
        return "PASS" if passed else "MISS"

    @property
    def figure(self) -> str:
        return "not measured" if self.value is None else self.unit.show(self.value)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "value": self.value, "goal": self.goal, "verdict": self.verdict}


@dataclass(frozen=True)
class Reported:
    """A figure printed beside the targets (INFO), with what it means, held to no bound."""

    name: str
    value: float | None
    unit: Unit
    meaning: str

    @property
    def figure(self) -> str:
        return "not measured" if self.value is None else self.unit.show(self.value)

    @property
    def line(self) -> str:
        return f"  INFO  {self.name}: {self.figure} ({self.meaning})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "meaning": self.meaning}


# --- derived figures ------------------------------------------------------------------------------------


def find(phases: list[Phase], system: str, latency_ms: int, concurrency: int) -> Phase | None:
    for phase in phases:
        if (phase.system, phase.latency_ms, phase.concurrency) == (system, latency_ms, concurrency):
            return phase
    return None


def overhead_ms(phase: Phase, phases: list[Phase]) -> float | None:
    """p50 minus direct's p50 at the same upstream latency and concurrency."""
    direct = find(phases, "direct", phase.latency_ms, phase.concurrency)
    if phase.system == "direct" or direct is None or direct.p50 is None or phase.p50 is None:
        return None
    return phase.p50 - direct.p50


def throughput_ratio(phase: Phase, phases: list[Phase]) -> float | None:
    """A Kintsugi system's jobs/s over the baseline's at the same upstream latency and concurrency."""
    baseline = find(phases, "baseline", phase.latency_ms, phase.concurrency)
    if phase.system not in KINTSUGI_SYSTEMS or baseline is None or baseline.result.jobs_per_s <= 0:
        return None
    return phase.result.jobs_per_s / baseline.result.jobs_per_s


def server_cpu_ratio(phase: Phase, phases: list[Phase]) -> float | None:
    """A Kintsugi system's Temporal server CPU-seconds per 1,000 jobs over the baseline's, at the same upstream
    latency and concurrency."""
    baseline = find(phases, "baseline", phase.latency_ms, phase.concurrency)
    if phase.system not in KINTSUGI_SYSTEMS or baseline is None:
        return None
    ours, theirs = phase.cpu_per_1k("server"), baseline.cpu_per_1k("server")
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def events_per_job(system: str, histories: dict[str, dict[str, Any] | None]) -> int | None:
    """History events of the one workflow a job runs, from the workflow sampled for `system` (None if it runs
    none, or none was fetched)."""
    history = histories.get(system)
    return history["events"] if history else None


def rows(phases: list[Phase], histories: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One JSON row per phase: its figures, the derived ones, and the CPU of each metered process."""
    out = []
    for phase in phases:
        r = phase.result
        out.append(
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
                "overhead_p50_ms": overhead_ms(phase, phases),
                "kintsugi_over_baseline_throughput": throughput_ratio(phase, phases),
                "kintsugi_over_baseline_server_cpu": server_cpu_ratio(phase, phases),
                "cpu_s": phase.cpu_s,
                "cpu_s_per_1k_jobs": {m: phase.cpu_per_1k(m) for m in METERS if m in phase.cpu_s},
                "history_events_per_job": events_per_job(phase.system, histories),
            }
        )
    return out


def targets(phases: list[Phase]) -> list[Check]:
    """The targets of `TARGETED`, each SKIP when a phase it needs was not measured."""

    def figure(latency_ms: int, concurrency: int, derive: Callable[[Phase, list[Phase]], float | None]) -> float | None:
        phase = find(phases, TARGETED, latency_ms, concurrency)
        return derive(phase, phases) if phase else None

    return [
        Check(
            f"{TARGETED}: throughput vs baseline, concurrency 10, 0 ms upstream",
            figure(0, 10, throughput_ratio),
            RATIO,
            ">=",
            THROUGHPUT_RATIO_TARGET,
        ),
        Check(
            f"{TARGETED}: p50 overhead over direct, concurrency 1, 0 ms upstream",
            figure(0, 1, overhead_ms),
            DELTA_MS,
            "<=",
            OVERHEAD_TARGET_MS,
        ),
        Check(
            f"{TARGETED}: throughput vs baseline, concurrency 50, 200 ms upstream",
            figure(200, 50, throughput_ratio),
            RATIO,
            ">=",
            THROUGHPUT_RATIO_TARGET,
        ),
        Check(
            f"{TARGETED}: Temporal server CPU-s per 1,000 jobs vs baseline, concurrency 10, 0 ms upstream",
            figure(0, 10, server_cpu_ratio),
            RATIO,
            "<=",
            SERVER_CPU_RATIO_TARGET,
        ),
    ]


def reported(phases: list[Phase]) -> list[Reported]:
    """The figures printed under the targets: the floor's overhead over direct, and what turning every exporter
    on costs the plain job."""
    phase = find(phases, FLOOR, 0, 1)
    exporting = find(phases, EXPORTING, 0, 10)
    plain = find(phases, TARGETED, 0, 10)
    exports_ratio = (
        exporting.result.jobs_per_s / plain.result.jobs_per_s
        if exporting is not None and plain is not None and plain.result.jobs_per_s > 0
        else None
    )
    return [
        Reported(
            f"{FLOOR}: p50 overhead over direct, concurrency 1, 0 ms upstream",
            overhead_ms(phase, phases) if phase else None,
            DELTA_MS,
            "Temporal's own cost of one durable call here",
        ),
        Reported(
            f"{EXPORTING}: throughput vs {TARGETED}, concurrency 10, 0 ms upstream",
            exports_ratio,
            RATIO,
            "every exporter, live tracing and the payload codec on (the rule: >= 0.9)",
        ),
    ]


# --- text -----------------------------------------------------------------------------------------------


SYSTEM_WIDTH = max(14, *map(len, KINTSUGI_SYSTEMS))
"""The system column: the longest name, `kintsugi-activity`."""


def _ms(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else "      -"


def _opt(value: float | None, fmt: str, width: int) -> str:
    return format(value, fmt).rjust(width) if value is not None else "-".rjust(width)


def progress(phase: Phase) -> str:
    """The line printed as each phase ends."""
    r = phase.result
    server = phase.cpu_per_1k("server")
    return (
        f"  {phase.system:<{SYSTEM_WIDTH}} {phase.latency_ms:>3} ms  c={phase.concurrency:<3} n={r.n:<5} "
        f"err={len(r.errors):<3} p50={_ms(r.percentile(50))} p99={_ms(r.percentile(99))} "
        f"{r.jobs_per_s:7.1f} jobs/s" + (f"  server {server:.1f} CPU-s/1k" if server is not None else "")
    )


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'system':<{SYSTEM_WIDTH}} {'lat':>4} {'conc':>4} {'n':>5} {'err':>4} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'jobs/s':>7} {'+p50':>7} {'k/b':>5} {'srvCPU':>7} {'wrkCPU':>7} {'apiCPU':>7} {'upCPU':>7} {'events':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        per_1k = row["cpu_s_per_1k_jobs"]
        lines.append(
            f"{row['system']:<{SYSTEM_WIDTH}} {row['latency_ms']:>4} {row['concurrency']:>4} {row['n']:>5} "
            f"{row['errors']:>4} {_ms(row['p50_ms'])} {_ms(row['p95_ms'])} {_ms(row['p99_ms'])} "
            f"{row['jobs_per_s']:7.1f} {_opt(row['overhead_p50_ms'], '+.1f', 7)} "
            f"{_opt(row['kintsugi_over_baseline_throughput'], '.2f', 5)} "
            + " ".join(_opt(per_1k.get(meter), ".1f", 7) for meter in METERS)
            + f" {_opt(row['history_events_per_job'], 'd', 6)}"
        )
    lines.append(
        "lat = upstream latency (ms); p50/p95/p99 in ms; +p50 = p50 minus direct's p50 (ms); "
        "k/b = kintsugi/baseline jobs/s;\n"
        "srvCPU/wrkCPU/apiCPU/upCPU = CPU-seconds (user+system) per 1,000 jobs during the measured phase of the\n"
        "Temporal dev server / worker process / API process (for litellm: its proxy) / fake upstream,\n"
        "- where a system has no such process (the floor's worker runs in its API process);\n"
        "events = history events of one job's workflow (the one sampled per system, below)."
    )
    return "\n".join(lines)


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


def summary(
    rows: list[dict[str, Any]],
    checks: list[Check],
    notes: list[Reported],
    histories: dict[str, dict[str, Any] | None],
    skipped: dict[str, str],
) -> str:
    """The table, the systems skipped, each target as PASS/MISS/SKIP with its figure, failed requests, the
    figures reported beside the targets (INFO), and the history table."""
    lines = [table(rows)]
    lines += [f"(skipped {system}: {reason.splitlines()[0]})" for system, reason in skipped.items()]
    lines += ["", f"Targets ({TARGETED}; the other systems are reported, not targeted):"]
    lines += [f"  {c.verdict:<4}  {c.target}: {c.figure} (goal {c.goal})" for c in checks]
    failed = sum(row["errors"] for row in rows)
    lines.append(f"  {'PASS' if failed == 0 else 'MISS'}  failed requests in measured phases: {failed}")
    for row in rows:
        for sample in row["error_samples"]:
            lines.append(f"        {row['system']} {row['latency_ms']} ms c={row['concurrency']}: {sample}")
    lines += [note.line for note in notes]
    lines += ["", "One workflow history per system (events by type):", histories_table(histories)]
    return "\n".join(lines)
