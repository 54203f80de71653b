"""`/ui/`: the tenant's spend today and this month (UTC), its calls, cache savings, top models and jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from api.ui.auth import UserDep
from api.ui.charts import bar_chart
from api.ui.formatting import usd
from api.ui.job_counts import count_jobs
from api.ui.rendering import render
from schemas.costs import CostGroup, CostReport
from store import queries

router = APIRouter(prefix="/ui", include_in_schema=False)

TOP_MODELS = 5


def day_window(now: datetime) -> tuple[datetime, datetime]:
    """Today, UTC: [midnight, next midnight)."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def month_window(now: datetime) -> tuple[datetime, datetime]:
    """This calendar month, UTC: [the 1st, the 1st of next month)."""
    start = day_window(now)[0].replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@router.get("/")
async def dashboard(request: Request, user: UserDep) -> HTMLResponse:
    tenant_id = user.principal.tenant_id
    now = datetime.now(UTC)
    # Temporal counts the jobs while the database sums the spend.
    (today, month), jobs = await asyncio.gather(
        _reports(request.app.state.sessions, tenant_id, now), count_jobs(request.app.state, tenant_id)
    )
    top = month.data[:TOP_MODELS]  # the report lists groups by spend, highest first
    return render(
        request,
        "dashboard.html",
        user=user,
        title="Dashboard",
        today=today.total,
        month=month.total,
        month_name=month.start.strftime("%B %Y"),
        chart=bar_chart([(row.group, row.spend_usd, _spend_text(row)) for row in top]),
        jobs=jobs,
    )


async def _reports(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, now: datetime
) -> tuple[CostReport, CostReport]:
    """Today's and this month's spend, per model."""
    async with sessions() as session:
        reports = [
            await queries.cost_report(session, tenant_id=tenant_id, group_by="model", start=start, end=end)
            for start, end in (day_window(now), month_window(now))
        ]
    return reports[0], reports[1]


def _spend_text(row: CostGroup) -> str:
    """A model's spend, and how many of its calls it leaves out: $0.00 alone would read as free."""
    if row.unpriced_calls == 0:
        return usd(row.spend_usd)
    unpriced = f"{row.unpriced_calls} unpriced"
    return unpriced if row.unpriced_calls == row.calls else f"{usd(row.spend_usd)} + {unpriced}"
