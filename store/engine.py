"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg), chosen by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["AsyncSession", "create_engine", "normalize_url", "session_factory"]

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalize_url(url: str) -> str:
    """Return `url` with the async driver of its dialect, so plain `postgresql://` and `sqlite:///` work.

    A URL that already names a driver (`postgresql+asyncpg://`, `sqlite+aiosqlite://`) is kept as it is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    return f"{_ASYNC_DRIVERS.get(scheme, scheme)}://{rest}"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Build the async engine for `url`; for SQLite, create the file's folder and set the PRAGMAs."""
    url = normalize_url(url)
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    database = parsed.database or ""
    if is_sqlite and database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    # A server connection can die between checkouts, so it is pinged first; a SQLite file cannot, and the
    # extra SELECT 1 per transaction is measurable on the job hot path.
    engine = create_async_engine(url, pool_pre_ping=not is_sqlite, **kwargs)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Readers don't block the writer and vice versa: the API and the worker share one file.
        cursor.execute("PRAGMA journal_mode=WAL")
        # SQLite ignores FOREIGN KEY clauses unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        # Wait up to 5 s for another process's write lock instead of failing with "database is locked".
        cursor.execute("PRAGMA busy_timeout=5000")
        # With WAL, NORMAL is still crash-safe for the database and skips an fsync on every commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit, so rows stay readable outside the transaction.

    The sessions are SQLModel's `AsyncSession` (a SQLAlchemy `AsyncSession` with a typed `exec`).
    """
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
