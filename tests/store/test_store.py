"""store/ and migrations/ on SQLite and PostgreSQL: migrations, idempotent inserts, tenants and API keys."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel

from schemas.tenants import ALL_TENANTS
from store import queries
from store.engine import AsyncSession, create_engine, normalize_url, session_factory
from store.migrate import alembic_config, upgrade
from store.models import DEFAULT_TENANT_ID

TABLES = {"tenants", "api_keys", "model_cost_logs", "event_logs"}


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(upgrade, db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def test_upgrade_from_empty_creates_tables_and_default_tenant(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)

    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sqlalchemy.inspect(c).get_table_names()))
        async with session_factory(engine)() as session:
            tenant = await queries.get_tenant(session, DEFAULT_TENANT_ID)
    finally:
        await engine.dispose()

    assert tables >= TABLES | {"alembic_version"}
    assert tenant is not None
    assert tenant.name == "default"
    assert tenant.created_at.tzinfo is not None


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine, db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)

    async with engine.connect() as conn:
        versions = (await conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))).scalars().all()
        tenants = (await conn.execute(sqlalchemy.text("SELECT id FROM tenants"))).scalars().all()
    assert versions == [_head()]
    assert tenants == [DEFAULT_TENANT_ID]


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    """A model changed without a migration (or the reverse) shows up as an autogenerate diff."""

    def diff(conn: sqlalchemy.Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_downgrade_to_base_and_upgrade_again(engine: AsyncEngine, db_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "base")
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(sqlalchemy.inspect(c).get_table_names()))
    assert not tables & TABLES

    await asyncio.to_thread(upgrade, db_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(sqlalchemy.inspect(c).get_table_names()))
    assert tables >= TABLES


async def test_cost_log_is_written_once_per_idempotency_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # A non-UTC offset on purpose: the same instant must come back, in UTC.
    created = datetime(2025, 1, 2, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    row = functools.partial(
        queries.insert_cost_log,
        idempotency_key="job-1:0",
        job_id="job-1",
        tenant_id=DEFAULT_TENANT_ID,
        provider="sim",
        model="sim-1",
        input_tokens=10,
        output_tokens=20,
        created_at=created,
    )
    async with sessions() as session, session.begin():
        first = await row(session, cost_usd=0.0125)
    # A retried postflight may send different numbers under the same key; the first write stands.
    async with sessions() as session, session.begin():
        second = await row(session, cost_usd=99.0)

    async with sessions() as session:
        logs = await queries.cost_logs_for_job(session, "job-1", DEFAULT_TENANT_ID)
        other_tenant = await queries.cost_logs_for_job(session, "job-1", "ten_other")

    assert (first, second) == (True, False)
    assert len(logs) == 1
    assert (logs[0].input_tokens, logs[0].output_tokens, logs[0].cost_usd) == (10, 20, 0.0125)
    assert logs[0].created_at == created
    assert logs[0].created_at.utcoffset() == timedelta(0)
    assert other_tenant == []


async def test_events_are_written_once_per_event_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    now = datetime.now(UTC)

    def event(key: str, type_: str) -> dict[str, object]:
        return dict(
            event_key=key,
            tenant_id=DEFAULT_TENANT_ID,
            job_id="job-2",
            type=type_,
            payload={"key": key, "nested": {"n": 1}},
            created_at=now,
        )

    async with sessions() as session, session.begin():
        first = await queries.insert_events(session, [event("e1", "job.started"), event("e2", "job.succeeded")])
    async with sessions() as session, session.begin():
        second = await queries.insert_events(session, [event("e2", "job.succeeded"), event("e3", "job.exported")])
    async with sessions() as session, session.begin():
        empty = await queries.insert_events(session, [])

    async with sessions() as session:
        events = await queries.events_for_job(session, "job-2", DEFAULT_TENANT_ID)

    assert (first, second, empty) == ({"e1", "e2"}, {"e3"}, set())
    assert [e.event_key for e in events] == ["e1", "e2", "e3"]
    assert events[0].payload == {"key": "e1", "nested": {"n": 1}}
    assert all(e.warehouse_exported_at is None for e in events)


async def test_api_key_is_found_by_plaintext_and_stored_hashed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        tenant = await queries.create_tenant(session, "acme")
        key, plaintext = await queries.create_api_key(session, tenant_id=tenant.id, role="app", name="ci")

    async with sessions() as session:
        found = await queries.find_api_key(session, plaintext)
        missing = await queries.find_api_key(session, plaintext + "x")
        stored = (await session.execute(sqlalchemy.text("SELECT key_hash, prefix FROM api_keys"))).all()

    assert plaintext.startswith("ks_")
    assert found is not None
    assert (found.id, found.tenant_id, found.role, found.name) == (key.id, tenant.id, "app", "ci")
    assert missing is None
    assert stored == [(hashlib.sha256(plaintext.encode()).hexdigest(), plaintext[:8])]
    assert plaintext not in str(stored)


async def test_revoked_api_key_is_not_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        tenant = await queries.create_tenant(session, "acme")
        key, plaintext = await queries.create_api_key(session, tenant_id=tenant.id, role="viewer", name=None)

    async with sessions() as session, session.begin():
        by_other_tenant = await queries.revoke_api_key(session, key.id, "ten_other")
    async with sessions() as session:
        still_live = await queries.find_api_key(session, plaintext)
    async with sessions() as session, session.begin():
        revoked = await queries.revoke_api_key(session, key.id, tenant.id)
    async with sessions() as session, session.begin():
        again = await queries.revoke_api_key(session, key.id, ALL_TENANTS)
        unknown = await queries.revoke_api_key(session, "key_nope", ALL_TENANTS)
    async with sessions() as session:
        after = await queries.find_api_key(session, plaintext)

    assert by_other_tenant is False
    assert still_live is not None
    assert revoked is True
    assert (again, unknown) == (False, False)
    assert after is None


async def test_admin_can_revoke_any_tenants_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        key, plaintext = await queries.create_api_key(session, tenant_id=DEFAULT_TENANT_ID, role="admin", name=None)
    async with sessions() as session, session.begin():
        assert await queries.revoke_api_key(session, key.id, ALL_TENANTS) is True
    async with sessions() as session:
        assert await queries.find_api_key(session, plaintext) is None


async def test_api_key_for_unknown_tenant_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Foreign keys hold on SQLite too (PRAGMA foreign_keys=ON)."""
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await queries.create_api_key(session, tenant_id="ten_missing", role="app", name=None)


async def test_tenant_create_and_get(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        created = await queries.create_tenant(session, "Acme Corp")

    async with sessions() as session:
        fetched = await queries.get_tenant(session, created.id)
        missing = await queries.get_tenant(session, "ten_missing")

    assert created.id.startswith("ten_")
    assert fetched is not None
    assert (fetched.id, fetched.name) == (created.id, "Acme Corp")
    assert fetched.created_at.tzinfo is not None
    assert missing is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///.data/k.db", "sqlite+aiosqlite:///.data/k.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_plain_urls_get_the_async_driver(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
