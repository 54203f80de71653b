"""The rows behind `GET /v1/metrics/summary`: job outcomes from `event_logs`, usage from `model_cost_logs`.

Counts and sums are grouped in SQL and exact. Percentiles need the values themselves: those reads take the
window's newest `LATENCY_SAMPLE` values only, so a busy window's percentiles describe its most recent part.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Integer, and_, case, distinct, func, literal
from sqlalchemy.orm import Mapped, aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from schemas.costs import ADMIN_KEY
from schemas.reports import JobCountRow, JobLatency, SummaryRows, TenantRows, UpstreamLatency, UsageRow
from schemas.tenants import ALL_TENANTS, TenantScope
from store.models import EventLog, ModelCostLog

LATENCY_SAMPLE = 10_000
"""The most latency values one summary reads per kind (job, upstream): enough for a stable p99, and a
bounded read however busy the window was."""

OUTCOME_EVENTS = ("job.started", "job.succeeded", "job.cache_hit", "job.failed", "job.cancelled", "job.parked")
"""The events a summary counts jobs by."""
END_EVENTS = ("job.succeeded", "job.cache_hit", "job.failed", "job.cancelled")
"""How a job run ends: a cache hit ends the job with `job.cache_hit`, not `job.succeeded`."""

_SPEND_DECIMALS = 10
"""As `domain.pricing.cost_usd` rounds a call's cost (and `GET /v1/costs` its sums)."""


async def summary_rows(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime, every_tenant: bool
) -> SummaryRows:
    """The tenant's rows from `start` (inclusive) to `end` (exclusive); with `every_tenant`, every tenant's too
    (for the platform admin's `by_tenant`)."""
    key = func.coalesce(col(ModelCostLog.key_id), ADMIN_KEY)
    model = col(ModelCostLog.provider) + literal("/") + col(ModelCostLog.model)
    tenant = TenantRows(
        counts=await _job_counts(session, tenant_id, start, end),
        usage=await _usage(session, tenant_id, key, start, end),
        job_latencies=await _job_latencies(session, tenant_id, start, end),
    )
    every = None
    if every_tenant:
        every = TenantRows(
            counts=await _job_counts(session, ALL_TENANTS, start, end),
            usage=await _usage(session, ALL_TENANTS, col(ModelCostLog.tenant_id), start, end),
            job_latencies=await _job_latencies(session, ALL_TENANTS, start, end),
        )
    return SummaryRows(
        tenant=tenant,
        by_model=await _usage(session, tenant_id, model, start, end),
        upstream_latencies=await _upstream_latencies(session, tenant_id, start, end),
        every_tenant=every,
    )


def _events_of(
    scope: TenantScope, start: datetime, end: datetime, table: type[EventLog] = EventLog
) -> list[ColumnElement[bool]]:
    window = [col(table.created_at) >= start, col(table.created_at) < end]
    return window if scope is ALL_TENANTS else [col(table.tenant_id) == scope, *window]


async def _job_counts(session: AsyncSession, scope: TenantScope, start: datetime, end: datetime) -> list[JobCountRow]:
    # Distinct jobs: a job run again (a retry workflow) writes its events again. Grouped by tenant and key, a job
    # is in one group only, so the groups add up to the tenant's and the platform's counts.
    # SQLModel's `Select` built directly: its `select()` types at most four columns, and `exec` wants its own class.
    columns: Select[str, str | None, str, int] = Select(
        col(EventLog.tenant_id), col(EventLog.key_id), col(EventLog.type), func.count(distinct(col(EventLog.job_id)))
    )
    stmt = columns.where(*_events_of(scope, start, end), col(EventLog.type).in_(OUTCOME_EVENTS)).group_by(
        col(EventLog.tenant_id), col(EventLog.key_id), col(EventLog.type)
    )
    return [JobCountRow(*row) for row in (await session.exec(stmt)).all()]


async def _usage(
    session: AsyncSession,
    scope: TenantScope,
    group: ColumnElement[str] | Mapped[str],
    start: datetime,
    end: datetime,
) -> list[UsageRow]:
    cost = col(ModelCostLog.cost_usd)
    label = group.label("grp")
    columns: Select[str, int, int, int, float, int, int] = Select(
        label,
        func.count(),
        func.coalesce(func.sum(col(ModelCostLog.input_tokens)), 0),
        func.coalesce(func.sum(col(ModelCostLog.output_tokens)), 0),
        func.coalesce(func.sum(cost), 0.0),  # SUM skips NULL: unpriced rows add no spend
        func.sum(case((cost.is_(None), 1), else_=0), type_=Integer),
        func.count(distinct(col(ModelCostLog.job_id))),
    )
    window = [col(ModelCostLog.created_at) >= start, col(ModelCostLog.created_at) < end]
    if scope is not ALL_TENANTS:
        window.append(col(ModelCostLog.tenant_id) == scope)
    rows = (await session.exec(columns.where(*window).group_by(label))).all()
    return [
        UsageRow(group, calls, input_tokens, output_tokens, round(spend, _SPEND_DECIMALS), unpriced, jobs)
        for group, calls, input_tokens, output_tokens, spend, unpriced, jobs in rows
    ]


async def _job_latencies(session: AsyncSession, scope: TenantScope, start: datetime, end: datetime) -> list[JobLatency]:
    """From each job end in the window back to the latest `job.started` of the same job before it (a job run
    again starts again), newest ends first."""
    ended, started = aliased(EventLog), aliased(EventLog)
    started_at = func.max(col(started.created_at))
    columns: Select[str, str | None, datetime, datetime] = Select(
        col(ended.tenant_id), col(ended.key_id), col(ended.created_at), started_at
    )
    stmt = (
        columns.join(
            started,
            and_(
                col(started.job_id) == col(ended.job_id),
                col(started.tenant_id) == col(ended.tenant_id),
                col(started.type) == "job.started",
                col(started.created_at) <= col(ended.created_at),
            ),
        )
        .where(*_events_of(scope, start, end, ended), col(ended.type).in_(END_EVENTS))
        .group_by(col(ended.id), col(ended.tenant_id), col(ended.key_id), col(ended.created_at))
        .order_by(col(ended.created_at).desc())
        .limit(LATENCY_SAMPLE)
    )
    return [
        JobLatency(tenant_id, key_id, (ended_at - began).total_seconds() * 1000)
        for tenant_id, key_id, ended_at, began in (await session.exec(stmt)).all()
    ]


async def _upstream_latencies(
    session: AsyncSession, tenant_id: str, start: datetime, end: datetime
) -> list[UpstreamLatency]:
    latency = col(ModelCostLog.upstream_latency_ms)
    model = col(ModelCostLog.provider) + literal("/") + col(ModelCostLog.model)
    columns: Select[str, float] = Select(model, latency)
    stmt = (
        columns.where(
            col(ModelCostLog.tenant_id) == tenant_id,
            col(ModelCostLog.created_at) >= start,
            col(ModelCostLog.created_at) < end,
            latency.is_not(None),
        )
        .order_by(col(ModelCostLog.created_at).desc())
        .limit(LATENCY_SAMPLE)
    )
    return [UpstreamLatency(model, ms) for model, ms in (await session.exec(stmt)).all()]
