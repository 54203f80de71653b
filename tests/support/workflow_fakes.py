"""Fake job activities for the workflow tier, and a rig that runs `LLMJobWorkflow` against them.

The fakes are registered under the real activity names (`preflight`, `call_model`, `postflight`,
`record_events`), answer as each test scripts them, and record every input, so a test asserts what a user
would notice: which deployments were called in which order, the attempts, the bill, the events written.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.job_view import summary_status
from schemas import errors
from schemas import search_attributes as search_attrs
from schemas.calls import (
    CachedAnswer,
    CallModelInput,
    CallModelOutput,
    JobEvent,
    PlannedDeployment,
    PostflightInput,
    PostflightOutput,
    PreflightInput,
    PreflightOutput,
    RecordEventsInput,
    ResolvedPrice,
)
from schemas.decisions import OutputVerdict, PolicyDecision
from schemas.failures import CallFailureDetails, read_details
from schemas.jobs import JOB_REVISION, ChatMessage, JobInput, JobResult, JobState, JobStatus, OnExhausted, Usage
from schemas.routes import CallMode, RetryConfig
from tests.support.common import HELLO
from workflows.llm_job import LLMJobWorkflow

DAY_S = 24 * 3600.0
"""The park timeout of a real deployment (`Settings.park_timeout_s`)."""
USAGE = Usage(input_tokens=12, output_tokens=7)
"""What every successful fake call reports."""

JobHandle = WorkflowHandle[LLMJobWorkflow, JobState]


def deployment(
    model: str,
    *,
    provider: str = "up",
    call: CallMode = "activity",
    max_attempts: int = 3,
    timeout_s: float = 30.0,
    initial_interval_s: float | None = None,
) -> PlannedDeployment:
    """One step of a route plan, as preflight would resolve it.

    An activity's retries back off on the server's clock, which the test server skips, so the real
    default of 1 s stays; a local activity backs off inside the worker in real time, so it gets 10 ms.
    """
    if initial_interval_s is None:
        initial_interval_s = 1.0 if call == "activity" else 0.01
    return PlannedDeployment(
        provider=provider,
        model=model,
        region="eu",
        price=ResolvedPrice(input_per_mtok=1.0, output_per_mtok=2.0, known=True),
        timeout_s=timeout_s,
        retry=RetryConfig(max_attempts=max_attempts, initial_interval_s=initial_interval_s, max_interval_s=30.0),
        call=call,
    )


@dataclass
class Upstream:
    """How the fake `call_model` answers calls for one deployment model; calls are counted per model over
    the whole job (repairs included)."""

    fail_first: int = 0
    fail_always: bool = False
    code: str = errors.UPSTREAM_ERROR
    """The `ApplicationError.type` of an injected failure: one of `schemas.errors`."""
    hang: bool = False
    """Never answer: the call runs into its start-to-close timeout, or waits until the job is cancelled."""
    content: str = "echo: hello"


@dataclass(frozen=True)
class Call:
    """One `call_model` attempt as the fake upstream saw it."""

    model: str
    call_seq: int
    attempt: int
    local: bool


async def _hang() -> None:
    """Wait until cancelled (by the job's cancellation, a local activity's timeout, or worker shutdown)."""
    await asyncio.Event().wait()


@dataclass
class FakeActivities:
    """The four job activities, scripted by a test and recording what they were asked."""

    routes: dict[str, list[PlannedDeployment]] = field(default_factory=dict)
    """Model alias -> route plan; an alias missing here is `unknown_model`, as in the real preflight."""
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    """Deployment model -> behaviour; a model missing here answers at once."""
    hang_preflight: bool = False
    hang_postflight: bool = False
    cost_usd: float = 0.0042
    """What postflight bills (a cache hit too: the job must say 0 whatever the bookkeeping returns)."""
    flags: dict[str, bool] = field(default_factory=dict)
    """What preflight says the job's flags are."""
    cached: CachedAnswer | None = None
    """A response-cache hit preflight finds (every job of the test)."""
    decision: PolicyDecision | None = None
    """The policy's decision preflight hands the job (every job of the test)."""
    budget_key: str | None = None
    """The budget reservation preflight says it made."""
    verdict: OutputVerdict | None = None
    """The output guardrails' verdict every successful call reports."""
    recorded: list[RecordEventsInput] = field(default_factory=list)
    """Every `record_events` input (with whether it released the job's budget)."""

    preflights: list[PreflightInput] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    call_inputs: list[CallModelInput] = field(default_factory=list)
    postflights: list[PostflightInput] = field(default_factory=list)
    written: list[JobEvent] = field(default_factory=list)
    """Events committed to the outbox, in order: by postflight once it returns, or by record_events."""
    _counts: dict[str, int] = field(default_factory=dict)

    def all(self) -> list[Callable[..., Any]]:
        return [self.preflight, self.call_model, self.postflight, self.record_events]

    def models_called(self) -> list[str]:
        """The deployment model of every call attempt, in order."""
        return [call.model for call in self.calls]

    def event_types(self) -> list[str]:
        return [event.type for event in self.written]

    def _write(self, events: list[JobEvent]) -> None:
        # Idempotent by key, like the outbox: a retried write adds nothing.
        seen = {event.key for event in self.written}
        self.written.extend(event for event in events if event.key not in seen)

    @activity.defn(name="preflight")
    async def preflight(self, input: PreflightInput) -> PreflightOutput:
        self.preflights.append(input)
        if self.hang_preflight:
            await _hang()
        plan = self.routes.get(input.model)
        if plan is None:
            raise ApplicationError(f"no route for model {input.model!r}", type=errors.UNKNOWN_MODEL, non_retryable=True)
        return PreflightOutput(
            deployments=plan, flags=self.flags, cached=self.cached, decision=self.decision, budget_key=self.budget_key
        )

    @activity.defn(name="call_model")
    async def call_model(self, input: CallModelInput) -> CallModelOutput:
        info = activity.info()
        model = input.deployment.model
        self.calls.append(Call(model=model, call_seq=input.call_seq, attempt=info.attempt, local=info.is_local))
        self.call_inputs.append(input)
        upstream = self.upstreams.get(model, Upstream())
        n = self._counts[model] = self._counts.get(model, 0) + 1
        if upstream.hang:
            await _hang()
        if upstream.fail_always or n <= upstream.fail_first:
            # Never marked non-retryable here: whether a code is retried is the workflow's RetryPolicy's call.
            raise ApplicationError(
                f"injected {upstream.code} #{n} for {model}",
                CallFailureDetails(attempt=info.attempt),
                type=upstream.code,
            )
        return CallModelOutput(
            answer=JobResult.from_text(upstream.content),
            usage=USAGE,
            latency_ms=5.0,
            attempt=info.attempt,
            verdict=self.verdict,
        )

    @activity.defn(name="postflight")
    async def postflight(self, input: PostflightInput) -> PostflightOutput:
        self.postflights.append(input)
        if self.hang_postflight:
            await _hang()
        self._write(input.events)
        return PostflightOutput(cost_usd=self.cost_usd)

    @activity.defn(name="record_events")
    async def record_events(self, input: RecordEventsInput) -> None:
        self.recorded.append(input)
        self._write(input.events)


