"""The one insert that every idempotent writer shares: skip rows whose unique key is already there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession


async def insert_ignoring_duplicates(
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


def table_of(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table
