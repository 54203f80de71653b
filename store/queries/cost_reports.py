"""Spend: a tenant's `model_cost_logs` rows in a time window, summed per route, model, key or day in SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Integer, case, func, literal
from sqlalchemy.orm import Mapped
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from schemas.costs import ADMIN_KEY, UNKNOWN_ROUTE, CostGroup, CostGroupBy, CostReport, CostTotals
from store.models import ModelCostLog

_SPEND_DECIMALS = 10
"""As `domain.pricing.cost_usd` rounds a call's cost: sums keep no float noise beyond it."""


def utc_day(column: ColumnElement[datetime] | Mapped[datetime], dialect: str) -> ColumnElement[str]:
    """`YYYY-MM-DD` of a timestamp column in UTC, as the dialect spells it."""
    if dialect == "postgresql":
        # TIMESTAMPTZ: read in UTC whatever the session's time zone.
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    if dialect == "sqlite":
        # Stored as UTC text (`store.models.UTCDateTime`).
        return func.strftime("%Y-%m-%d", column)
    raise NotImplementedError(f"unsupported database dialect: {dialect}")


def _group_column(group_by: CostGroupBy, dialect: str) -> ColumnElement[str]:
    if group_by == "route":
        return func.coalesce(col(ModelCostLog.route), UNKNOWN_ROUTE)
    if group_by == "model":
        return col(ModelCostLog.provider) + literal("/") + col(ModelCostLog.model)
    if group_by == "key":
        return func.coalesce(col(ModelCostLog.key_id), ADMIN_KEY)
    return utc_day(col(ModelCostLog.created_at), dialect)


async def cost_report(
    session: AsyncSession, *, tenant_id: str, group_by: CostGroupBy, start: datetime, end: datetime
) -> CostReport:
    """The tenant's spend from `start` (inclusive) to `end` (exclusive), both timezone-aware, per group.

    `total` is summed from the groups, so it is their sum and, as every row falls in one group, the sum of the
    tenant's rows in the window.
    """
    group = _group_column(group_by, session.get_bind().dialect.name).label("grp")
    cost = col(ModelCostLog.cost_usd)
    # SQLModel's `Select` built directly: its `select()` types at most four columns, and `exec` wants its own class.
    columns: Select[str, float, int, int, int, int, int, float] = Select(
        group,
        func.coalesce(func.sum(cost), 0.0),  # SUM skips NULL: unpriced rows add no spend
        func.count(),
        func.coalesce(func.sum(col(ModelCostLog.input_tokens)), 0),
        func.coalesce(func.sum(col(ModelCostLog.output_tokens)), 0),
        func.sum(case((cost.is_(None), 1), else_=0), type_=Integer),
        func.sum(case((col(ModelCostLog.outcome) == "cache_hit", 1), else_=0), type_=Integer),
        func.coalesce(func.sum(col(ModelCostLog.saved_usd)), 0.0),
    )
    stmt = columns.where(
        col(ModelCostLog.tenant_id) == tenant_id,
        col(ModelCostLog.created_at) >= start,
        col(ModelCostLog.created_at) < end,
    ).group_by(group)
    groups = [
        CostGroup(
            group=group,
            spend_usd=round(spend, _SPEND_DECIMALS),
            calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            unpriced_calls=unpriced,
            cache_hits=hits,
            saved_usd=round(saved, _SPEND_DECIMALS),
        )
        for group, spend, calls, input_tokens, output_tokens, unpriced, hits, saved in (await session.exec(stmt)).all()
    ]
    # Sorted here rather than in SQL: PostgreSQL's collation and SQLite's byte order rank names differently.
    groups.sort(key=(lambda g: g.group) if group_by == "day" else (lambda g: (-g.spend_usd, g.group)))
    return CostReport(group_by=group_by, start=start, end=end, data=groups, total=_total(groups))


def _total(groups: list[CostGroup]) -> CostTotals:
    return CostTotals(
        spend_usd=round(sum(g.spend_usd for g in groups), _SPEND_DECIMALS),
        calls=sum(g.calls for g in groups),
        input_tokens=sum(g.input_tokens for g in groups),
        output_tokens=sum(g.output_tokens for g in groups),
        unpriced_calls=sum(g.unpriced_calls for g in groups),
        cache_hits=sum(g.cache_hits for g in groups),
        saved_usd=round(sum(g.saved_usd for g in groups), _SPEND_DECIMALS),
    )
