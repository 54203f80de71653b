"""Rate-limit backends (the app database on SQLite and PostgreSQL, and Redis): the same behaviour from each,
atomic under concurrency.

Each scenario is written once against the `RateLimiter` interface and run on every backend. The clock is passed
in (`now`), so refill is exact and no test sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.rate_limits import BucketCheck, bucket_checks, bucket_rules
from schemas.policies import RateRules
from settings import Settings
from store.engine import create_engine, session_factory
from store.models import RateLimitBucket
from store.rate_limits import (
    DatabaseRateLimiter,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
    build_rate_limiter,
)
from tests.support.redis import REDIS_URL, redis_or_skip

T0 = 1_800_000_000.0

Scenario = Callable[[Callable[[], RateLimiter]], Awaitable[None]]
"""A test body: given a factory of limiters over one shared store (each like another process), check something."""


def checks(rate: RateRules, tokens: int = 0, *, key: str = "k1", tenant: str = "t1") -> tuple[BucketCheck, ...]:
    return bucket_checks(bucket_rules(rate, tenant_id=tenant, key_id=key), tokens)


async def admitted_of(limiter: RateLimiter, wanted: tuple[BucketCheck, ...], now: float, n: int) -> int:
    """How many of `n` requests made at once were admitted."""
    results = await asyncio.gather(*(limiter.acquire(wanted, now) for _ in range(n)))
    return sum(a.admitted for a in results)


async def exactly_capacity_of_many_concurrent_requests(make: Callable[[], RateLimiter]) -> None:
    # Two limiters, two connection pools: the requests race as from two API processes.
    first, second = make(), make()
    wanted = checks(RateRules(rpm=10), key=uuid.uuid4().hex)

    counts = await asyncio.gather(admitted_of(first, wanted, T0, 50), admitted_of(second, wanted, T0, 50))

    assert sum(counts) == 10


async def refusal_charges_no_bucket(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    rate = RateRules(rpm=10, tpm=100)
    assert (await limiter.acquire(checks(rate, 80), T0)).admitted

    refused = await limiter.acquire(checks(rate, 30), T0)  # the RPM bucket could pay; the TPM bucket cannot

    assert not refused.admitted
    assert refused.refused is not None and refused.refused.check.rule.kind == "tpm"
    assert {b.check.rule.kind: b.level for b in refused.levels} == {"rpm": 9.0, "tpm": 20.0}
    again = await limiter.acquire(checks(rate, 20), T0)
    assert {b.check.rule.kind: b.level for b in again.levels} == {"rpm": 8.0, "tpm": 0.0}


async def buckets_refill_over_time(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    wanted = checks(RateRules(rpm=10))
    assert await admitted_of(limiter, wanted, T0, 12) == 10

    assert not (await limiter.acquire(wanted, T0 + 5.9)).admitted
    assert (await limiter.acquire(wanted, T0 + 6.0)).admitted  # one request every 6 s
    assert not (await limiter.acquire(wanted, T0 + 6.5)).admitted
    assert await admitted_of(limiter, wanted, T0 + 600, 12) == 10  # full again, never more


async def a_tenant_limit_is_shared_by_its_keys(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    tenant = uuid.uuid4().hex
    rate = RateRules(rpm=5, tenant_rpm=6)

    first = await admitted_of(limiter, checks(rate, key="a", tenant=tenant), T0, 10)
    second = await admitted_of(limiter, checks(rate, key="b", tenant=tenant), T0, 10)
    other_tenant = await admitted_of(limiter, checks(rate, key="c", tenant=uuid.uuid4().hex), T0, 10)

    assert (first, second, other_tenant) == (5, 1, 5)


async def settling_corrects_the_tpm_buckets(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    rate = RateRules(tpm=1000, tenant_tpm=1000)
    assert (await limiter.acquire(checks(rate, 900), T0)).admitted

    await limiter.settle("k1", "t1", rate, -600, T0)  # it used 300 of the 900 it was charged

    assert (await limiter.acquire(checks(rate, 700), T0)).admitted
    await limiter.settle("k1", "t1", rate, 1000, T0)  # it used 1700 of 700: the buckets go into debt
    refused = await limiter.acquire(checks(rate, 1), T0)
    assert refused.refused is not None and refused.refused.level == -1000.0
    assert refused.refused.wait_s == pytest.approx(60.06)  # 1001 tokens at 1000 a minute


async def settling_never_fills_a_bucket_past_capacity(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    rate = RateRules(tpm=100)
    await limiter.settle("k1", "t1", rate, -5000, T0)  # a bucket never charged is full: nothing to give back

    assert (await limiter.acquire(checks(rate, 100), T0)).admitted
    assert not (await limiter.acquire(checks(rate, 1), T0)).admitted


SCENARIOS: list[Scenario] = [
    exactly_capacity_of_many_concurrent_requests,
    refusal_charges_no_bucket,
    buckets_refill_over_time,
    a_tenant_limit_is_shared_by_its_keys,
    settling_corrects_the_tpm_buckets,
    settling_never_fills_a_bucket_past_capacity,
]


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never anyone else's)."""
    client = await redis_or_skip()
    prefix = f"kintsugi-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_database_backend(
    scenario: Scenario, migrated_db_url: str, migrated_sessions: async_sessionmaker[AsyncSession]
) -> None:
    engines = []

    def make() -> RateLimiter:
        engine = create_engine(migrated_db_url)
        engines.append(engine)
        return DatabaseRateLimiter(session_factory(engine))

    try:
        await scenario(make)
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_redis_backend(scenario: Scenario, redis_prefix: str) -> None:
    limiters: list[RedisRateLimiter] = []

    def make() -> RateLimiter:
        limiters.append(RedisRateLimiter.from_url(REDIS_URL, prefix=redis_prefix))
        return limiters[-1]

    try:
        await scenario(make)
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_a_refusal_leaves_the_database_as_it_was(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    limiter = DatabaseRateLimiter(migrated_sessions)
    rate = RateRules(rpm=10, tpm=100)
    assert (await limiter.acquire(checks(rate, 100), T0)).admitted
    before = await stored(migrated_sessions)

    assert not (await limiter.acquire(checks(rate, 50), T0 + 1)).admitted

    assert await stored(migrated_sessions) == before == {"rpm:key:k1": (9.0, T0), "tpm:key:k1": (0.0, T0)}


async def stored(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[float, float]]:
    async with sessions() as session:
        rows = await session.exec(select(RateLimitBucket).order_by(col(RateLimitBucket.key)))
        return {row.key: (row.tokens, row.updated_at) for row in rows}


async def test_redis_buckets_expire_once_they_would_be_full_again(redis_prefix: str) -> None:
    limiter = RedisRateLimiter.from_url(REDIS_URL, prefix=redis_prefix)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await limiter.acquire(checks(RateRules(rpm=60, tpm=600), 300), T0)

        rpm_ttl = await client.pttl(f"{redis_prefix}{{t1}}:rpm:key:k1")
        tpm_ttl = await client.pttl(f"{redis_prefix}{{t1}}:tpm:key:k1")
    finally:
        await limiter.aclose()
        await client.aclose()

    assert 1000 < rpm_ttl <= 2000  # 1 s to refill one request, plus a second's margin
    assert 30_000 < tpm_ttl <= 31_000  # 300 of 600 tokens a minute: 30 s


async def test_the_backend_is_redis_when_a_redis_url_is_set(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    sessions = session_factory(engine)
    database = build_rate_limiter(Settings(env="test", admin_api_key="x"), sessions)
    in_redis = build_rate_limiter(Settings(env="test", admin_api_key="x", redis_url=REDIS_URL), sessions)
    try:
        assert isinstance(database, DatabaseRateLimiter)
        assert isinstance(in_redis, RedisRateLimiter)
    finally:
        await in_redis.aclose()
        await engine.dispose()


async def test_an_unreachable_redis_is_reported_as_unavailable() -> None:
    limiter = RedisRateLimiter.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        with pytest.raises(RateLimiterUnavailable):
            await limiter.acquire(checks(RateRules(rpm=1)), T0)
    finally:
        await limiter.aclose()
