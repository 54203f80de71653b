"""`response_cache`: answers kept for repeats of a tenant's requests, found by exact or near-identical prompt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import true
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.similarity import PromptPrint, SimilarityMethod
from store.models import ResponseCacheEntry
from store.queries._inserts import insert_ignoring_duplicates, table_of
from store.queries.similarity import find_similar


async def find_cached_answer(
    session: AsyncSession,
    *,
    tenant_id: str,
    route: str,
    fingerprint: str,
    print_: PromptPrint,
    threshold: float,
    now: datetime,
    exclude_job_id: str | None = None,
) -> tuple[ResponseCacheEntry, float, SimilarityMethod] | None:
    """The newest unexpired answer of this tenant to the same request: the same route and parameters
    (`fingerprint`) and the same prompt, or one at least `threshold` similar; never `exclude_job_id`'s own.
    Returns (entry, score, method)."""
    live = (
        col(ResponseCacheEntry.tenant_id) == tenant_id,
        col(ResponseCacheEntry.route) == route,
        col(ResponseCacheEntry.fingerprint) == fingerprint,
        col(ResponseCacheEntry.expires_at) > now,
        col(ResponseCacheEntry.job_id) != exclude_job_id if exclude_job_id is not None else true(),
    )
    exact = await session.exec(
        select(ResponseCacheEntry)
        .where(*live, col(ResponseCacheEntry.exact_hash) == print_.exact_hash)
        .order_by(col(ResponseCacheEntry.created_at).desc())
        .limit(1)
    )
    entry = exact.first()
    if entry is not None:
        return entry, 1.0, "exact"
    # Near-identical: the prompts recorded by similarity, among those with a live answer here.
    match = await find_similar(
        session,
        tenant_id=tenant_id,
        print_=print_,
        threshold=threshold,
        among=select(ResponseCacheEntry.job_id).where(*live),
    )
    if match is None:
        return None
    near = await session.exec(
        select(ResponseCacheEntry).where(*live, col(ResponseCacheEntry.job_id) == match.matched_job_id)
    )
    entry = near.first()
    return None if entry is None else (entry, match.score, match.method)


async def insert_cached_answer(
    session: AsyncSession,
    *,
    job_id: str,
    tenant_id: str,
    route: str,
    fingerprint: str,
    exact_hash: str,
    answer: dict[str, Any],
    usage: dict[str, Any],
    provider: str,
    model: str,
    cost_usd: float | None,
    created_at: datetime,
    expires_at: datetime,
) -> bool:
    """Keep a job's answer for repeats until `expires_at`; a retried postflight writes it once."""
    row = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "route": route,
        "fingerprint": fingerprint,
        "exact_hash": exact_hash,
        "answer": answer,
        "usage": usage,
        "provider": provider,
        "model": model,
        "cost_usd": cost_usd,
        "created_at": created_at,
        "expires_at": expires_at,
    }
    return await insert_ignoring_duplicates(session, table_of(ResponseCacheEntry), [row], "job_id") == 1
