"""Budgets on SQLite and PostgreSQL (sessions in Asia/Kolkata): reservations never commit past a limit however many
run at once, a refusal writes nothing, settle and release happen once, and days and months are UTC's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import BudgetCounter, BudgetReservation
from store.queries.budgets import BudgetRefusal, budget_usage, periods, release, reserve, settle

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


async def reserve_one(
    sessions: Sessions,
    tenant: str,
    amount: float,
    *,
    key: str | None = None,
    job: str | None = None,
    daily: float | None = None,
    monthly: float | None = None,
    now: datetime = NOW,
) -> BudgetRefusal | None:
    """One reservation in a transaction of its own, as one job's preflight makes it."""
    job = job or f"job-{uuid.uuid4().hex}"
    async with sessions() as session, session.begin():
        return await reserve(
            session,
            key=key or f"{job}:1",
            job_id=job,
            tenant_id=tenant,
            amount_usd=amount,
            daily_usd=daily,
            monthly_usd=monthly,
            now=now,
        )


async def usage(sessions: Sessions, tenant: str, now: datetime = NOW) -> dict[str, float]:
    async with sessions() as session:
        return await budget_usage(session, tenant_id=tenant, now=now)


async def counters(sessions: Sessions, tenant: str) -> dict[tuple[str, str], tuple[float, float]]:
    async with sessions() as session:
        rows = await session.exec(select(BudgetCounter).where(col(BudgetCounter.tenant_id) == tenant))
        return {(r.period, r.period_start): (r.committed_usd, r.spent_usd) for r in rows}


async def settle_one(sessions: Sessions, key: str, cost: float | None) -> None:
    async with sessions() as session, session.begin():
        await settle(session, key=key, cost_usd=cost)


async def release_job(sessions: Sessions, job: str) -> None:
    async with sessions() as session, session.begin():
        await release(session, job_id=job)


@pytest.mark.parametrize("limit", ["daily", "monthly"])
async def test_fifty_reservations_at_once_commit_exactly_what_the_budget_covers(
    migrated_sessions: Sessions, limit: str
) -> None:
    tenant = uuid.uuid4().hex
    daily, monthly = (1.0, None) if limit == "daily" else (None, 1.0)

    results = await asyncio.gather(
        *(reserve_one(migrated_sessions, tenant, 0.1, daily=daily, monthly=monthly) for _ in range(50))
    )

    refusals = [r for r in results if r is not None]
    assert len(refusals) == 40
    assert {r.period for r in refusals} == {"day" if limit == "daily" else "month"}
    assert all(r.committed_usd + r.amount_usd > 1.0 for r in refusals)
    committed = await usage(migrated_sessions, tenant)
    assert committed["day"] == committed["month"] == pytest.approx(1.0)
    assert committed["day"] <= 1.0 + 1e-9


