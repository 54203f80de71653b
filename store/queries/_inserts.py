"""The inserts the writers share: an INSERT of the session's dialect, and one that skips rows whose unique key
is already there."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_of(dialect: str) -> Any:
    try:
        return _INSERTS[dialect]
    except KeyError:
        raise NotImplementedError(f"unsupported database dialect: {dialect}") from None


def dialect_insert(session: AsyncSession, table: Table | type[SQLModel]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` for the session's database, ready for ON CONFLICT: both dialects spell it alike,
    but only on their own Insert class. A model rather than its table gets RETURNING's rows back as models."""
    insert: postgresql.Insert | sqlite.Insert = _insert_of(session.get_bind().dialect.name)(table)
    return insert


async def insert_ignoring_duplicates(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], conflict_column: str
) -> int:
    """INSERT … ON CONFLICT (conflict_column) DO NOTHING; returns how many rows were written."""
    return len(await insert_new(session, table, rows, conflict_column))


async def insert_new(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], conflict_column: str
) -> set[Any]:
    """INSERT … ON CONFLICT (conflict_column) DO NOTHING; returns the `conflict_column` values of the rows written."""
    if not rows:
        return set()
    stmt = _insert_ignoring(session.get_bind().dialect.name, table, conflict_column)
    # RETURNING lists only the rows actually inserted; rowcount is unreliable for executemany on asyncpg.
    # SQLAlchemy's "insertmanyvalues" batches the rows, so any batch size stays under bind-parameter limits.
    result = await session.exec(stmt, params=list(rows))
    return set(result.scalars().all())


@functools.cache
def _insert_ignoring(dialect: str, table: Table, conflict_column: str) -> ReturningInsert[Any]:
    # Built once per table: every job's postflight runs several of these, and building one (and its cache key)
    # costs more Python than the database spends on the row.
    insert: postgresql.Insert | sqlite.Insert = _insert_of(dialect)(table)
    return insert.on_conflict_do_nothing(index_elements=[conflict_column]).returning(table.c[conflict_column])


def table_of(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table
