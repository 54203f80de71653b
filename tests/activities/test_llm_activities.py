"""LLMActivities one at a time in an `ActivityEnvironment`: the route plan, the upstream call against the fake
HTTP upstream, and the cost and event rows in a migrated SQLite database."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm import LLMActivities
from schemas import errors
from schemas.calls import (
    CallModelInput,
    JobEvent,
    PlannedDeployment,
    PostflightInput,
    PreflightInput,
    RecordEventsInput,
    ResolvedPrice,
)
from schemas.contracts import EventType, event_key
from schemas.failures import CallFailureDetails, read_details
from schemas.jobs import ChatMessage, JobParams, Usage
from schemas.routes import RetryConfig, RoutesConfig
from store import queries
from store.models import EventLog, ModelCostLog
from tests.activities.conftest import holder
from tests.support.common import HELLO
from tests.support.fake_upstream import FakeUpstream

HOLDER_KEY = "key-from-the-holder"
TENANT = "t"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


@pytest.fixture
def prefix() -> str:
    """Upstream model names private to the test, so faults configured on the shared upstream stay in it."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def routes(upstream: FakeUpstream, prefix: str, monkeypatch: pytest.MonkeyPatch) -> RoutesConfig:
    # The provider names an env var holding another key: the activity must not read it.
    monkeypatch.setenv("KINTSUGI_TEST_ENV_ONLY_KEY", "key-from-the-environment")
    provider = {
        "kind": "openai",
        "base_url": f"{upstream.url}/v1",
        "api_key_env": "KINTSUGI_TEST_ENV_ONLY_KEY",
        "timeout_s": 2,
    }
    return RoutesConfig.model_validate(
        {
            "providers": {
                "up": {**provider, "region": "eu", "retry": {"max_attempts": 5}},
                "up-local": {**provider, "region": "us", "call": "local"},
                # `call: auto` as `up`, but its calls may outlast `local_call_max_s` (60 s).
                "up-long": {**provider, "region": "eu", "timeout_s": 300, "retry": {"max_attempts": 5}},
            },
            "routes": {
                "fast": [
                    {"provider": "up", "model": f"{prefix}-a", "price": PRICE},
                    {"provider": "up-local", "model": "gpt-4o-mini"},
                    {"provider": "up-long", "model": f"{prefix}-unpriced"},
                ],
            },
        }
    )


