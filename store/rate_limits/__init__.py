"""Where rate-limit buckets live, shared by every API replica: the app database by default, Redis when
`KINTSUGI_REDIS_URL` is set (DESIGN.md, "Data"). One interface, so the API and the worker never know which."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.rate_limits import Admission, BucketCheck
from schemas.policies import RateRules
from settings import Settings
from store.rate_limits.database import DatabaseRateLimiter
from store.rate_limits.redis_buckets import RateLimiterUnavailable, RedisRateLimiter

__all__ = ["DatabaseRateLimiter", "RateLimiter", "RateLimiterUnavailable", "RedisRateLimiter", "build_rate_limiter"]


class RateLimiter(Protocol):
    def now(self) -> float:
        """Unix seconds from the limiter's clock: the time every bucket of the deployment is measured in."""
        ...

    async def acquire(self, checks: Sequence[BucketCheck], now: float) -> Admission:
        """Charge every bucket of `checks`, or none when one of them cannot pay; atomic across processes.

        Raises:
            RateLimiterUnavailable: Redis cannot be reached (the database backend's outages are the database's
                own errors, which the API already answers 503).
        """
        ...

    async def settle(self, key_id: str | None, tenant_id: str, rules: RateRules, delta_tokens: int, now: float) -> None:
        """Correct the TPM buckets by the real usage: `delta_tokens` = real tokens - the admission's estimate
        (negative gives tokens back, never above capacity; positive may take a bucket below zero)."""
        ...

    async def aclose(self) -> None: ...


def build_rate_limiter(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], float] = time.time
) -> RateLimiter:
    """Redis when `settings.redis_url` is set, else the app database.

    The clock is wall time, not monotonic: buckets are shared between processes and machines, whose monotonic
    clocks have nothing in common.
    """
    if settings.redis_url:
        return RedisRateLimiter.from_url(settings.redis_url, clock=clock)
    return DatabaseRateLimiter(sessions, clock=clock)
