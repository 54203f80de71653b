"""Migration 0002 on SQLite and PostgreSQL: cost rows gain their usage details, old rows read as zero."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store import queries
from store.engine import create_engine, session_factory
from store.migrate import alembic_config, upgrade
from store.models import DEFAULT_TENANT_ID

DETAILS = ("cached_input_tokens", "cache_write_input_tokens", "reasoning_tokens")


async def test_rows_billed_before_0002_read_back_with_zero_details(db_url: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(db_url), "0001")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO model_cost_logs (idempotency_key, job_id, tenant_id, provider, model, input_tokens,"
                    " output_tokens, cost_usd, created_at) VALUES ('old:1', 'old', :tenant, 'up', 'm', 10, 5, 0.5, :at)"
                ),
                {"tenant": DEFAULT_TENANT_ID, "at": datetime.now(UTC).replace(tzinfo=None)},
            )

        await asyncio.to_thread(upgrade, db_url)

        async with session_factory(engine)() as session:
            (row,) = await queries.cost_logs_for_job(session, "old", DEFAULT_TENANT_ID)
        assert (row.input_tokens, row.output_tokens, row.cost_usd) == (10, 5, 0.5)
        assert [getattr(row, name) for name in DETAILS] == [0, 0, 0]

        await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0001")
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("model_cost_logs")}
            )
            kept = (await conn.execute(sa.text("SELECT count(*) FROM model_cost_logs"))).scalar_one()
        assert not columns & set(DETAILS)
        assert kept == 1
    finally:
        await engine.dispose()


async def test_a_cost_row_keeps_its_usage_details(migrated_db_url: str) -> None:
    engine = create_engine(migrated_db_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            await queries.insert_cost_log(
                session,
                idempotency_key="job-d:1",
                job_id="job-d",
                tenant_id=DEFAULT_TENANT_ID,
                provider="claude",
                model="claude-haiku-4-5",
                input_tokens=1000,
                output_tokens=300,
                cached_input_tokens=700,
                cache_write_input_tokens=200,
                reasoning_tokens=120,
                cost_usd=0.01,
                created_at=datetime.now(UTC),
            )
        async with sessions() as session:
            (row,) = await queries.cost_logs_for_job(session, "job-d", DEFAULT_TENANT_ID)
    finally:
        await engine.dispose()

    assert [getattr(row, name) for name in DETAILS] == [700, 200, 120]
