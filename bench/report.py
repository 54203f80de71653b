"""What the phases mean: derived figures (overhead over direct, throughput over the baseline), the rows written to
JSON, the printed table, the target checks, and the history table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bench.measure import METERS, Phase
from bench.systems import KINTSUGI_SYSTEMS

OVERHEAD_TARGET_MS = 25.0
THROUGHPUT_RATIO_TARGET = 0.8
THROUGHPUT_TARGET = 50.0


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
JOBS_PER_S = Unit(".1f", " jobs/s")


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


def rows(phases: list[Phase]) -> list[dict[str, Any]]:
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
                "cpu_s": phase.cpu_s,
                "cpu_s_per_1k_jobs": {m: phase.cpu_per_1k(m) for m in METERS if m in phase.cpu_s},
            }
        )
    return out


def targets(phases: list[Phase]) -> list[Check]:
    checks: list[Check] = []
    for system in KINTSUGI_SYSTEMS:
        phase = find(phases, system, 0, 1)
        overhead = overhead_ms(phase, phases) if phase else None
        checks.append(
            Check(
                f"{system}: p50 overhead over direct, concurrency 1, 0 ms upstream",
                overhead,
                DELTA_MS,
                "<=",
                OVERHEAD_TARGET_MS,
            )
        )
        for concurrency in (10, 50):
            phase = find(phases, system, 200, concurrency)
            ratio = throughput_ratio(phase, phases) if phase else None
            checks.append(
                Check(
                    f"{system}: throughput vs baseline, concurrency {concurrency}, 200 ms upstream",
                    ratio,
                    RATIO,
                    ">=",
                    THROUGHPUT_RATIO_TARGET,
                )
            )
        phase = find(phases, system, 200, 50)
        rate = phase.result.jobs_per_s if phase else None
        checks.append(
            Check(f"{system}: throughput, concurrency 50, 200 ms upstream", rate, JOBS_PER_S, ">=", THROUGHPUT_TARGET)
        )
    return checks


# --- text -----------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else "      -"


def _opt(value: float | None, fmt: str, width: int) -> str:
    return format(value, fmt).rjust(width) if value is not None else "-".rjust(width)


def progress(phase: Phase) -> str:
    """The line printed as each phase ends."""
    r = phase.result
    server = phase.cpu_per_1k("server")
    return (
        f"  {phase.system:<14} {phase.latency_ms:>3} ms  c={phase.concurrency:<3} n={r.n:<5} "
        f"err={len(r.errors):<3} p50={_ms(r.percentile(50))} p99={_ms(r.percentile(99))} "
        f"{r.jobs_per_s:7.1f} jobs/s" + (f"  server {server:.1f} CPU-s/1k" if server is not None else "")
    )


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


def summary(rows: list[dict[str, Any]], checks: list[Check], histories: dict[str, dict[str, Any] | None]) -> str:
    """The table, each target as PASS/MISS/SKIP with its figure, failed requests, and the history table."""
    lines = [table(rows), "", "Targets (Kintsugi):"]
    lines += [f"  {c.verdict:<4}  {c.target}: {c.figure} (goal {c.goal})" for c in checks]
    failed = sum(row["errors"] for row in rows)
    lines.append(f"  {'PASS' if failed == 0 else 'MISS'}  failed requests in measured phases: {failed}")
    for row in rows:
        for sample in row["error_samples"]:
            lines.append(f"        {row['system']} {row['latency_ms']} ms c={row['concurrency']}: {sample}")
    lines += ["", "One workflow history per system (events by type):", histories_table(histories)]
    return "\n".join(lines)
