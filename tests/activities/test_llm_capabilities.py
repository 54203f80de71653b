"""LLMActivities for requests only some deployments can serve: preflight skips the others (or refuses with the
field no deployment can honour), embedding jobs go to embedding routes, and postflight keeps usage details."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm import LLMActivities
from schemas import errors
from schemas.calls import CallModelInput, PostflightInput, PreflightInput
from schemas.embeddings import EmbeddingInput, decode_vector
from schemas.jobs import ChatMessage, JobKind, JobParams, Usage
from schemas.routes import RoutesConfig
from store import queries
from store.engine import create_engine, session_factory
from tests.activities.conftest import holder
from tests.support.fake_embeddings import expected_vector
from tests.support.fake_upstream import FakeUpstream

TENANT = "default"


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def routes(upstream: FakeUpstream, prefix: str) -> RoutesConfig:
    up = {"kind": "openai", "base_url": f"{upstream.url}/v1", "timeout_s": 2}
    return RoutesConfig.model_validate(
        {
            "providers": {
                "up": up,
                "claude": {"kind": "anthropic", "base_url": upstream.url},
                "sim": {"kind": "simulator"},
            },
            "routes": {
                "mixed": [
                    {"provider": "claude", "model": f"{prefix}-c"},
                    {"provider": "sim", "model": "sim-1"},
                    {"provider": "up", "model": f"{prefix}-o"},
                ],
                "claude": [{"provider": "claude", "model": f"{prefix}-c"}],
                "embed": [
                    {"provider": "up", "model": f"{prefix}-e", "type": "embedding"},
                    {"provider": "sim", "model": "sim-embed", "type": "embedding"},
                ],
            },
        }
    )


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(sqlite_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def activities(routes: RoutesConfig, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[LLMActivities]:
    async with httpx.AsyncClient() as http:
        yield holder(routes, sessions, http)


async def plan(
    activities: LLMActivities,
    model: str,
    *,
    kind: JobKind = "chat",
    messages: list[dict[str, Any]] | None = None,
    **params: Any,
) -> list[str]:
    planned = await ActivityEnvironment().run(
        activities.preflight,
        PreflightInput(
            job_id="job-1",
            tenant_id=TENANT,
            model=model,
            kind=kind,
            params=JobParams.model_validate(params),
            messages=[ChatMessage.model_validate(m) for m in messages or []],
        ),
    )
    return [d.provider for d in planned.deployments]


async def test_preflight_skips_deployments_that_cannot_honour_the_request(activities: LLMActivities) -> None:
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]

    assert await plan(activities, "mixed") == ["claude", "sim", "up"]
    assert await plan(activities, "mixed", n=2) == ["sim", "up"]
    assert await plan(activities, "mixed", logprobs=True, top_logprobs=2) == ["up"]
    assert await plan(activities, "mixed", verbosity="low") == ["sim", "up"]
    assert await plan(activities, "mixed", messages=audio) == ["sim", "up"]


@pytest.mark.parametrize(
    ("model", "kind", "params", "code"),
    [
        ("claude", "chat", {"logprobs": True}, errors.UNSUPPORTED_PARAMETER),
        ("embed", "chat", {}, errors.MODEL_TYPE_MISMATCH),
        ("mixed", "embedding", {}, errors.MODEL_TYPE_MISMATCH),
    ],
)
async def test_preflight_with_nothing_left_to_call_fails_for_good(
    activities: LLMActivities, model: str, kind: JobKind, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await plan(activities, model, kind=kind, **params)

    assert (raised.value.type, raised.value.non_retryable) == (code, True)
    if code == errors.UNSUPPORTED_PARAMETER:
        assert "'logprobs'" in raised.value.message


async def test_an_embedding_job_is_planned_and_called_as_embeddings(
    activities: LLMActivities, upstream: FakeUpstream, prefix: str
) -> None:
    planned = await ActivityEnvironment().run(
        activities.preflight, PreflightInput(job_id="job-1", tenant_id=TENANT, model="embed", kind="embedding")
    )
    assert [(d.model, d.type) for d in planned.deployments] == [
        (f"{prefix}-e", "embedding"),
        ("sim-embed", "embedding"),
    ]

    embedding = EmbeddingInput.model_validate({"input": ["hi", "there"], "dimensions": 3, "user": "u1"})
    upstream_call, sim_call = (
        CallModelInput(job_id="job-1", call_seq=1, deployment=d, messages=[], params=JobParams(), embedding=embedding)
        for d in planned.deployments
    )
    out = await ActivityEnvironment().run(activities.call_model, upstream_call)
    simulated = await ActivityEnvironment().run(activities.call_model, sim_call)

    sent = upstream.last_request(f"{prefix}-e")
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {
        "model": f"{prefix}-e",
        "input": ["hi", "there"],
        "dimensions": 3,
        "user": "u1",
        "encoding_format": "float",
    }
    assert [decode_vector(e.embedding) for e in out.answer.embeddings or []] == [
        expected_vector("hi", 3),
        expected_vector("there", 3),
    ]
    assert (out.usage.input_tokens, out.usage.output_tokens, out.answer.choices) == (2, 0, [])
    vectors = [decode_vector(e.embedding) for e in simulated.answer.embeddings or []]
    assert [len(v) for v in vectors] == [3, 3] and vectors[0] != vectors[1]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-5 for v in vectors)


async def test_postflight_keeps_the_usage_details_on_the_cost_row(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    planned = await ActivityEnvironment().run(
        activities.preflight, PreflightInput(job_id="job-1", tenant_id=TENANT, model="mixed")
    )
    usage = Usage(
        input_tokens=1000,
        output_tokens=200,
        cached_input_tokens=600,
        cache_write_input_tokens=300,
        reasoning_tokens=150,
    )

    await ActivityEnvironment().run(
        activities.postflight,
        PostflightInput(
            job_id=f"job-{prefix}", tenant_id=TENANT, call_seq=1, deployment=planned.deployments[0], usage=usage
        ),
    )

    async with sessions() as session:
        (row,) = await queries.cost_logs_for_job(session, f"job-{prefix}", TENANT)
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert (row.cached_input_tokens, row.cache_write_input_tokens, row.reasoning_tokens) == (600, 300, 150)
    assert row.created_at <= datetime.now(UTC)
