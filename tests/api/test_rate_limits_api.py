"""Rate limits at the API, on SQLite and PostgreSQL: a caller over its RPM or TPM gets a 429 it can act on
(`Retry-After`, `X-RateLimit-*`, which limit), quota is only spent by requests that start a job, and a policy or
flag without limits costs nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import func, select

from store.models import DEFAULT_TENANT_ID, ApiKey, Policy, RateLimitBucket
from store.rate_limits import RedisRateLimiter
from tests.support.harness import Harness

HELLO = [{"role": "user", "content": "hello"}]
JOB = {"model": "sim-1", "messages": HELLO}


class Caller:
    """A tenant's key as an app uses it."""

    def __init__(self, h: Harness, tenant_id: str, key_id: str, secret: str) -> None:
        self.h, self.tenant_id, self.key_id = h, tenant_id, key_id
        self.headers = {"Authorization": f"Bearer {secret}"}

    async def submit(self, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.h.http.post("/v1/jobs", json=body or JOB, headers=self.headers)

    async def chat(self, **fields: Any) -> httpx.Response:
        body = {"model": "sim-1", "messages": HELLO, **fields}
        return await self.h.http.post("/v1/chat/completions", json=body, headers=self.headers)


async def new_tenant(h: Harness) -> str:
    tenant = await h.http.post("/v1/tenants", json={"name": f"acme-{uuid.uuid4().hex[:6]}"}, headers=h.admin)
    assert tenant.status_code == 201, tenant.text
    return str(tenant.json()["id"])


async def new_caller(h: Harness, tenant_id: str | None = None) -> Caller:
    tenant_id = tenant_id or await new_tenant(h)
    key = await h.http.post("/v1/keys", json={"tenant_id": tenant_id, "role": "app"}, headers=h.admin)
    assert key.status_code == 201, key.text
    return Caller(h, tenant_id, key.json()["id"], key.json()["key"])


async def give_policy(h: Harness, tenant_id: str, rate: dict[str, int], *, key_id: str | None = None) -> None:
    """A policy with these rate limits: bound to `key_id`, else the tenant's default."""
    async with h.app.state.sessions() as session, session.begin():
        policy = Policy(
            tenant_id=tenant_id, name=f"p-{uuid.uuid4().hex[:8]}", is_default=key_id is None, document={"rate": rate}
        )
        session.add(policy)
        await session.flush()
        if key_id is not None:
            key = await session.get(ApiKey, key_id)
            assert key is not None
            key.policy_id = policy.id
    h.app.state.policies.invalidate()


async def bucket_count(h: Harness) -> int:
    async with h.app.state.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(RateLimitBucket))).one())


@pytest.fixture
async def h(kintsugi_db: Harness) -> AsyncIterator[Harness]:
    yield kintsugi_db


async def test_a_key_over_its_rpm_gets_a_429_it_can_act_on(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 2}, key_id=caller.key_id)

    first, second, third = [await caller.submit() for _ in range(3)]

    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"] == {"limit": "rpm", "scope": "key"}
    assert "2 requests per minute for this key" in error["message"]
    # Two requests a minute: one every 30 s.
    assert 1 <= int(third.headers["Retry-After"]) <= 30
    assert third.headers["X-RateLimit-Limit"] == "2"
    assert third.headers["X-RateLimit-Remaining"] == "0"
    assert 30 < int(third.headers["X-RateLimit-Reset"]) <= 60


async def test_a_keys_limit_is_its_own(h: Harness) -> None:
    limited = await new_caller(h)
    neighbour = await new_caller(h, limited.tenant_id)
    await give_policy(h, limited.tenant_id, {"rpm": 1}, key_id=limited.key_id)

    assert (await limited.submit()).status_code == 202
    assert (await limited.submit()).status_code == 429
    free = await neighbour.submit()

    assert free.status_code == 202
    assert "X-RateLimit-Limit" not in free.headers


async def test_a_tenant_limit_counts_every_key_of_the_tenant(h: Harness) -> None:
    first = await new_caller(h)
    second = await new_caller(h, first.tenant_id)
    await give_policy(h, first.tenant_id, {"tenant_rpm": 2})

    assert (await first.submit()).status_code == 202
    assert (await second.submit()).status_code == 202
    refused = await first.submit()

    assert refused.status_code == 429
    assert refused.json()["error"]["details"] == {"limit": "rpm", "scope": "tenant"}


async def test_tpm_counts_the_prompt_and_the_output_it_allows(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"tpm": 100}, key_id=caller.key_id)
    asking = {**JOB, "params": {"max_tokens": 60}}  # 60 + 6 for "hello" in a message

    admitted = await caller.submit(asking)
    refused = await caller.submit(asking)

    assert admitted.status_code == 202
    assert admitted.headers["X-RateLimit-Remaining"] == "34"
    assert refused.status_code == 429
    assert refused.json()["error"]["details"] == {"limit": "tpm", "scope": "key"}
    assert (await caller.submit()).status_code == 202  # 6 tokens still fit


