"""The money side of preflight and postflight against a migrated SQLite database: the cost row as billed, the
flags each step follows, prompt similarity, and the response cache (kept by postflight, found by preflight)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.testing import ActivityEnvironment

from activities.bookkeeping import write_events
from activities.llm import LLMActivities
from ops.metrics import WrittenFacts
from schemas.audit import Actor
from schemas.calls import (
    CachedAnswer,
    JobEvent,
    PlannedDeployment,
    PostflightInput,
    PostflightOutput,
    PreflightInput,
    PreflightOutput,
)
from schemas.contracts import EventType, event_key
from schemas.jobs import ChatMessage, JobParams, JobResult, Usage
from schemas.routes import RoutesConfig
from store import queries
from store.models import EventLog, ModelCostLog, PromptSimilarityLog, ResponseCacheEntry
from tests.activities.conftest import holder

PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
USAGE = Usage(input_tokens=1000, output_tokens=500)
"""Billed at PRICE: 1000 x $1/M + 500 x $2/M = $0.002."""
PROMPT = (
    "Summarise the quarterly report for the board in three short bullet points, naming the revenue, the "
    "margin and the largest risk, and keep every bullet under twenty words so it fits on one slide."
)


@pytest.fixture
def routes() -> RoutesConfig:
    # Nothing here calls the provider: preflight plans, postflight records.
    provider = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "timeout_s": 2}
    return RoutesConfig.model_validate(
        {
            "providers": {"up": provider},
            "routes": {
                "fast": [{"provider": "up", "model": "priced", "price": PRICE}],
                "mystery": [{"provider": "up", "model": "no-such-model-anywhere"}],
            },
        }
    )


@pytest.fixture
def sessions(migrated_sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """On SQLite and on PostgreSQL."""
    return migrated_sessions


@pytest.fixture
async def activities(routes: RoutesConfig, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[LLMActivities]:
    async with httpx.AsyncClient() as http:
        yield holder(routes, sessions, http)


@pytest.fixture
def tenant() -> str:
    return f"ten_{uuid.uuid4().hex[:8]}"


async def set_flag(sessions: async_sessionmaker[AsyncSession], tenant: str, key: str, enabled: bool) -> None:
    async with sessions() as session, session.begin():
        await queries.set_flag(
            session, key=key, tenant_id=tenant, enabled=enabled, rollout_percent=100, actor=Actor(tenant, None)
        )


def event(job_id: str, type: EventType) -> JobEvent:
    return JobEvent(key=event_key(job_id, "run", 2, type), type=type, at=datetime.now(UTC))


def messages(text: str = PROMPT) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def preflight(
    activities: LLMActivities,
    tenant: str,
    *,
    text: str = PROMPT,
    chat: list[ChatMessage] | None = None,
    params: JobParams | None = None,
    model: str = "fast",
) -> PreflightOutput:
    """Preflight of a fresh job asking `text` (or the whole `chat`)."""
    return await ActivityEnvironment().run(
        activities.preflight,
        PreflightInput(
            job_id=f"job_{uuid.uuid4().hex}",
            tenant_id=tenant,
            model=model,
            messages=chat or messages(text),
            params=params or JobParams(),
            synchronous=True,
        ),
    )


async def postflight(
    activities: LLMActivities,
    tenant: str,
    plan: PreflightOutput,
    *,
    text: str = PROMPT,
    chat: list[ChatMessage] | None = None,
    params: JobParams | None = None,
    answer: str = "the answer",
    cached: CachedAnswer | None = None,
    job_id: str | None = None,
) -> tuple[str, PostflightOutput]:
    job_id = job_id or f"job_{uuid.uuid4().hex}"
    deployment: PlannedDeployment = plan.deployments[0]
    output = await ActivityEnvironment().run(
        activities.postflight,
        PostflightInput(
            job_id=job_id,
            tenant_id=tenant,
            key_id="key_1",
            route="fast",
            call_seq=1,
            deployment=deployment,
            usage=cached.usage if cached else USAGE,
            latency_ms=None if cached else 12.34,
            outcome="cache_hit" if cached else "success",
            cached=cached,
            flags=plan.flags,
            messages=chat or messages(text),
            params=params or JobParams(),
            answer=None if cached else JobResult.from_text(answer),
            events=[event(job_id, "job.cache_hit" if cached else "job.succeeded")],
        ),
    )
    return job_id, output


async def rows(sessions: async_sessionmaker[AsyncSession], table: Any, job_id: str) -> list[Any]:
    """The rows of `table` (a model with a `job_id` column) that belong to the job."""
    async with sessions() as session:
        return list((await session.exec(select(table).where(table.job_id == job_id))).all())


# --- the cost row ----------------------------------------------------------------------------------------


async def test_a_billed_call_records_who_what_and_at_which_prices(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    plan = await preflight(activities, tenant)
    job_id, output = await postflight(activities, tenant, plan)

    assert output.cost_usd == pytest.approx(0.002)
    [row] = await rows(sessions, ModelCostLog, job_id)
    assert (row.key_id, row.route, row.call_seq, row.provider, row.model) == ("key_1", "fast", 1, "up", "priced")
    assert (row.cost_usd, row.price_known, row.outcome) == (pytest.approx(0.002), True, "success")
    assert (row.input_per_mtok, row.output_per_mtok, row.upstream_latency_ms) == (1.0, 2.0, 12.3)


async def test_an_unpriced_call_is_recorded_without_a_cost_never_as_free(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    plan = await preflight(activities, tenant, model="mystery")
    job_id, output = await postflight(activities, tenant, plan)

    assert output.cost_usd is None
    [row] = await rows(sessions, ModelCostLog, job_id)
    assert (row.cost_usd, row.price_known, row.input_tokens) == (None, False, 1000)


async def test_with_cost_tracking_off_the_job_records_no_cost_row(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "track_model_costs", False)
    plan = await preflight(activities, tenant)
    job_id, output = await postflight(activities, tenant, plan)

    assert plan.flags["track_model_costs"] is False
    assert output.cost_usd == pytest.approx(0.002)  # the job still says what it cost
    assert await rows(sessions, ModelCostLog, job_id) == []


# --- similarity -------------------------------------------------------------------------------------------


async def test_a_repeated_prompt_is_logged_as_similar_to_the_first(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    plan = await preflight(activities, tenant)
    first, _ = await postflight(activities, tenant, plan)
    again, _ = await postflight(activities, tenant, plan)
    near, _ = await postflight(activities, tenant, plan, text=PROMPT.replace("three", "3"))

    assert await rows(sessions, PromptSimilarityLog, first) == []
    [exact] = await rows(sessions, PromptSimilarityLog, again)
    assert (exact.matched_job_id, exact.method, exact.score, exact.key_id) == (first, "exact", 1.0, "key_1")
    [minhash] = await rows(sessions, PromptSimilarityLog, near)
    assert minhash.matched_job_id in (first, again) and minhash.method == "minhash" and minhash.score >= 0.9


async def test_with_similarity_logging_off_nothing_is_logged(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_similarity_logging", False)
    plan = await preflight(activities, tenant)
    await postflight(activities, tenant, plan)
    again, _ = await postflight(activities, tenant, plan)

    assert await rows(sessions, PromptSimilarityLog, again) == []


# --- the response cache -------------------------------------------------------------------------------------


async def test_the_cache_is_off_unless_the_tenant_turns_it_on(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    plan = await preflight(activities, tenant)
    job_id, _ = await postflight(activities, tenant, plan)

    assert plan.flags["enable_response_cache"] is False
    assert await rows(sessions, ResponseCacheEntry, job_id) == []
    assert (await preflight(activities, tenant)).cached is None


async def test_a_repeat_within_the_ttl_is_answered_from_the_cache(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    first, _ = await postflight(activities, tenant, await preflight(activities, tenant), answer="kept")

    exact = (await preflight(activities, tenant)).cached
    # The question itself (the last message) must be the same: one changed character is another request.
    changed = (await preflight(activities, tenant, text=PROMPT.replace("slide", "slide."))).cached

    assert exact is not None and (exact.job_id, exact.method, exact.score) == (first, "exact", 1.0)
    assert exact.answer.content == "kept" and exact.usage == USAGE
    assert (exact.provider, exact.model, exact.saved_usd) == ("up", "priced", pytest.approx(0.002))
    assert changed is None


async def test_the_cache_hit_is_billed_as_a_hit_that_saved_the_call(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    await postflight(activities, tenant, await preflight(activities, tenant))
    plan = await preflight(activities, tenant)
    assert plan.cached is not None

    job_id, output = await postflight(activities, tenant, plan, cached=plan.cached)

    assert output.cost_usd == 0.0
    [row] = await rows(sessions, ModelCostLog, job_id)
    assert (row.outcome, row.cost_usd, row.saved_usd, row.input_tokens) == ("cache_hit", 0.0, pytest.approx(0.002), 0)
    # A hit is not kept again: the cache holds answers a provider gave.
    assert await rows(sessions, ResponseCacheEntry, job_id) == []


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (JobParams(temperature=0.7), PROMPT),  # sampled on purpose
        (JobParams(max_tokens=20), PROMPT),  # other parameters
        (JobParams(), "Write a haiku about the sea, in French, for a child of six."),  # another prompt
    ],
    ids=["temperature", "parameters", "prompt"],
)
async def test_a_different_request_is_not_answered_from_the_cache(
    activities: LLMActivities,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    params: JobParams,
    text: str,
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    await postflight(activities, tenant, await preflight(activities, tenant))

    assert (await preflight(activities, tenant, text=text, params=params)).cached is None


async def test_a_sampled_answer_is_not_kept(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    hot = JobParams(temperature=0.7)
    job_id, _ = await postflight(activities, tenant, await preflight(activities, tenant, params=hot), params=hot)

    assert await rows(sessions, ResponseCacheEntry, job_id) == []


async def test_cached_answers_never_cross_tenants(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    other = f"{tenant}-other"
    for t in (tenant, other):
        await set_flag(sessions, t, "enable_response_cache", True)
    await postflight(activities, tenant, await preflight(activities, tenant))

    assert (await preflight(activities, other)).cached is None


async def test_an_answer_expires_after_the_ttl(
    routes: RoutesConfig, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    async with httpx.AsyncClient() as http:
        short = holder(routes, sessions, http, cache_ttl_s=60)
        job_id, _ = await postflight(short, tenant, await preflight(short, tenant))
        [entry] = await rows(sessions, ResponseCacheEntry, job_id)
        assert entry.expires_at - entry.created_at == timedelta(seconds=60)
        async with sessions() as session, session.begin():
            stored = await session.get(ResponseCacheEntry, entry.id)
            assert stored is not None
            stored.expires_at = datetime.now(UTC) - timedelta(seconds=1)

        assert (await preflight(short, tenant)).cached is None


async def test_a_job_run_again_after_its_process_died_is_recorded_once(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    """The first run called the provider and committed its postflight; the process died before the server
    recorded the task. The second run finds an answer in the cache (another job's) this time: nothing of it is
    written, so the job has one cost row, one set of events."""
    await set_flag(sessions, tenant, "enable_response_cache", True)
    await postflight(activities, tenant, await preflight(activities, tenant))  # another job's answer, kept
    job_id, _ = await postflight(activities, tenant, await preflight(activities, tenant), job_id="job_rerun")
    hit = (await preflight(activities, tenant)).cached
    assert hit is not None

    await postflight(activities, tenant, await preflight(activities, tenant), cached=hit, job_id=job_id)

    [row] = await rows(sessions, ModelCostLog, job_id)
    assert (row.outcome, row.cost_usd) == ("success", pytest.approx(0.002))
    assert [e.type for e in await rows(sessions, EventLog, job_id)] == ["job.succeeded"]


async def test_a_job_never_takes_its_own_kept_answer_for_a_hit(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    job_id, _ = await postflight(activities, tenant, await preflight(activities, tenant))

    again = await ActivityEnvironment().run(
        activities.preflight, PreflightInput(job_id=job_id, tenant_id=tenant, model="fast", messages=messages())
    )

    assert again.cached is None


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # Behind a long shared system prompt, two different questions are near-identical text.
        (
            [ChatMessage(role="system", content=PROMPT * 8), ChatMessage(role="user", content="What is 2+2?")],
            [ChatMessage(role="system", content=PROMPT * 8), ChatMessage(role="user", content="What is 7+9?")],
        ),
        # The same words about two different images.
        (
            [
                ChatMessage.model_validate(
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this image?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        ],
                    }
                )
            ],
            [
                ChatMessage.model_validate(
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this image?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,BBBB"}},
                        ],
                    }
                )
            ],
        ),
    ],
    ids=["another-question", "another-image"],
)
async def test_a_different_question_is_never_a_hit(
    activities: LLMActivities,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    first: list[ChatMessage],
    then: list[ChatMessage],
) -> None:
    await set_flag(sessions, tenant, "enable_response_cache", True)
    for chat in (first, then):
        plan = await preflight(activities, tenant, chat=chat)
        assert plan.cached is None
        await postflight(activities, tenant, plan, chat=chat)


async def test_an_earlier_turn_that_differs_a_little_is_still_a_hit(
    activities: LLMActivities, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    """What near-identical means here: the question asked (the last message) is the same, the context before
    it differs a little (a date in a system prompt)."""
    await set_flag(sessions, tenant, "enable_response_cache", True)
    context = PROMPT * 2
    asked = "List the three largest risks."
    first = [
        ChatMessage(role="system", content=f"Today is 2026-11-25. {context}"),
        ChatMessage(role="user", content=asked),
    ]
    then = [
        ChatMessage(role="system", content=f"Today is 2026-11-26. {context}"),
        ChatMessage(role="user", content=asked),
    ]
    await postflight(
        activities, tenant, await preflight(activities, tenant, chat=first), chat=first, answer="the risks"
    )

    hit = (await preflight(activities, tenant, chat=then)).cached

    assert hit is not None and hit.method == "minhash" and hit.answer.content == "the risks"


async def test_only_the_events_written_now_are_counted_when_some_were_already_there(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A workflow task run again may write some of its events anew and find the rest: the metrics count the
    new ones only, so they equal the outbox."""
    job_id, route = f"job-{uuid.uuid4().hex}", f"route-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC)
    rerouted = JobEvent(key=event_key(job_id, "run", 2, "job.rerouted"), type="job.rerouted", at=at)
    succeeded = JobEvent(key=event_key(job_id, "run", 3, "job.succeeded"), type="job.succeeded", at=at)
    async with migrated_sessions() as session, session.begin():
        await write_events(session, job_id, "default", None, [rerouted], route=route, written=None)

    written = WrittenFacts()
    async with migrated_sessions() as session, session.begin():
        await write_events(session, job_id, "default", None, [rerouted, succeeded], route=route, written=written)
    written.count()

    assert REGISTRY.get_sample_value("kintsugi_jobs_finished_total", {"route": route, "status": "succeeded"}) == 1
    assert REGISTRY.get_sample_value("kintsugi_reroutes_total", {"route": route}) is None
