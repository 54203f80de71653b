"""Fixtures of the activity and provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.abuse import AbuseScorer
from activities.llm import LLMActivities
from domain.flags import default_flags
from schemas.routes import RoutesConfig
from store.flag_cache import FlagCache
from store.policy_cache import PolicyCache


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The shared client a worker hands its providers (no retries of its own)."""
    async with httpx.AsyncClient() as client:
        yield client


def holder(
    routes: RoutesConfig,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    *,
    upstream_keys: dict[str, str] | None = None,
    cache_ttl_s: float = 3600,
) -> LLMActivities:
    """The activities' holder as the worker builds it, with flags read through a cache whose TTL is 0 (a flag a
    test sets is in force for the next activity) and the default similarity and cache thresholds."""
    return LLMActivities(
        routes=routes,
        sessions=sessions,
        http=http,
        upstream_keys=upstream_keys or {},
        local_call_max_s=60,
        flags=FlagCache(sessions, defaults=default_flags(frozenset()), ttl_s=0),
        similarity_threshold=0.9,
        cache_ttl_s=cache_ttl_s,
        cache_near_duplicate=0.95,
        policies=PolicyCache(sessions, ttl_s=0),
        abuse=AbuseScorer(sessions),
    )
