"""The metrics summary from the rows the store grouped: job counts by outcome, usage, latency percentiles."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from domain.percentiles import percentiles
from schemas.costs import ADMIN_KEY
from schemas.reports import (
    GroupSummary,
    JobCountRow,
    JobCounts,
    LatencyPercentiles,
    MetricsSummary,
    ModelSummary,
    SummaryRows,
    TenantRows,
    UsageRow,
    UsageTotals,
)

_COUNTED_AS: dict[str, tuple[str, ...]] = {
    "job.started": ("started",),
    "job.succeeded": ("succeeded",),
    "job.cache_hit": ("succeeded", "cache_hits"),
    "job.failed": ("failed",),
    "job.cancelled": ("cancelled",),
    "job.parked": ("parked",),
}
"""Which `JobCounts` fields an event type adds to: a cache hit is how a job answered from the cache ends."""

_SPEND_DECIMALS = 10


def latency(values: Iterable[float]) -> LatencyPercentiles:
    measured = list(values)
    found = percentiles(measured, (50, 95, 99))
    if found is None:
        return LatencyPercentiles()
    return LatencyPercentiles(p50=round(found[50], 1), p95=round(found[95], 1), p99=round(found[99], 1),
                              count=len(measured))  # fmt: skip


def job_counts(rows: Iterable[JobCountRow]) -> JobCounts:
    counts = JobCounts()
    for row in rows:
        for field in _COUNTED_AS.get(row.type, ()):
            setattr(counts, field, getattr(counts, field) + row.jobs)
    return counts


def usage_totals(rows: Iterable[UsageRow]) -> UsageTotals:
    rows = list(rows)
    return UsageTotals(
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), _SPEND_DECIMALS),
        unpriced_calls=sum(r.unpriced_calls for r in rows),
    )


def _usage_fields(row: UsageRow | None) -> dict[str, int | float]:
    return usage_totals([row] if row is not None else []).model_dump()


def _groups(rows: TenantRows, group_of: Callable[[str, str | None], str]) -> list[GroupSummary]:
    """One row per group (key or tenant) found in any of the reads: a key may have jobs but no billed call."""
    counts: dict[str, list[JobCountRow]] = defaultdict(list)
    for count in rows.counts:
        counts[group_of(count.tenant_id, count.key_id)].append(count)
    latencies: dict[str, list[float]] = defaultdict(list)
    for measured in rows.job_latencies:
        latencies[group_of(measured.tenant_id, measured.key_id)].append(measured.ms)
    usage = {row.group: row for row in rows.usage}
    groups = [
        GroupSummary(
            group=group,
            jobs=job_counts(counts[group]),
            job_latency_ms=latency(latencies[group]),
            **_usage_fields(usage.get(group)),
        )
        for group in counts.keys() | latencies.keys() | usage.keys()
    ]
    groups.sort(key=lambda g: (-g.cost_usd, g.group))
    return groups


def build_summary(rows: SummaryRows, *, tenant_id: str, window: str, start: datetime, end: datetime) -> MetricsSummary:
    """The tenant's summary; `by_tenant` only when `rows` hold every tenant's."""
    upstream: dict[str, list[float]] = defaultdict(list)
    for call in rows.upstream_latencies:
        upstream[call.model].append(call.ms)
    by_model = [
        ModelSummary(
            model=row.group, jobs=row.jobs, upstream_latency_ms=latency(upstream[row.group]), **_usage_fields(row)
        )
        for row in rows.by_model
    ]
    by_model.sort(key=lambda m: (-m.cost_usd, m.model))
    by_tenant = None
    if rows.every_tenant is not None:
        by_tenant = _groups(rows.every_tenant, lambda tenant, _key: tenant)
    return MetricsSummary(
        window=window,
        start=start,
        end=end,
        tenant_id=tenant_id,
        jobs=job_counts(rows.tenant.counts),
        job_latency_ms=latency(m.ms for m in rows.tenant.job_latencies),
        upstream_latency_ms=latency(c.ms for c in rows.upstream_latencies),
        by_model=by_model,
        by_key=_groups(rows.tenant, lambda _tenant, key: key if key is not None else ADMIN_KEY),
        by_tenant=by_tenant,
        **usage_totals(rows.by_model).model_dump(),
    )
