"""Feature flag rows, their audit entries and the per-process cache, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select

from domain.flags import default_flags
from schemas.audit import Actor
from schemas.tenants import ALL_TENANTS
from store import queries
from store.engine import AsyncSession
from store.flag_cache import FlagCache, environment_flag_defaults
from store.models import GLOBAL_SCOPE, AuditLog, FeatureFlag

PLATFORM = Actor("default", None)
DEFAULTS = default_flags(frozenset())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def set_flag(
    sessions: async_sessionmaker[AsyncSession],
    key: str,
    enabled: bool,
    *,
    tenant_id: str = GLOBAL_SCOPE,
    rollout_percent: int = 100,
    actor: Actor = PLATFORM,
) -> None:
    async with sessions() as session, session.begin():
        await queries.set_flag(
            session, key=key, tenant_id=tenant_id, enabled=enabled, rollout_percent=rollout_percent, actor=actor
        )


async def audit_rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuditLog]:
    async with sessions() as session:
        return list((await session.exec(select(AuditLog).order_by(col(AuditLog.id)))).all())


async def test_set_flag_upserts_one_row_per_scope_and_audits_each_change(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await set_flag(migrated_sessions, "enable_reroute", True, rollout_percent=40)
    await set_flag(migrated_sessions, "enable_reroute", False, actor=Actor("default", "key_1"))
    await set_flag(migrated_sessions, "enable_reroute", True, tenant_id="default", actor=Actor("default", "key_2"))

    async with migrated_sessions() as session:
        rows = sorted(await queries.flag_rows(session), key=lambda row: row.tenant_id)
    audit = await audit_rows(migrated_sessions)

    assert [(r.tenant_id, r.enabled, r.rollout_percent, r.updated_by) for r in rows] == [
        (GLOBAL_SCOPE, False, 100, "key_1"),
        ("default", True, 100, "key_2"),
    ]
    assert [(a.action, a.target, a.tenant_id, a.actor_key_id, a.before, a.after) for a in audit] == [
        ("flag.set", "enable_reroute", GLOBAL_SCOPE, None, None, {"enabled": True, "rollout_percent": 40}),
        (
            "flag.set",
            "enable_reroute",
            GLOBAL_SCOPE,
            "key_1",
            {"enabled": True, "rollout_percent": 40},
            {"enabled": False, "rollout_percent": 100},
        ),
        ("flag.set", "enable_reroute", "default", "key_2", None, {"enabled": True, "rollout_percent": 100}),
    ]


async def test_a_rolled_back_change_leaves_neither_row_nor_audit_entry(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(RuntimeError):
        async with migrated_sessions() as session, session.begin():
            await queries.set_flag(
                session,
                key="enable_reroute",
                tenant_id=GLOBAL_SCOPE,
                enabled=False,
                rollout_percent=100,
                actor=PLATFORM,
            )
            raise RuntimeError("the request failed after the write")

    async with migrated_sessions() as session:
        assert await queries.flag_rows(session) == []
    assert await audit_rows(migrated_sessions) == []


async def test_delete_flag_drops_the_row_and_audits_only_a_real_change(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await set_flag(migrated_sessions, "enable_reroute", False, tenant_id="default")

    async with migrated_sessions() as session, session.begin():
        dropped = await queries.delete_flag(session, key="enable_reroute", tenant_id="default", actor=PLATFORM)
        again = await queries.delete_flag(session, key="enable_reroute", tenant_id="default", actor=PLATFORM)

    async with migrated_sessions() as session:
        assert await queries.flag_rows(session) == []
    audit = await audit_rows(migrated_sessions)
    assert (dropped, again) == (True, False)
    assert [(a.action, a.before, a.after) for a in audit][1:] == [
        ("flag.delete", {"enabled": False, "rollout_percent": 100}, None)
    ]


async def test_audit_page_is_newest_first_paginated_and_tenant_scoped(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with migrated_sessions() as session, session.begin():
        tenant = await queries.create_tenant(session, "acme")
        other = await queries.create_tenant(session, "other")
    await set_flag(migrated_sessions, "enable_reroute", False)  # global: every tenant's admin sees it
    for key in ("enable_rate_limiting", "enable_policy_engine", "enable_self_healing"):
        await set_flag(migrated_sessions, key, False, tenant_id=tenant.id, actor=Actor(tenant.id, "key_a"))
    await set_flag(migrated_sessions, "enable_reroute", True, tenant_id=other.id)
    async with migrated_sessions() as session, session.begin():
        await queries.insert_audit(
            session,
            tenant_id=GLOBAL_SCOPE,
            actor=PLATFORM,
            action="tenant.create",
            target=other.id,
            before=None,
            after={},
        )

    targets: list[str] = []
    before_id: int | None = None
    async with migrated_sessions() as session:
        while True:
            page = await queries.audit_page(session, tenant_scope=tenant.id, limit=2, before_id=before_id)
            targets += [row.target for row in page.rows]
            if page.next_before_id is None:
                break
            before_id = page.next_before_id
        everything = await queries.audit_page(session, tenant_scope=ALL_TENANTS, limit=50, before_id=None)

    # The other tenant's change and the global entry that is not a flag change stay out of this tenant's view.
    assert targets == ["enable_self_healing", "enable_policy_engine", "enable_rate_limiting", "enable_reroute"]
    assert len(everything.rows) == 6 and everything.next_before_id is None
    ids = [row.id or 0 for row in everything.rows]
    assert ids == sorted(ids, reverse=True)


async def test_cache_sees_a_change_after_the_ttl_not_before(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    cache = FlagCache(migrated_sessions, defaults=DEFAULTS, ttl_s=5.0, clock=clock)
    assert "enable_reroute" in await cache.enabled("default")

    await set_flag(migrated_sessions, "enable_reroute", False)
    clock.now += 4.9
    stale = await cache.for_tenant("default")
    clock.now += 0.2
    fresh = await cache.for_tenant("default")

    assert (stale["enable_reroute"].enabled, stale["enable_reroute"].source) == (True, "default")
    assert (fresh["enable_reroute"].enabled, fresh["enable_reroute"].source) == (False, "global")
    assert "enable_reroute" not in await cache.enabled("default")
    assert cache.reads == 2


async def test_invalidate_shows_a_change_at_once(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    cache = FlagCache(migrated_sessions, defaults=DEFAULTS, ttl_s=5.0, clock=Clock())
    assert "enable_reroute" in await cache.enabled("default")

    await set_flag(migrated_sessions, "enable_reroute", False, tenant_id="default")
    cache.invalidate()

    assert "enable_reroute" not in await cache.enabled("default")
    assert "enable_reroute" in await cache.enabled("ten_other")


async def test_many_concurrent_callers_share_one_read(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    cache = FlagCache(migrated_sessions, defaults=DEFAULTS, ttl_s=5.0, clock=clock)

    results = await asyncio.gather(*(cache.enabled(f"ten_{i % 5}") for i in range(50)))
    for _ in range(100):
        await cache.for_tenant("ten_1")

    assert cache.reads == 1
    assert all("track_model_costs" in on for on in results)
    clock.now += 5.0
    await asyncio.gather(*(cache.for_tenant("ten_1") for _ in range(20)))
    assert cache.reads == 2


async def test_a_read_overtaken_by_invalidate_is_not_kept_as_fresh(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    cache = FlagCache(migrated_sessions, defaults=DEFAULTS, ttl_s=5.0, clock=Clock())
    reading = asyncio.create_task(cache.rows())
    await asyncio.sleep(0)  # the read has begun
    cache.invalidate()  # as the API does after committing its own change
    await reading

    await cache.rows()

    assert cache.reads == 2


async def test_environment_defaults_follow_the_exporters_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    monkeypatch.delenv("KINTSUGI_RUDDERSTACK_DATA_PLANE_URL", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")

    defaults = environment_flag_defaults()

    assert defaults["enable_async_trace_export"] is True
    assert defaults["enable_langfuse_export"] is False
    assert defaults["enable_warehouse_export"] is False


async def test_rows_of_the_flag_table_are_never_handed_out(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    """The cache keeps detached copies: a caller mutating what it got cannot change what others read."""
    await set_flag(migrated_sessions, "enable_reroute", False)
    cache = FlagCache(migrated_sessions, defaults=DEFAULTS, clock=Clock())

    rows = await cache.rows()

    assert not any(isinstance(row, FeatureFlag) for row in rows)
    with pytest.raises(AttributeError):
        rows[0].enabled = True  # type: ignore[misc]
