"""`queries.cost_report` on SQLite and PostgreSQL: spend per route, model, key and UTC day, in a window, for one
tenant; unpriced calls and cache hits counted apart; the total is the sum of the groups and of the rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from schemas.costs import CostGroupBy, CostReport, CostTotals
from store import queries
from store.engine import AsyncSession
from store.models import ModelCostLog

TENANT, OTHER = "ten_spend", "ten_other"
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
TOTAL = CostTotals(
    spend_usd=1.875, calls=6, input_tokens=400, output_tokens=40, unpriced_calls=1, cache_hits=1, saved_usd=0.75
)


def cost_row(at: datetime, **fields: Any) -> ModelCostLog:
    row: dict[str, Any] = {
        "tenant_id": TENANT,
        "route": "fast",
        "provider": "up",
        "model": "m-a",
        "key_id": "key_1",
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        **fields,
    }
    job_id = f"job_{uuid.uuid4().hex}"
    return ModelCostLog(idempotency_key=f"{job_id}:1", job_id=job_id, created_at=at, **row)


def cost_rows() -> list[ModelCostLog]:
    return [
    # 20:30 UTC on March 1st, written in another zone: its day is the UTC one.
    cost_row(datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=5))), cost_usd=0.5, input_tokens=100,
             output_tokens=10),
    cost_row(datetime(2026, 3, 2, 23, 59, 59, 999_999, tzinfo=UTC), model="m-b", cost_usd=0.25, input_tokens=200,
             output_tokens=20),
    cost_row(datetime(2026, 3, 2, tzinfo=UTC), key_id=None, cost_usd=None, price_known=False, input_tokens=50,
             output_tokens=5),
    cost_row(datetime(2026, 3, 3, 8, tzinfo=UTC), route="claude", provider="claude", model="c-1", key_id="key_2",
             outcome="cache_hit", saved_usd=0.75),
    cost_row(datetime(2026, 3, 3, 12, tzinfo=UTC), route=None, key_id=None, cost_usd=1.0, input_tokens=10,
             output_tokens=1),
    cost_row(START, key_id="key_2", cost_usd=0.125, input_tokens=40, output_tokens=4),  # `from` is inclusive
    # Outside the window or the tenant: never counted.
    cost_row(END, cost_usd=100.0, input_tokens=1_000),
    cost_row(START - timedelta(microseconds=1), cost_usd=100.0, input_tokens=1_000),
    cost_row(datetime(2026, 3, 2, tzinfo=UTC), tenant_id=OTHER, cost_usd=50.0, input_tokens=1_000),
    ]  # fmt: skip


@pytest.fixture
async def sessions(migrated_sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions on a database holding `cost_rows()`; on PostgreSQL in a zone far from UTC (`migrated_sessions`),
    so a day cut in the server's zone rather than UTC would show."""
    async with migrated_sessions() as session, session.begin():
        session.add_all(cost_rows())
    return migrated_sessions


async def report(sessions: async_sessionmaker[AsyncSession], group_by: CostGroupBy, **window: datetime) -> CostReport:
    async with sessions() as session, session.begin():
        return await queries.cost_report(
            session, tenant_id=TENANT, group_by=group_by, start=window.get("start", START), end=window.get("end", END)
        )


def rows(report: CostReport) -> list[tuple[str, float, int, int, int, int, int, float]]:
    return [
        (g.group, g.spend_usd, g.calls, g.input_tokens, g.output_tokens, g.unpriced_calls, g.cache_hits, g.saved_usd)
        for g in report.data
    ]


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        # group, spend, calls, input, output, unpriced, cache hits, saved
        ("route", [("(unknown)", 1.0, 1, 10, 1, 0, 0, 0.0), ("fast", 0.875, 4, 390, 39, 1, 0, 0.0),
                   ("claude", 0.0, 1, 0, 0, 0, 1, 0.75)]),
        ("model", [("up/m-a", 1.625, 4, 200, 20, 1, 0, 0.0), ("up/m-b", 0.25, 1, 200, 20, 0, 0, 0.0),
                   ("claude/c-1", 0.0, 1, 0, 0, 0, 1, 0.75)]),
        ("key", [("(admin)", 1.0, 2, 60, 6, 1, 0, 0.0), ("key_1", 0.75, 2, 300, 30, 0, 0, 0.0),
                 ("key_2", 0.125, 2, 40, 4, 0, 1, 0.75)]),
        ("day", [("2026-03-01", 0.625, 2, 140, 14, 0, 0, 0.0), ("2026-03-02", 0.25, 2, 250, 25, 1, 0, 0.0),
                 ("2026-03-03", 1.0, 2, 10, 1, 0, 1, 0.75)]),
    ],
)  # fmt: skip
async def test_spend_per_group_and_its_total(
    sessions: async_sessionmaker[AsyncSession], group_by: CostGroupBy, expected: list[tuple[Any, ...]]
) -> None:
    result = await report(sessions, group_by)

    assert rows(result) == [pytest.approx(row) for row in expected]
    assert result.total == TOTAL
    summed = {field: sum(getattr(g, field) for g in result.data) for field in CostTotals.model_fields}
    assert summed == pytest.approx(result.total.model_dump())
    assert (result.group_by, result.start, result.end) == (group_by, START, END)


async def test_the_total_is_every_row_of_the_tenant_in_the_window(sessions: async_sessionmaker[AsyncSession]) -> None:
    counted = [row for row in cost_rows() if row.tenant_id == TENANT and START <= row.created_at < END]

    total = (await report(sessions, "model")).total

    assert total.calls == len(counted)
    assert total.spend_usd == pytest.approx(sum(row.cost_usd for row in counted if row.cost_usd is not None))
    assert total.input_tokens == sum(row.input_tokens for row in counted)
    assert total.unpriced_calls == sum(row.cost_usd is None for row in counted)


async def test_window_bounds_include_from_and_exclude_to(sessions: async_sessionmaker[AsyncSession]) -> None:
    first_instant = await report(sessions, "day", start=START, end=START + timedelta(microseconds=1))
    up_to_end = await report(sessions, "day", start=END - timedelta(hours=1), end=END + timedelta(microseconds=1))
    empty = await report(sessions, "route", start=START, end=START)

    assert [(g.group, g.spend_usd) for g in first_instant.data] == [("2026-03-01", 0.125)]
    assert [(g.group, g.spend_usd) for g in up_to_end.data] == [("2026-03-04", 100.0)]
    assert empty.data == []
    assert empty.total == CostTotals(
        spend_usd=0, calls=0, input_tokens=0, output_tokens=0, unpriced_calls=0, cache_hits=0, saved_usd=0
    )