async def test_a_refused_request_charges_no_other_bucket(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 2, "tpm": 100}, key_id=caller.key_id)

    assert (await caller.submit({**JOB, "params": {"max_tokens": 500}})).status_code == 202  # a full TPM bucket
    assert (await caller.submit({**JOB, "params": {"max_tokens": 1}})).status_code == 429  # TPM in debt
    assert (await h.http.post("/v1/jobs", json=JOB, headers=caller.headers)).status_code == 429

    # The refusals took no request from the RPM bucket: one of its two is left.
    async with h.app.state.sessions() as session:
        rpm = await session.get(RateLimitBucket, f"rpm:key:{caller.key_id}")
    assert rpm is not None and 0.99 < rpm.tokens < 1.1


async def test_a_request_refused_as_invalid_spends_no_quota(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 1}, key_id=caller.key_id)

    invalid = await caller.submit({**JOB, "params": {"max_tokens": 0}})
    unknown = await caller.submit({**JOB, "model": "no-such-route"})
    admitted = await caller.submit()

    assert (invalid.status_code, unknown.status_code, admitted.status_code) == (422, 404, 202)


async def test_the_flag_off_enforces_nothing(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 1}, key_id=caller.key_id)
    flag = await h.http.put(
        "/v1/flags/enable_rate_limiting", json={"enabled": False, "tenant_id": caller.tenant_id}, headers=h.admin
    )
    assert flag.status_code == 200, flag.text

    answers = [await caller.submit() for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert all("X-RateLimit-Limit" not in a.headers for a in answers)
    assert await bucket_count(h) == 0


async def test_without_a_rate_limit_no_bucket_is_touched(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {}, key_id=caller.key_id)  # a policy, but no rate section
    acquired: list[object] = []
    limiter = h.app.state.rate_limiter
    real_acquire = limiter.acquire

    async def spy(*args: Any) -> Any:
        acquired.append(args)
        return await real_acquire(*args)

    monkeypatch.setattr(limiter, "acquire", spy)

    plain = await h.submit(JOB)  # the environment's admin key, under the built-in default
    keyed = await caller.submit()

    assert (plain.status_code, keyed.status_code) == (202, 202)
    assert acquired == []
    assert await bucket_count(h) == 0


async def test_the_admin_key_meets_its_tenants_limits(h: Harness) -> None:
    await give_policy(h, DEFAULT_TENANT_ID, {"tenant_rpm": 1, "rpm": 1000})

    assert (await h.submit(JOB)).status_code == 202
    refused = await h.submit(JOB)

    assert refused.status_code == 429
    assert refused.json()["error"]["details"] == {"limit": "rpm", "scope": "tenant"}


async def test_chat_completions_refuse_in_openais_shape(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 1}, key_id=caller.key_id)

    # OpenAI takes more metadata than a job does: refused by the route itself, before admission.
    invalid = await caller.chat(metadata={f"k{i}": "v" for i in range(60)})
    answered = await caller.chat()
    refused = await caller.chat()

    assert invalid.status_code == 422
    assert answered.status_code == 200, answered.text
    assert answered.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_streamed_chat_answer_carries_the_rate_limit_headers(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 5}, key_id=caller.key_id)

    async with h.http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "sim-1", "messages": HELLO, "stream": True},
        headers=caller.headers,
    ) as streamed:
        await streamed.aread()

    assert streamed.status_code == 200
    assert (streamed.headers["X-RateLimit-Limit"], streamed.headers["X-RateLimit-Remaining"]) == ("5", "4")


async def test_embeddings_spend_their_inputs_tokens(h: Harness) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"tpm": 10}, key_id=caller.key_id)
    body = {"model": "embed-sim", "input": "x" * 32}  # 8 tokens

    admitted = await h.http.post("/v1/embeddings", json=body, headers=caller.headers)
    refused = await h.http.post("/v1/embeddings", json=body, headers=caller.headers)

    assert admitted.status_code == 200, admitted.text
    assert admitted.headers["X-RateLimit-Remaining"] == "2"
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_a_request_is_answered_503_while_the_buckets_store_is_down(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = await new_caller(h)
    await give_policy(h, caller.tenant_id, {"rpm": 5}, key_id=caller.key_id)
    down = RedisRateLimiter.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setattr(h.app.state, "rate_limiter", down)

    try:
        answer = await caller.submit()
    finally:
        await down.aclose()

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "rate_limiter_unavailable"
