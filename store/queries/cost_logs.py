"""`model_cost_logs`: one row per billed call, written once whatever retries or replays happen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import ModelCostLog
from store.queries._inserts import insert_ignoring_duplicates, table_of

_DETAIL_COLUMNS = frozenset(table_of(ModelCostLog).columns.keys()) - {"id"}


async def insert_cost_log(
    session: AsyncSession,
    *,
    idempotency_key: str,
    job_id: str,
    tenant_id: str,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None,
    created_at: datetime,
    **details: Any,
) -> bool:
    """Record one billed call; a second call with the same `idempotency_key` writes nothing.

    `details` are the row's other columns (`ModelCostLog`: token details, key, route, unit prices, outcome…);
    the token details are parts of `input_tokens` and `output_tokens`, kept for pricing them apart.

    Returns:
        True if the row was written, False if a row with this key already existed.
    """
    unknown = set(details) - _DETAIL_COLUMNS
    if unknown:
        raise TypeError(f"model_cost_logs has no column {sorted(unknown)}")
    row = {
        "idempotency_key": idempotency_key,
        "job_id": job_id,
        "tenant_id": tenant_id,
        "provider": provider,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": cost_usd,
        "created_at": created_at,
        **details,
    }
    written = await insert_ignoring_duplicates(session, table_of(ModelCostLog), [row], "idempotency_key")
    return written == 1


async def cost_logs_for_job(session: AsyncSession, job_id: str, tenant_id: str) -> list[ModelCostLog]:
    stmt = (
        select(ModelCostLog)
        .where(ModelCostLog.job_id == job_id, ModelCostLog.tenant_id == tenant_id)
        .order_by(col(ModelCostLog.id))
    )
    return list((await session.exec(stmt)).all())
