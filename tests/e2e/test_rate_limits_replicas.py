"""Two API processes, one store of buckets: a key's RPM holds across replicas, on SQLite, PostgreSQL and Redis.

Each API is a real `uvicorn api.app:create_app` process; requests alternate between them and arrive in bursts, so
the two race for the same bucket as replicas behind a load balancer do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from sqlmodel import func, select

from store.models import ApiKey, Policy, RateLimitBucket
from store.rate_limits.redis_buckets import DEFAULT_PREFIX
from tests.support.harness import Harness, KintsugiFactory
from tests.support.redis import REDIS_URL, redis_or_skip

RPM = 10
REQUESTS = 30
BURST = 6
"""Requests sent at once, alternating between the processes: the first burst fits (each process admits some),
the second crosses the limit with both processes racing for the last requests of the bucket."""
JOB = {"model": "sim-1", "messages": [{"role": "user", "content": "hello"}]}


@contextlib.asynccontextmanager
async def tenant_keys_deleted(client: redis.Redis, tenant_id: str) -> AsyncIterator[str]:
    """The Redis prefix of the tenant's buckets (the tenant is this test's own); its keys are deleted after."""
    prefix = f"{DEFAULT_PREFIX}{{{tenant_id}}}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def limited_key(h: Harness) -> tuple[str, str, dict[str, str]]:
    """A new tenant and an app key of it under a policy of `rpm: RPM`: the tenant's id, the key's, its headers."""
    tenant = (await h.http.post("/v1/tenants", json={"name": "replicas"}, headers=h.admin)).json()["id"]
    key = (await h.http.post("/v1/keys", json={"tenant_id": tenant, "role": "app"}, headers=h.admin)).json()
    async with h.app.state.sessions() as session, session.begin():
        policy = Policy(tenant_id=tenant, name="limited", document={"rate": {"rpm": RPM}})
        session.add(policy)
        await session.flush()
        row = await session.get(ApiKey, key["id"])
        assert row is not None
        row.policy_id = policy.id
    return tenant, key["id"], {"Authorization": f"Bearer {key['key']}"}


async def bucket_rows(h: Harness) -> int:
    async with h.app.state.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(RateLimitBucket))).one())


@pytest.mark.parametrize("buckets", ["database", "redis"])
async def test_two_api_processes_share_a_keys_rpm(
    buckets: str,
    make_kintsugi: KintsugiFactory,
    migrated_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await redis_or_skip() if buckets == "redis" else None
    async with make_kintsugi(migrated_db_url) as h, contextlib.AsyncExitStack() as stack:
        tenant, key_id, headers = await limited_key(h)
        if client is not None:
            prefix = await stack.enter_async_context(tenant_keys_deleted(client, tenant))
            monkeypatch.setenv("KINTSUGI_REDIS_URL", REDIS_URL)  # the API processes' environment, not this one's
        # Admission needs only the Temporal server to start a job: the harness's worker runs them.
        monkeypatch.setenv("KINTSUGI_API_WORKER", "false")
        apis = []
        for n in (1, 2):
            _, url = stack.enter_context(h.api_process(tmp_path / f"api-{n}.log"))
            apis.append(url)

        async with httpx.AsyncClient(timeout=30) as http:
            # A job through each first, under no limit: each process connects to Temporal and reads its policies
            # and flags, so neither has a head start on the bucket.
            for url in apis:
                warm = await http.post(f"{url}/v1/jobs", json=JOB, headers=h.admin)
                assert warm.status_code == 202, warm.text
            started = time.monotonic()
            answers: list[httpx.Response] = []
            for _ in range(REQUESTS // BURST):
                burst = [http.post(f"{apis[i % 2]}/v1/jobs", json=JOB, headers=headers) for i in range(BURST)]
                answers += await asyncio.gather(*burst)
            elapsed = time.monotonic() - started

        admitted_by = [sum(a.status_code == 202 for a in answers[n::2]) for n in (0, 1)]
        refused = [a for a in answers if a.status_code == 429]
        print(f"{buckets}: admitted {admitted_by} of {REQUESTS} in {elapsed:.2f} s")
        assert len(refused) + sum(admitted_by) == REQUESTS, [a.text for a in answers if a.status_code not in (202, 429)]
        # The bucket starts full and refills one request every 6 s while the requests are in flight.
        assert RPM <= sum(admitted_by) <= RPM + math.floor(elapsed * RPM / 60)
        assert all(n > 0 for n in admitted_by), "each process admitted some"
        assert all(r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1 for r in refused)
        if client is not None:
            assert await client.exists(f"{prefix}rpm:key:{key_id}") == 1
            assert await bucket_rows(h) == 0  # the buckets are in Redis, not in the database
        else:
            assert await bucket_rows(h) == 1
