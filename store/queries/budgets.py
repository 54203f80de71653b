"""Budgets: a tenant's spend per UTC day and month (`budget_counters`) and what each job reserved
(`budget_reservations`).

Preflight reserves a call's estimated cost; postflight settles it with the real cost, or the job releases it.
`committed_usd` is settled spend plus open reservations, so concurrent jobs can never together commit more than
the limit. All functions run in the caller's transaction and only flush.

Concurrency: a reservation reads the counters, decides, and writes only when it fits, so a refusal writes
nothing. Reservations of one tenant are serialised for that: on PostgreSQL by a transaction-scoped advisory lock
on the tenant (it also covers the first reservation of a day, whose counter row does not exist yet to lock); on
SQLite by the database's one write lock, which the first statement takes (a write that changes no value). On
SQLite, call `reserve` before reading anything else in the transaction: a transaction that read first cannot
take the write lock once another process has written since. Counter rows are always updated day first, then
month, so a reservation, a settlement and a release never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import BudgetCounter, BudgetReservation
from store.queries._inserts import dialect_insert, table_of

Period = Literal["day", "month"]
TOLERANCE_USD = 1e-9
"""Sums of float prices drift by ~1e-16: a reservation that brings committed to exactly the limit must fit."""

_COUNTERS = table_of(BudgetCounter)
_RESERVATIONS = table_of(BudgetReservation)


@dataclass(frozen=True)
class BudgetRefusal:
    """Why a reservation did not fit (`budget_exceeded`)."""

    period: Period
    limit_usd: float
    committed_usd: float
    """Settled spend plus open reservations in the period, before this reservation."""
    amount_usd: float


def periods(now: datetime) -> tuple[str, str]:
    """The UTC day (`2026-11-26`) and month (`2026-11`) `now` falls in, whatever its own time zone."""
    if now.tzinfo is None:
        raise ValueError("budget periods need an aware datetime (UTC)")
    utc = now.astimezone(UTC)
    return utc.strftime("%Y-%m-%d"), utc.strftime("%Y-%m")


async def reserve(
    session: AsyncSession,
    *,
    key: str,
    job_id: str,
    tenant_id: str,
    amount_usd: float,
    daily_usd: float | None,
    monthly_usd: float | None,
    now: datetime,
) -> BudgetRefusal | None:
    """Reserve `amount_usd` of the tenant's day and month, or refuse without writing anything.

    A key reserved already returns None again without reserving twice (a retried preflight). A period without a
    limit is still counted, so `budget_usage` reports it and a limit set later starts from the real spend.

    Returns:
        None when reserved; the refusal otherwise (the month's when both would refuse: waiting for tomorrow
        would not help).
    """
    day, month = periods(now)
    await _serialise_tenant(session, tenant_id, day, month)
    if await session.get(BudgetReservation, key) is not None:
        return None
    committed = await _committed(session, tenant_id, day, month)
    limits: tuple[tuple[Period, float | None], ...] = (("month", monthly_usd), ("day", daily_usd))
    for period, limit in limits:
        used = committed[period]
        if limit is not None and used + amount_usd > limit + TOLERANCE_USD:
            return BudgetRefusal(period=period, limit_usd=limit, committed_usd=used, amount_usd=amount_usd)
    for period, start in (("day", day), ("month", month)):
        upsert = dialect_insert(session, _COUNTERS).values(
            tenant_id=tenant_id, period=period, period_start=start, committed_usd=amount_usd, spent_usd=0.0
        )
        await session.exec(
            upsert.on_conflict_do_update(
                index_elements=["tenant_id", "period", "period_start"],
                set_={"committed_usd": _COUNTERS.c.committed_usd + amount_usd},
            )
        )
    session.add(
        BudgetReservation(
            key=key, job_id=job_id, tenant_id=tenant_id, day=day, month=month, amount_usd=amount_usd, created_at=now
        )
    )
    await session.flush()
    return None


async def settle(session: AsyncSession, *, key: str, cost_usd: float | None) -> None:
    """Turn a reservation into spend: committed moves by (cost - amount), spent grows by cost. Once: settling
    again, or a released or unknown reservation, changes nothing. An unpriced call (`cost_usd` None) settles at
    the reserved amount."""
    # The state change comes first, conditional: of two settlements at once only one finds `reserved`.
    cost = sa.func.coalesce(sa.bindparam("cost", cost_usd, type_=sa.Float), _RESERVATIONS.c.amount_usd)
    claimed = await session.exec(
        sa.update(_RESERVATIONS)
        .where(_RESERVATIONS.c.key == key, _RESERVATIONS.c.state == "reserved")
        .values(state="settled", settled_usd=cost)
        .returning(
            _RESERVATIONS.c.tenant_id,
            _RESERVATIONS.c.day,
            _RESERVATIONS.c.month,
            _RESERVATIONS.c.amount_usd,
            _RESERVATIONS.c.settled_usd,
        )
    )
    row = claimed.first()
    if row is None:
        return
    tenant_id, day, month, amount, settled = row
    await _move(session, [(tenant_id, day, month, settled - amount, settled)])


async def release(session: AsyncSession, *, job_id: str) -> None:
    """Give back every open reservation of the job (it failed, was refused later, or was cancelled); settled and
    released ones stay as they are, so releasing twice changes nothing."""
    claimed = await session.exec(
        sa.update(_RESERVATIONS)
        .where(_RESERVATIONS.c.job_id == job_id, _RESERVATIONS.c.state == "reserved")
        .values(state="released")
        .returning(_RESERVATIONS.c.tenant_id, _RESERVATIONS.c.day, _RESERVATIONS.c.month, _RESERVATIONS.c.amount_usd)
    )
    await _move(session, [(tenant_id, day, month, -amount, 0.0) for tenant_id, day, month, amount in claimed.all()])


async def budget_usage(session: AsyncSession, *, tenant_id: str, now: datetime) -> dict[str, float]:
    """What the tenant has committed (settled spend plus open reservations) in the UTC day and month of `now`."""
    day, month = periods(now)
    return await _committed(session, tenant_id, day, month)


async def _serialise_tenant(session: AsyncSession, tenant_id: str, day: str, month: str) -> None:
    """Hold the tenant's reservation lock until the transaction ends (see the module's docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        lock = select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"kintsugi.budget:{tenant_id}", 0)))
        await session.exec(lock)
        return
    # A write that changes nothing: SQLite's write lock is taken by the statement, not by a changed row.
    await session.exec(
        sa.update(_COUNTERS)
        .where(_COUNTERS.c.tenant_id == tenant_id, _COUNTERS.c.period_start.in_((day, month)))
        .values(committed_usd=_COUNTERS.c.committed_usd)
    )


