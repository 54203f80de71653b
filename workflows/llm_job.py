"""LLMJobWorkflow: one LLM job, from route plan to recorded cost, through retries, reroutes and parking."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.llm import LLMActivities
    from domain.flags import RESPONSE_CACHE, SIMILARITY_LOGGING
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
    from schemas.contracts import JOB_WORKFLOW_TYPE, EventType, call_activity_id, deployment_summary, event_key
    from schemas.decisions import GuardrailOutcome, PolicyDecision
    from schemas.jobs import (
        JOB_REVISION,
        TERMINAL_STATUSES,
        DeploymentRef,
        JobError,
        JobInput,
        JobParams,
        JobResult,
        JobState,
        JobStatus,
        RepairInput,
        RepairOutput,
        Usage,
    )
    from schemas.messages import ChatMessage
    from workflows.failures import CALL_FAILURES, attempts_spent, cancellable, job_error, unwrap
    from workflows.job_options import (
        LOCAL_ACTIVITY_RETRY,
        LOCAL_ACTIVITY_TIMEOUT,
        RELAY_HEARTBEAT_TIMEOUT,
        call_retry_policy,
    )


class _Exhausted(Exception):
    """Every deployment of the plan failed (or the request itself was refused)."""


@workflow.defn(name=JOB_WORKFLOW_TYPE)
class LLMJobWorkflow:
    @workflow.init
    def __init__(self, input: JobInput) -> None:
        if input.revision > JOB_REVISION:
            # Started by a newer API than this worker: its commands are unknown here. Failing the workflow
            # task (not the job) leaves it to a worker of that revision (DESIGN.md, "The hot path").
            raise RuntimeError(f"job revision {input.revision} is newer than this worker's {JOB_REVISION}")
        self._input = input
        self._state = JobState(status="queued", model=input.model, metadata=input.metadata)
        self._repairs: list[RepairInput] = []
        """The repair Update waiting to be acted on; the validator lets at most one in at a time."""
        self._call_seq = 0
        self._preflight_seq = 0
        self._messages: list[ChatMessage] = input.messages
        """What the job sends on: the input, or its redaction under the policy (the raw input stays only in the
        start event)."""
        self._params = input.params
        self._budget_key: str | None = None
        """The budget reservation still open: released if the job ends without an answer."""
        self._event_seq = 0
        self._pending_events: list[JobEvent] = []
        self._listed_status = workflow.info().typed_search_attributes.get(search_attrs.STATUS)
        """`KintsugiStatus` as visibility has it: set at start, then by our upserts."""

    @workflow.run
    async def run(self, input: JobInput) -> JobState:
        try:
            self._set_status("running")
            self._event("job.started", model=input.model)
            plan = await self._preflight(input.model)
            if plan.cached is not None and input.revision >= 3:
                return await self._answer_from_cache(plan, plan.cached)
            while True:
                try:
                    deployment, output = await self._call_plan(plan)
                    break
                except _Exhausted:
                    if input.on_exhausted == "fail":
                        await self._fail(self._last_error())
                    repair = await self._park()
                    if repair.action == "abort":
                        await self._fail(JobError(code=errors.ABORTED, message="aborted by a repair request"))
                    if repair.action == "reroute" and repair.model:
                        if self._budget_key is not None:  # the new plan reserves anew
                            await self._flush_events(release_budget=True)
                        self._state.model = repair.model
                        workflow.upsert_search_attributes([search_attrs.MODEL.value_set(repair.model)])
                        plan = await self._preflight(repair.model)
            return await self._succeed(plan, deployment, output)
        except asyncio.CancelledError as err:
            # Every activity call goes through `cancellable`, so a cancel arrives here in this one form.
            self._state.finished_at = workflow.now()
            self._set_status("cancelled")
            self._event("job.cancelled")
            await self._flush_events(release_budget=True)
            raise asyncio.CancelledError from err

    @workflow.query
    def state(self) -> JobState:
        return self._state

    @workflow.update
    async def repair(self, request: RepairInput) -> RepairOutput:
        self._repairs.append(request)
        return RepairOutput(action=request.action, status="running")

    @repair.validator
    def _validate_repair(self, request: RepairInput) -> None:
        if self._state.status != "parked" or self._repairs:
            raise ValueError(f"job is {self._state.status}, not parked (or a repair is already under way)")
        if request.action == "reroute" and not request.model:
            raise ValueError("reroute needs a model")

    async def _preflight(self, model: str) -> PreflightOutput:
        plan = await self._plan(model)
        if plan.decision is not None and self._input.revision >= 4:
            await self._apply(plan.decision, plan.budget_key)
        return plan

    async def _apply(self, decision: PolicyDecision, budget_key: str | None) -> None:
        """Follow the policy's decision: record what fired, refuse, or go on with the redacted messages."""
        self._guardrail_events(decision.guardrails)
        if decision.abuse_action is not None:
            self._event("abuse.flagged", score=decision.abuse_score, action=decision.abuse_action)
        if decision.refusal is not None:
            refusal = decision.refusal
            kind: EventType = "budget.exceeded" if refusal.code == errors.BUDGET_EXCEEDED else "policy.refused"
            self._event(kind, code=refusal.code, policy_version=decision.policy_version, **refusal.details)
            await self._fail(JobError(code=refusal.code, message=refusal.message, details=refusal.details))
        self._budget_key = budget_key
        if decision.redacted_messages is not None:
            self._messages = decision.redacted_messages
        if decision.max_tokens is not None:
            self._params = self._params.model_copy(update={"max_tokens": decision.max_tokens})

    def _guardrail_events(self, outcomes: list[GuardrailOutcome]) -> None:
        for outcome in outcomes:  # kinds and offsets, never the text that matched
            self._event("guardrail.triggered", **outcome.model_dump(mode="json", exclude_none=True))

    async def _plan(self, model: str) -> PreflightOutput:
        self._preflight_seq += 1
        try:
            return await cancellable(
                workflow.execute_local_activity_method(
                    LLMActivities.preflight,
                    PreflightInput(
                        job_id=workflow.info().workflow_id,
                        tenant_id=self._input.tenant_id,
                        model=model,
                        kind=self._input.kind,
                        params=self._input.params,
                        messages=self._input.messages,
                        synchronous=self._input.synchronous,
                        key_id=self._input.key_id,
                        preflight_seq=self._preflight_seq,
                    ),
                    start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                    retry_policy=LOCAL_ACTIVITY_RETRY,
                )
            )
        except CALL_FAILURES as err:
            await self._fail(job_error(unwrap(err)[0]))

    async def _call_plan(self, plan: PreflightOutput) -> tuple[PlannedDeployment, CallModelOutput]:
        for index, deployment in enumerate(plan.deployments):
            if index > 0:
                self._event("job.rerouted", provider=deployment.provider, model=deployment.model)
            self._call_seq += 1
            self._state.deployment = DeploymentRef(provider=deployment.provider, model=deployment.model)
            try:
                output = await cancellable(self._call_model(deployment, plan))
            except CALL_FAILURES as err:
                cause, retry_state = unwrap(err)
                self._state.attempts += attempts_spent(cause, retry_state, deployment.retry)
                self._state.error = job_error(cause)
                if self._state.error.code in errors.REQUEST_ERRORS:
                    raise _Exhausted from err
                continue
            self._state.attempts += output.attempt
            return deployment, output
        raise _Exhausted

    async def _call_model(self, deployment: PlannedDeployment, plan: PreflightOutput) -> CallModelOutput:
        call = CallModelInput(
            job_id=workflow.info().workflow_id,
            call_seq=self._call_seq,
            deployment=deployment,
            messages=self._messages,
            params=self._params,
            embedding=self._input.embedding,
            relay_url=self._input.relay_url,
            output_rules=plan.output_rules,
        )
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=deployment.timeout_s),
            "retry_policy": call_retry_policy(deployment.retry),
            # The trace reads the call number and deployment back from these two.
            "activity_id": call_activity_id(self._call_seq),
            "summary": deployment_summary(deployment.provider, deployment.model),
        }
        if self._input.relay_url and deployment.call == "activity":
            # Someone is watching this call live: a worker that dies mid-stream is noticed in seconds (the
            # activity heartbeats while it runs), not after the whole start-to-close timeout.
            options["heartbeat_timeout"] = RELAY_HEARTBEAT_TIMEOUT
        if deployment.call == "local":
            return await workflow.execute_local_activity_method(LLMActivities.call_model, call, **options)
        return await workflow.execute_activity_method(LLMActivities.call_model, call, **options)

    async def _park(self) -> RepairInput:
        self._state.error = self._last_error()
        self._set_status("parked")
        self._event("job.parked", error=self._state.error.model_dump())
        await self._flush_events()
        try:
            await workflow.wait_condition(
                lambda: bool(self._repairs),
                timeout=timedelta(seconds=self._input.park_timeout_s),
                timeout_summary="park",
            )
        except TimeoutError:
            await self._fail(
                JobError(code=errors.PARK_TIMEOUT, message="parked job was not repaired in time"),
                cause=self._state.error,
            )
        repair = self._repairs.pop(0)
        self._set_status("running")
        self._event("job.repaired", action=repair.action, model=repair.model)
        return repair

    async def _succeed(self, plan: PreflightOutput, deployment: PlannedDeployment, output: CallModelOutput) -> JobState:
        if output.verdict is not None:
            self._guardrail_events(output.verdict.guardrails)
            if output.verdict.refusal is not None:
                await self._refuse_answer(plan, deployment, output)
        succeeded = self._new_event(
            "job.succeeded",
            provider=deployment.provider,
            model=deployment.model,
            input_tokens=output.usage.input_tokens,
            output_tokens=output.usage.output_tokens,
            attempts=self._state.attempts,
            upstream_latency_ms=round(output.latency_ms, 1),
            price_known=deployment.price.known,
        )
        billed = await self._postflight(
            plan,
            deployment,
            output.usage,
            succeeded,
            latency_ms=output.latency_ms,
            answer=output.answer,
        )
        return self._finish(output.answer, output.usage, billed.cost_usd)

    async def _refuse_answer(
        self, plan: PreflightOutput, deployment: PlannedDeployment, output: CallModelOutput
    ) -> NoReturn:
        """An output guardrail refused the answer: the call was made and is billed (`failed_billed`), the job
        fails with the guardrail's code, and the answer is not kept."""
        assert output.verdict is not None and output.verdict.refusal is not None
        refusal = output.verdict.refusal
        refused = self._new_event("policy.refused", code=refusal.code, **refusal.details)
        await self._postflight(plan, deployment, output.usage, refused, latency_ms=output.latency_ms, billed_only=True)
        await self._fail(JobError(code=refusal.code, message=refusal.message, details=refusal.details))

    async def _answer_from_cache(self, plan: PreflightOutput, cached: CachedAnswer) -> JobState:
        """Preflight found an earlier answer to the same request of this tenant: no provider is called, the
        cost row says `cache_hit` with what the call would have cost, and the answer is the earlier one."""
        # The deployment that made the answer, maybe off this plan; no price applies to a call not made.
        deployment = plan.deployments[0].model_copy(
            update={"provider": cached.provider, "model": cached.model, "price": ResolvedPrice.not_applied()}
        )
        # The hit takes the first call's number: its cost row shares that call's key, so a job run again after
        # its process died, which finds no hit this time (or the reverse), is still recorded once.
        self._call_seq += 1
        self._state.deployment = DeploymentRef(provider=cached.provider, model=cached.model)
        self._state.cache_hit = True
        hit = self._new_event(
            "job.cache_hit",
            provider=cached.provider,
            model=cached.model,
            cached_job_id=cached.job_id,
            method=cached.method,
            score=round(cached.score, 4),
            saved_usd=cached.saved_usd,
        )
        await self._postflight(plan, deployment, cached.usage, hit, cached=cached)
        return self._finish(cached.answer, cached.usage, 0.0)

    async def _postflight(
        self,
        plan: PreflightOutput,
        deployment: PlannedDeployment,
        usage: Usage,
        last_event: JobEvent,
        *,
        latency_ms: float | None = None,
        answer: JobResult | None = None,
        cached: CachedAnswer | None = None,
        billed_only: bool = False,
    ) -> PostflightOutput:
        keeps_answer = plan.flags.get(RESPONSE_CACHE, False) and not billed_only
        signs_prompt = keeps_answer or plan.flags.get(SIMILARITY_LOGGING, True)
        # Written with the events still pending; they stay pending until it returns, so a job cancelled during
        # postflight still records them (but not `last_event`) with its cancellation.
        output = await cancellable(
            workflow.execute_local_activity_method(
                LLMActivities.postflight,
                PostflightInput(
                    job_id=workflow.info().workflow_id,
                    tenant_id=self._input.tenant_id,
                    key_id=self._input.key_id,
                    route=self._state.model,
                    call_seq=self._call_seq,
                    deployment=deployment,
                    usage=usage,
                    latency_ms=latency_ms,
                    outcome="cache_hit" if cached else "failed_billed" if billed_only else "success",
                    cached=cached,
                    flags=plan.flags,
                    kind=self._input.kind,
                    # Only what the flags in force need (a local activity's input is encoded and decoded
                    # in process, so each field is CPU on the answer's path): the prompt for similarity or the
                    # cache; its parameters and the answer for the cache.
                    messages=self._messages if signs_prompt else [],
                    params=self._params if keeps_answer else JobParams(),
                    answer=answer if keeps_answer else None,
                    events=[*self._pending_events, last_event],
                    policy_version=plan.decision.policy_version if plan.decision else None,
                    similarity_threshold=plan.similarity_threshold,
                    cache_ttl_s=plan.cache_ttl_s,
                    budget_key=self._budget_key,
                    admitted_tokens=self._input.admitted_tokens,
                ),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                retry_policy=LOCAL_ACTIVITY_RETRY,
            )
        )
        self._pending_events.clear()
        self._budget_key = None  # settled
        return output

    def _finish(self, answer: JobResult, usage: Usage, cost_usd: float | None) -> JobState:
        self._state.result = answer
        self._state.usage = usage
        self._state.cost_usd = cost_usd
        self._state.error = None
        self._state.finished_at = workflow.now()
        self._set_status("succeeded")
        return self._state

    async def _fail(self, error: JobError, *, cause: JobError | None = None) -> NoReturn:
        self._state.error = error
        self._state.finished_at = workflow.now()
        self._set_status("failed")
        self._event("job.failed", code=error.code, message=error.message)
        await self._flush_events(release_budget=True)
        raise ApplicationError(
            error.message if cause is None else f"{error.message} (last error: {cause.code}: {cause.message})",
            self._state,
            type=error.code,
            non_retryable=True,
        )

    def _last_error(self) -> JobError:
        error = self._state.error or JobError(code=errors.ALL_DEPLOYMENTS_FAILED, message="no deployment")
        if error.code in errors.REQUEST_ERRORS:
            return error
        return JobError(
            code=errors.ALL_DEPLOYMENTS_FAILED,
            message=f"every deployment failed; last: {error.code}: {error.message}",
        )

    def _set_status(self, status: JobStatus) -> None:
        self._state.status = status
        if self._input.revision >= 2 and (status in TERMINAL_STATUSES or status == self._listed_status):
            # The close event tells visibility how the job ended (`domain.job_view.summary_status`), and a job
            # started as running is listed so already: each upsert skipped is a history event and a
            # visibility write saved.
            return
        self._listed_status = status
        workflow.upsert_search_attributes([search_attrs.STATUS.value_set(status)])

    def _new_event(self, type: EventType, **data: Any) -> JobEvent:
        self._event_seq += 1
        key = event_key(workflow.info().workflow_id, workflow.info().run_id, self._event_seq, type)
        return JobEvent(key=key, type=type, at=workflow.now(), data=data)

    def _event(self, type: EventType, **data: Any) -> None:
        """Queue an event for the job's next bookkeeping write (postflight or `_flush_events`)."""
        self._pending_events.append(self._new_event(type, **data))

    async def _flush_events(self, *, release_budget: bool = False) -> None:
        """`release_budget`: the job gives back its open reservation (it ends without an answer, or plans
        anew); a job that parks keeps it, since a repair may still answer."""
        release = release_budget and self._budget_key is not None
        if not self._pending_events and not release:
            return
        await cancellable(
            workflow.execute_local_activity_method(
                LLMActivities.record_events,
                RecordEventsInput(
                    job_id=workflow.info().workflow_id,
                    tenant_id=self._input.tenant_id,
                    key_id=self._input.key_id,
                    events=list(self._pending_events),
                    release_budget=release,
                ),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                retry_policy=LOCAL_ACTIVITY_RETRY,
            )
        )
        # Only once written: a flush cut short by a cancel is written again with the cancellation.
        self._pending_events.clear()
        if release:
            self._budget_key = None