async def test_a_refusal_writes_nothing(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    assert await reserve_one(migrated_sessions, tenant, 5.0, daily=1.0) == BudgetRefusal("day", 1.0, 0.0, 5.0)
    assert await counters(migrated_sessions, tenant) == {}  # not even an empty counter for the day

    assert await reserve_one(migrated_sessions, tenant, 0.75, daily=1.0) is None
    before = await counters(migrated_sessions, tenant)
    assert await reserve_one(migrated_sessions, tenant, 0.5, daily=1.0) == BudgetRefusal("day", 1.0, 0.75, 0.5)

    assert await counters(migrated_sessions, tenant) == before
    async with migrated_sessions() as session:
        reservations = (
            await session.exec(select(BudgetReservation).where(BudgetReservation.tenant_id == tenant))
        ).all()
    assert len(reservations) == 1


async def test_the_month_refuses_first_when_both_would(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex

    refusal = await reserve_one(migrated_sessions, tenant, 3.0, daily=1.0, monthly=2.0)

    assert refusal == BudgetRefusal("month", 2.0, 0.0, 3.0)


async def test_a_period_without_a_limit_is_still_counted(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex

    assert await reserve_one(migrated_sessions, tenant, 0.25) is None

    assert await usage(migrated_sessions, tenant) == {"day": 0.25, "month": 0.25}


async def test_a_reservation_key_reserves_once(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    for _ in range(3):
        assert await reserve_one(migrated_sessions, tenant, 0.4, key="job-1:1", job="job-1", daily=1.0) is None

    assert await usage(migrated_sessions, tenant) == {"day": 0.4, "month": 0.4}


async def test_the_same_reservation_from_two_transactions_at_once_reserves_once(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex

    results = await asyncio.gather(
        *(reserve_one(migrated_sessions, tenant, 0.4, key="job-2:1", job="job-2") for _ in range(5))
    )

    assert results == [None] * 5
    assert await usage(migrated_sessions, tenant) == {"day": 0.4, "month": 0.4}


async def test_settle_moves_committed_to_the_real_cost_once(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    await reserve_one(migrated_sessions, tenant, 0.5, key="job-3:1", job="job-3")

    for _ in range(2):
        await settle_one(migrated_sessions, "job-3:1", 0.125)

    day, month = periods(NOW)
    assert await counters(migrated_sessions, tenant) == {("day", day): (0.125, 0.125), ("month", month): (0.125, 0.125)}
    await release_job(migrated_sessions, "job-3")  # a settled reservation has nothing left to give back
    assert await usage(migrated_sessions, tenant) == {"day": 0.125, "month": 0.125}


async def test_settlements_at_once_settle_once(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    await reserve_one(migrated_sessions, tenant, 0.5, key="job-4:1", job="job-4")

    await asyncio.gather(*(settle_one(migrated_sessions, "job-4:1", 1.0) for _ in range(5)))

    assert await usage(migrated_sessions, tenant) == {"day": 1.0, "month": 1.0}


async def test_an_unpriced_call_settles_at_the_reserved_amount(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    await reserve_one(migrated_sessions, tenant, 0.5, key="job-5:1", job="job-5")

    await settle_one(migrated_sessions, "job-5:1", None)

    day, month = periods(NOW)
    assert await counters(migrated_sessions, tenant) == {("day", day): (0.5, 0.5), ("month", month): (0.5, 0.5)}
    async with migrated_sessions() as session:
        reservation = await session.get(BudgetReservation, "job-5:1")
    assert reservation is not None and (reservation.state, reservation.settled_usd) == ("settled", 0.5)


async def test_release_gives_every_open_reservation_of_the_job_back_once(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    for n in (1, 2):
        await reserve_one(migrated_sessions, tenant, 0.25, key=f"job-6:{n}", job="job-6", daily=1.0)
    await reserve_one(migrated_sessions, tenant, 0.25, key="job-7:1", job="job-7", daily=1.0)

    for _ in range(2):
        await release_job(migrated_sessions, "job-6")

    assert await usage(migrated_sessions, tenant) == {"day": 0.25, "month": 0.25}
    await settle_one(migrated_sessions, "job-6:1", 0.25)  # released: nothing to settle
    assert await usage(migrated_sessions, tenant) == {"day": 0.25, "month": 0.25}
    assert await reserve_one(migrated_sessions, tenant, 0.75, daily=1.0) is None  # the released room is usable


async def test_days_roll_over_at_utc_midnight_and_months_keep_counting(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    before_midnight = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)  # 05:29 on the 27th in Kolkata
    after_midnight = before_midnight + timedelta(minutes=2)

    assert await reserve_one(migrated_sessions, tenant, 1.0, daily=1.0, now=before_midnight) is None
    assert await reserve_one(migrated_sessions, tenant, 1.0, daily=1.0, now=before_midnight) is not None
    assert await reserve_one(migrated_sessions, tenant, 1.0, daily=1.0, now=after_midnight) is None

    assert await usage(migrated_sessions, tenant, before_midnight) == {"day": 1.0, "month": 2.0}
    assert await usage(migrated_sessions, tenant, after_midnight) == {"day": 1.0, "month": 2.0}
    day_after = await counters(migrated_sessions, tenant)
    assert set(day_after) == {("day", "2026-11-26"), ("day", "2026-11-27"), ("month", "2026-11")}


async def test_a_time_given_in_another_zone_counts_in_its_utc_day(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    kolkata = timezone(timedelta(hours=5, minutes=30))
    early_on_the_first = datetime(2026, 12, 1, 3, 0, tzinfo=kolkata)  # still 30 November in UTC

    await reserve_one(migrated_sessions, tenant, 0.5, now=early_on_the_first)

    assert set(await counters(migrated_sessions, tenant)) == {("day", "2026-11-30"), ("month", "2026-11")}


async def test_settling_a_reservation_from_yesterday_moves_yesterdays_counters(migrated_sessions: Sessions) -> None:
    tenant = uuid.uuid4().hex
    yesterday = NOW - timedelta(days=1)
    await reserve_one(migrated_sessions, tenant, 0.5, key="job-8:1", job="job-8", now=yesterday)

    await settle_one(migrated_sessions, "job-8:1", 0.2)

    assert await usage(migrated_sessions, tenant, yesterday) == {"day": 0.2, "month": 0.2}
    assert await usage(migrated_sessions, tenant, NOW) == {"day": 0.0, "month": 0.2}


def test_periods_need_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        periods(datetime(2026, 11, 26, 12, 0))  # a naive time: which day would it be?