@dataclass(frozen=True)
class Failure:
    """How a failed job reads from the client: its error code and the `JobState` it carried."""

    code: str | None
    state: JobState


@dataclass
class JobRig:
    """Starts jobs on the test's own task queue (served by a worker with the fakes) and reads them back."""

    env: WorkflowEnvironment
    fakes: FakeActivities
    task_queue: str
    _handles: list[JobHandle] = field(default_factory=list)

    async def start(
        self,
        model: str = "fast",
        *,
        on_exhausted: OnExhausted = "fail",
        park_timeout_s: float = DAY_S,
        task_timeout: timedelta | None = None,
        eager: bool = False,
        revision: int = JOB_REVISION,
    ) -> JobHandle:
        """Start a job as the API does (same input, same search attributes), with a fresh uuid4 job id.

        Args:
            eager: Start it as the API starts a job that someone waits for: `synchronous`, listed as `running`
                from its start, eager start requested (the time-skipping server dispatches it as usual: what
                this tier checks is the workflow's side, not the server's eager path — tests/e2e does that).
            revision: `JobInput.revision`; an older one for a job that a previous deploy started.
        """
        handle = await self.env.client.start_workflow(
            LLMJobWorkflow.run,
            JobInput(
                tenant_id="tenant-1",
                model=model,
                messages=[ChatMessage.model_validate(m) for m in HELLO],
                on_exhausted=on_exhausted,
                park_timeout_s=park_timeout_s,
                synchronous=eager,
                revision=revision,
            ),
            id=f"job_{uuid.uuid4().hex}",
            task_queue=self.task_queue,
            task_timeout=task_timeout,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attrs.TENANT, "tenant-1"),
                    SearchAttributePair(search_attrs.MODEL, model),
                    SearchAttributePair(search_attrs.STATUS, "running" if eager else "queued"),
                ]
            ),
            request_eager_start=eager,
        )
        self._handles.append(handle)
        return handle

    async def failure(self, handle: JobHandle) -> Failure:
        """Wait (skipping time) for a job that must fail; its code and final state."""
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError), f"not a job failure: {cause!r}"
            state = read_details(cause, JobState)
            assert state is not None, f"failure carries no JobState: {cause.details!r}"
            return Failure(code=cause.type, state=state)
        raise AssertionError(f"job succeeded, expected a failure: {result}")

    async def cancelled(self, handle: JobHandle) -> None:
        """Wait (skipping time) for a job that must end cancelled."""
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            assert isinstance(err.cause, CancelledError), f"job failed, not cancelled: {err.cause!r}"
            return
        raise AssertionError(f"job succeeded, expected it cancelled: {result}")

    async def status(self, handle: JobHandle) -> JobStatus:
        return (await handle.query(LLMJobWorkflow.state)).status

    async def search_status(self, handle: JobHandle) -> str | None:
        """`KintsugiStatus`, the search attribute job lists are filtered by while a job runs."""
        return (await handle.describe()).typed_search_attributes.get(search_attrs.STATUS)

    async def status_upserts(self, handle: JobHandle) -> list[str | None]:
        """Each `KintsugiStatus` the workflow upserted, in order (None for an upsert of other attributes)."""
        history = await handle.fetch_history()
        return [
            decode_typed_search_attributes(
                event.upsert_workflow_search_attributes_event_attributes.search_attributes
            ).get(search_attrs.STATUS)
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        ]

    async def execution_status(self, handle: JobHandle) -> WorkflowExecutionStatus | None:
        return (await handle.describe()).status

    async def listed_status(self, handle: JobHandle) -> JobStatus:
        """The status a job list shows (`GET /v1/jobs`): read from the server's record, no worker asked."""
        return summary_status(await handle.describe())

    async def until_status(self, handle: JobHandle, status: JobStatus) -> JobState:
        """Skip time a second at a time (so retry backoffs pass) until the job reports `status`."""
        state = await handle.query(LLMJobWorkflow.state)
        for _ in range(120):
            if state.status == status:
                return state
            await self.env.sleep(timedelta(seconds=1))
            state = await handle.query(LLMJobWorkflow.state)
        raise AssertionError(f"job never became {status}; last state: {state}")

    async def until(self, predicate: Callable[[], object], what: str) -> None:
        """Wait in real time (without skipping any) until a fake has seen something, e.g. a call in flight."""
        for _ in range(500):
            if predicate():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never saw {what}")

    async def close(self) -> None:
        """Terminate jobs a test left running, so their timers do not fire into later tests' skipped time."""
        for handle in self._handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test over")
