"""Reports over a recent window, read from the app database (never Temporal, so they stay cheap): the metrics
summary and the failures grouped by code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from api.auth import tenant_in_scope
from api.deps import SessionDep, TenantQuery, ViewerDep
from domain.metrics_summary import build_summary
from domain.windows import parse_window
from schemas.reports import ErrorReport, MetricsSummary
from schemas.tenants import ALL_TENANTS
from store import queries

router = APIRouter(prefix="/v1", tags=["reports"])


def _valid_window(text: str) -> str:
    parse_window(text)  # its ValueError is a 422 naming `window`, like any other bad query parameter
    return text


WindowQuery = Annotated[str, Query(max_length=16), AfterValidator(_valid_window)]
"""`?window=`: `15m`, `1h`, `24h`, `7d`… (`domain.windows.parse_window`); the report covers it up to now."""


def _bounds(window: str) -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    length: timedelta = parse_window(window)
    return end - length, end


@router.get("/metrics/summary", response_model=MetricsSummary, response_model_by_alias=True)
async def get_metrics_summary(
    principal: ViewerDep, session: SessionDep, window: WindowQuery = "24h", tenant_id: TenantQuery = None
) -> MetricsSummary:
    """Jobs by outcome, tokens, cost and latency percentiles over the window, overall, by model and by key; and,
    for the platform admin, by tenant (every tenant). Only the platform admin may name another tenant."""
    start, end = _bounds(window)
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, tenant_id)
        rows = await queries.summary_rows(
            session, tenant_id=tenant, start=start, end=end, every_tenant=principal.scope is ALL_TENANTS
        )
    return build_summary(rows, tenant_id=tenant, window=window, start=start, end=end)


@router.get("/errors", response_model=ErrorReport, response_model_by_alias=True)
async def get_errors(
    principal: ViewerDep, session: SessionDep, window: WindowQuery = "24h", tenant_id: TenantQuery = None
) -> ErrorReport:
    """The window's failed jobs grouped by error code, the most frequent first, with example job ids."""
    start, end = _bounds(window)
    async with session.begin():
        tenant = await tenant_in_scope(session, principal, tenant_id)
        groups = await queries.error_groups(session, tenant_id=tenant, start=start, end=end)
    return ErrorReport(window=window, start=start, end=end, data=groups)
