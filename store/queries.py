"""Query functions. They only `flush()`: the caller owns the transaction (`async with session.begin()`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.tenants import Role
from store.models import DEFAULT_TENANT_ID, ApiKey, EventLog, ModelCostLog, Tenant, utcnow

__all__ = [
    "DEFAULT_TENANT_ID",
    "Role",
    "cost_logs_for_job",
    "create_api_key",
    "create_tenant",
    "events_for_job",
    "find_api_key",
    "get_tenant",
    "hash_key",
    "insert_cost_log",
    "insert_events",
    "revoke_api_key",
]

KEY_PREFIX = "ks_"


async def _insert_ignoring_duplicates(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], conflict_column: str
) -> int:
    """INSERT … ON CONFLICT (conflict_column) DO NOTHING; returns how many rows were written."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=[conflict_column])
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=[conflict_column])
    else:
        raise NotImplementedError(f"unsupported database dialect: {dialect}")
    # RETURNING lists only the rows actually inserted; rowcount is unreliable for executemany on asyncpg.
    # SQLAlchemy's "insertmanyvalues" batches the rows, so any batch size stays under bind-parameter limits.
    result = await session.exec(stmt.returning(table.c.id), params=list(rows))
    return len(result.all())


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
    cost_usd: float,
    created_at: datetime,
) -> bool:
    """Record one billed call; a second call with the same `idempotency_key` writes nothing.

    Returns:
        True if the row was written, False if a row with this key already existed.
    """
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
    }
    written = await _insert_ignoring_duplicates(session, _table(ModelCostLog), [row], "idempotency_key")
    return written == 1


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Append events to the outbox, skipping any whose `event_key` is already there.

    Each row has `event_key`, `tenant_id`, `job_id`, `type`, `payload` and `created_at`.

    Returns:
        The number of rows written.
    """
    return await _insert_ignoring_duplicates(session, _table(EventLog), rows, "event_key")


async def cost_logs_for_job(session: AsyncSession, job_id: str, tenant_id: str) -> list[ModelCostLog]:
    stmt = (
        select(ModelCostLog)
        .where(ModelCostLog.job_id == job_id, ModelCostLog.tenant_id == tenant_id)
        .order_by(col(ModelCostLog.id))
    )
    return list((await session.exec(stmt)).all())


async def events_for_job(session: AsyncSession, job_id: str, tenant_id: str) -> list[EventLog]:
    stmt = select(EventLog).where(EventLog.job_id == job_id, EventLog.tenant_id == tenant_id).order_by(col(EventLog.id))
    return list((await session.exec(stmt)).all())


async def create_tenant(session: AsyncSession, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    await session.flush()
    return tenant


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


def hash_key(plaintext: str) -> str:
    """sha256 hex of an API key; keys are 256-bit random, so an unsalted fast hash is safe to look up by."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


async def create_api_key(session: AsyncSession, *, tenant_id: str, role: Role, name: str | None) -> tuple[ApiKey, str]:
    """Create a key for `tenant_id`. Only its hash is stored.

    Returns:
        The row and the plaintext key, which cannot be recovered later.
    """
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant_id, role=role, name=name, key_hash=hash_key(plaintext), prefix=plaintext[:8])
    session.add(key)
    await session.flush()
    return key, plaintext


async def find_api_key(session: AsyncSession, plaintext: str) -> ApiKey | None:
    """The live (not revoked) key whose hash matches `plaintext`, if any."""
    stmt = select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext), col(ApiKey.revoked_at).is_(None))
    return (await session.exec(stmt)).first()


async def revoke_api_key(session: AsyncSession, key_id: str, tenant_id: str | None) -> bool:
    """Revoke a key of `tenant_id` (None: of any tenant).

    Returns:
        False if no such live key exists (unknown, another tenant's, or already revoked).
    """
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or (tenant_id is not None and key.tenant_id != tenant_id):
        return False
    key.revoked_at = utcnow()
    session.add(key)
    await session.flush()
    return True


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table
