"""The Redis the rate-limit tests use (`KINTSUGI_TEST_REDIS_URL`, default the machine's own on 6379)."""

from __future__ import annotations

import os

import pytest
import redis.asyncio as redis

REDIS_URL = os.environ.get("KINTSUGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_or_skip() -> redis.Redis:
    """A client of the test Redis; the test is skipped when it is not reachable, unless CI requires it
    (`KINTSUGI_TEST_REQUIRE_REDIS=1`: a missing Redis must fail CI, not skip its tests)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except redis.ConnectionError as err:
        await client.aclose()
        if os.environ.get("KINTSUGI_TEST_REQUIRE_REDIS") == "1":
            raise
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {err}")
    return client