async def _committed(session: AsyncSession, tenant_id: str, day: str, month: str) -> dict[str, float]:
    rows = await session.exec(
        select(BudgetCounter.period, BudgetCounter.committed_usd).where(
            col(BudgetCounter.tenant_id) == tenant_id,
            sa.or_(
                sa.and_(col(BudgetCounter.period) == "day", col(BudgetCounter.period_start) == day),
                sa.and_(col(BudgetCounter.period) == "month", col(BudgetCounter.period_start) == month),
            ),
        )
    )
    committed = {"day": 0.0, "month": 0.0}
    for period, value in rows.all():
        committed[period] = value
    return committed


async def _move(session: AsyncSession, moves: Iterable[tuple[str, str, str, float, float]]) -> None:
    """Add (committed, spent) to the counters of each (tenant, day, month, committed, spent): every day row
    first, then every month row, each in order (see the module's docstring)."""
    deltas: dict[tuple[str, str, str], tuple[float, float]] = {}
    for tenant_id, day, month, committed, spent in moves:
        for counter in ((tenant_id, "day", day), (tenant_id, "month", month)):
            before = deltas.get(counter, (0.0, 0.0))
            deltas[counter] = (before[0] + committed, before[1] + spent)
    for (tenant_id, period, start), (committed, spent) in sorted(deltas.items(), key=lambda item: _lock_order(item[0])):
        await session.exec(
            sa.update(_COUNTERS)
            .where(_COUNTERS.c.tenant_id == tenant_id, _COUNTERS.c.period == period, _COUNTERS.c.period_start == start)
            .values(committed_usd=_COUNTERS.c.committed_usd + committed, spent_usd=_COUNTERS.c.spent_usd + spent)
        )


def _lock_order(counter: tuple[str, str, str]) -> tuple[int, str, str]:
    tenant_id, period, start = counter
    return (0 if period == "day" else 1, tenant_id, start)
