"""The figures the bench derives and the targets it checks, on phases made up here (no process runs)."""

from __future__ import annotations

from typing import Any

from bench.load import LoadResult
from bench.measure import Phase
from bench.report import reported, rows, table, targets


def _phase(
    system: str, latency_ms: int, concurrency: int, *, jobs_per_s: float, p50_ms: float, server_cpu_s: float
) -> Phase:
    ok = 100
    result = LoadResult(n=ok, elapsed_s=ok / jobs_per_s, latencies_ms=[p50_ms] * ok)
    return Phase(system, latency_ms, concurrency, result, [], {"server": server_cpu_s, "api": 1.0})


def _verdicts(phases: list[Phase]) -> dict[str, str]:
    return {check.target: check.verdict for check in targets(phases)}


def test_kintsugi_is_held_to_the_targets_and_the_other_systems_are_not() -> None:
    phases = [
        _phase("direct", 0, 1, jobs_per_s=500, p50_ms=2.0, server_cpu_s=0.0),
        _phase("baseline", 0, 10, jobs_per_s=25, p50_ms=400, server_cpu_s=3.0),
        _phase("baseline", 200, 50, jobs_per_s=40, p50_ms=1200, server_cpu_s=3.0),
        _phase("kintsugi", 0, 1, jobs_per_s=90, p50_ms=11.0, server_cpu_s=1.0),  # +9 ms over direct
        _phase("kintsugi", 0, 10, jobs_per_s=50, p50_ms=200, server_cpu_s=1.5),  # 2x, server CPU 0.5x
        _phase("kintsugi", 200, 50, jobs_per_s=60, p50_ms=800, server_cpu_s=3.0),  # 1.5x
        _phase("litellm", 0, 10, jobs_per_s=1, p50_ms=9000, server_cpu_s=0.0),
    ]
    checks = targets(phases)
    assert all(check.target.startswith("kintsugi: ") for check in checks)
    assert [check.verdict for check in checks] == ["PASS", "PASS", "MISS", "PASS"]
    assert [round(check.value or 0, 2) for check in checks] == [2.0, 9.0, 1.5, 0.5]


def test_a_target_whose_phases_were_not_measured_is_skipped() -> None:
    phases = [_phase("kintsugi", 0, 10, jobs_per_s=50, p50_ms=200, server_cpu_s=1.5)]  # no baseline, no direct
    assert set(_verdicts(phases).values()) == {"SKIP"}


def test_rows_give_history_events_per_job_only_to_systems_that_ran_workflows() -> None:
    phases = [
        _phase("baseline", 0, 10, jobs_per_s=25, p50_ms=400, server_cpu_s=3.0),
        _phase("litellm", 0, 10, jobs_per_s=60, p50_ms=160, server_cpu_s=0.0),
    ]
    histories: dict[str, dict[str, Any] | None] = {
        "baseline": {"workflow_id": "w", "events": 11, "bytes": 2142, "by_type": {}}
    }
    by_system = {row["system"]: row for row in rows(phases, histories)}
    assert by_system["baseline"]["history_events_per_job"] == 11
    assert by_system["litellm"]["history_events_per_job"] is None


def test_the_floor_overhead_is_reported_beside_the_targets_and_not_held_to_one() -> None:
    phases = [
        _phase("direct", 0, 1, jobs_per_s=500, p50_ms=2.0, server_cpu_s=0.0),
        _phase("floor", 0, 1, jobs_per_s=150, p50_ms=6.5, server_cpu_s=0.5),
    ]
    note, exports = reported(phases)
    assert note.value == 4.5
    assert exports.figure == "not measured"
    assert note.line == (
        "  INFO  floor: p50 overhead over direct, concurrency 1, 0 ms upstream: +4.5 ms "
        "(Temporal's own cost of one durable call here)"
    )
    assert not any(check.target.startswith("floor") for check in targets(phases))
    assert reported(phases[1:])[0].figure == "not measured"  # no direct: no overhead


def test_a_system_without_a_worker_process_shows_a_dash_for_the_worker() -> None:
    phases = [_phase("floor", 0, 1, jobs_per_s=150, p50_ms=6.5, server_cpu_s=0.5)]
    floor_line = table(rows(phases, {})).splitlines()[2]
    columns = floor_line.split()
    srv_cpu, wrk_cpu, api_cpu = columns[-5:-2]
    assert (srv_cpu, wrk_cpu, api_cpu) == ("5.0", "-", "10.0")


def test_the_cost_of_exports_on_is_reported_against_the_plain_job() -> None:
    phases = [
        _phase("kintsugi", 0, 10, jobs_per_s=50, p50_ms=20.0, server_cpu_s=1.0),
        _phase("kintsugi-exports", 0, 10, jobs_per_s=46, p50_ms=22.0, server_cpu_s=1.1),
    ]
    exports = reported(phases)[1]
    assert exports.value == 46 / 50
    assert "kintsugi-exports: throughput vs kintsugi, concurrency 10" in exports.line