@pytest.fixture
async def activities(
    routes: RoutesConfig, sqlite_sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[LLMActivities]:
    async with httpx.AsyncClient() as http:
        yield holder(routes, sqlite_sessions, http, upstream_keys={"up": HOLDER_KEY})


def attempt(number: int) -> ActivityEnvironment:
    """An activity environment whose `activity.info().attempt` is `number`."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number)
    return env


def planned(model: str, *, provider: str = "up") -> PlannedDeployment:
    return PlannedDeployment(
        provider=provider,
        model=model,
        region="eu",
        price=ResolvedPrice(**PRICE, known=True),
        timeout_s=2,
        retry=RetryConfig(),
    )


def call_input(model: str) -> CallModelInput:
    return CallModelInput(
        job_id="job-1",
        call_seq=1,
        deployment=planned(model),
        messages=[ChatMessage.model_validate(m) for m in HELLO],
        params=JobParams(),
    )


def events(job_id: str, *types: EventType, first: int = 1) -> list[JobEvent]:
    """Events keyed as the workflow keys them (job, run, sequence, type), numbered from `first`."""
    at = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        JobEvent(key=event_key(job_id, "run", n, t), type=t, at=at, data={"n": n}) for n, t in enumerate(types, first)
    ]


async def cost_rows(sessions: async_sessionmaker[AsyncSession], job_id: str) -> list[ModelCostLog]:
    async with sessions() as session:
        return await queries.cost_logs_for_job(session, job_id, TENANT)


async def event_rows(sessions: async_sessionmaker[AsyncSession], job_id: str) -> list[EventLog]:
    async with sessions() as session:
        return await queries.events_for_job(session, job_id, TENANT)


# --- preflight --------------------------------------------------------------------------------------------


async def test_preflight_plans_the_route_in_order_with_regions_and_prices(
    activities: LLMActivities, prefix: str
) -> None:
    plan = await ActivityEnvironment().run(
        activities.preflight, PreflightInput(job_id="job-1", tenant_id=TENANT, model="fast", synchronous=True)
    )

    assert [(d.provider, d.model, d.region, d.call) for d in plan.deployments] == [
        ("up", f"{prefix}-a", "eu", "local"),
        ("up-local", "gpt-4o-mini", "us", "local"),
        ("up-long", f"{prefix}-unpriced", "eu", "activity"),
    ]
    priced, catalogue, unpriced = (d.price for d in plan.deployments)
    assert priced == ResolvedPrice(**PRICE, known=True, source="override")
    # gpt-4o-mini's catalogue price: $0.15 in / $0.60 out per million tokens.
    assert (catalogue.input_per_mtok, catalogue.output_per_mtok, catalogue.known) == (
        pytest.approx(0.15),
        pytest.approx(0.60),
        True,
    )
    assert unpriced == ResolvedPrice(input_per_mtok=0, output_per_mtok=0, known=False, source="unknown")
    assert [d.retry.max_attempts for d in plan.deployments] == [5, 3, 5]
    assert plan.deployments[0].timeout_s == 2


async def test_a_submitted_job_calls_auto_deployments_as_activities(activities: LLMActivities) -> None:
    # Nobody waits on it: its calls go to the shared workers, where a query follows them.
    plan = await ActivityEnvironment().run(
        activities.preflight, PreflightInput(job_id="job-1", tenant_id=TENANT, model="fast")
    )

    assert [d.call for d in plan.deployments] == ["activity", "local", "activity"]


async def test_preflight_of_an_unknown_model_is_a_non_retryable_unknown_model(activities: LLMActivities) -> None:
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            activities.preflight, PreflightInput(job_id="job-1", tenant_id=TENANT, model="nope")
        )

    assert (raised.value.type, raised.value.non_retryable) == (errors.UNKNOWN_MODEL, True)


# --- call_model -------------------------------------------------------------------------------------------


async def test_call_model_sends_the_key_from_the_holder_not_the_environment(
    activities: LLMActivities, upstream: FakeUpstream, prefix: str
) -> None:
    output = await attempt(2).run(activities.call_model, call_input(f"{prefix}-a"))

    assert (output.answer.content, output.attempt) == ("echo: hello", 2)
    assert output.usage.input_tokens > 0 and output.usage.output_tokens > 0
    sent = upstream.last_request(f"{prefix}-a")
    assert sent["headers"]["authorization"] == f"Bearer {HOLDER_KEY}"
    assert sent["body"]["model"] == f"{prefix}-a"


@pytest.mark.parametrize(
    ("status", "code", "non_retryable"),
    [(500, errors.UPSTREAM_ERROR, False), (401, errors.UPSTREAM_AUTH, True), (400, errors.BAD_REQUEST, True)],
)
async def test_a_failed_call_carries_its_attempt_number(
    activities: LLMActivities,
    upstream: FakeUpstream,
    prefix: str,
    status: int,
    code: str,
    non_retryable: bool,
) -> None:
    upstream.configure(f"{prefix}-a", fail_always=True, status=status)

    with pytest.raises(ApplicationError) as raised:
        await attempt(3).run(activities.call_model, call_input(f"{prefix}-a"))

    assert (raised.value.type, raised.value.non_retryable) == (code, non_retryable)
    assert read_details(raised.value, CallFailureDetails) == CallFailureDetails(attempt=3)


# --- postflight and record_events -------------------------------------------------------------------------


async def test_postflight_bills_once_and_writes_its_events_once_when_retried(
    activities: LLMActivities, sqlite_sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = f"job-{uuid.uuid4().hex}"
    input = PostflightInput(
        job_id=job_id,
        tenant_id=TENANT,
        call_seq=2,
        deployment=planned("m"),
        usage=Usage(input_tokens=1000, output_tokens=500),
        events=events(job_id, "job.started", "job.succeeded"),
    )

    first = await ActivityEnvironment().run(activities.postflight, input)
    second = await ActivityEnvironment().run(activities.postflight, input)

    # 1000 in x $1/M + 500 out x $2/M.
    assert first.cost_usd == second.cost_usd == pytest.approx(0.002)
    [cost] = await cost_rows(sqlite_sessions, job_id)
    assert (cost.tenant_id, cost.provider, cost.model) == (TENANT, "up", "m")
    assert (cost.input_tokens, cost.output_tokens, cost.cost_usd) == (1000, 500, pytest.approx(0.002))
    written = await event_rows(sqlite_sessions, job_id)
    assert [(e.type, e.payload) for e in written] == [("job.started", {"n": 1}), ("job.succeeded", {"n": 2})]


async def test_postflight_bills_each_call_of_a_job(
    activities: LLMActivities, sqlite_sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = f"job-{uuid.uuid4().hex}"
    for call_seq in (1, 2):
        await ActivityEnvironment().run(
            activities.postflight,
            PostflightInput(
                job_id=job_id,
                tenant_id=TENANT,
                call_seq=call_seq,
                deployment=planned("m"),
                usage=Usage(input_tokens=1, output_tokens=1),
            ),
        )

    assert len(await cost_rows(sqlite_sessions, job_id)) == 2


async def test_record_events_is_idempotent(
    activities: LLMActivities, sqlite_sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = f"job-{uuid.uuid4().hex}"
    parked = events(job_id, "job.started", "job.parked")

    await ActivityEnvironment().run(
        activities.record_events, RecordEventsInput(job_id=job_id, tenant_id=TENANT, events=parked)
    )
    await ActivityEnvironment().run(
        activities.record_events,
        RecordEventsInput(job_id=job_id, tenant_id=TENANT, events=[*parked, *events(job_id, "job.failed", first=3)]),
    )

    written = await event_rows(sqlite_sessions, job_id)
    assert [(e.event_key, e.type, e.tenant_id) for e in written] == [
        (event_key(job_id, "run", 1, "job.started"), "job.started", TENANT),
        (event_key(job_id, "run", 2, "job.parked"), "job.parked", TENANT),
        (event_key(job_id, "run", 3, "job.failed"), "job.failed", TENANT),
    ]
