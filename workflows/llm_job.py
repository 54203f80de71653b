"""LLMJobWorkflow: one LLM job, from route plan to recorded cost, through retries, reroutes and parking."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.jobs import LLMActivities
    from schemas import errors
    from schemas import search_attributes as sa
    from schemas.calls import (
        CallModelInput,
        CallModelOutput,
        JobEvent,
        PlannedDeployment,
        PostflightInput,
        PreflightInput,
        PreflightOutput,
        RecordEventsInput,
    )
    from schemas.jobs import (
        DeploymentRef,
        JobError,
        JobInput,
        JobResult,
        JobState,
        JobStatus,
        RepairInput,
        RepairOutput,
    )
    from schemas.routes import RetryConfig

LOCAL_ACTIVITY_TIMEOUT = timedelta(seconds=30)
LOCAL_ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
"""Bookkeeping (route plan, cost and event rows) retries until the database answers: a blip delays a job."""
CALL_FAILURES = (ActivityError, ApplicationError, ActivityTimeoutError, CancelledError)
"""What an (local) activity raises into the workflow when it fails for good."""
NON_RETRYABLE = sorted(errors.REQUEST_ERRORS | errors.DEPLOYMENT_ERRORS | {errors.UNKNOWN_MODEL})


def call_retry_policy(retry: RetryConfig) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=retry.initial_interval_s),
        backoff_coefficient=retry.backoff,
        maximum_interval=timedelta(seconds=retry.max_interval_s),
        maximum_attempts=retry.max_attempts,
        non_retryable_error_types=NON_RETRYABLE,
    )


class _Exhausted(Exception):
    """Every deployment of the plan failed (or the request itself was refused)."""


@workflow.defn
class LLMJobWorkflow:
    @workflow.init
    def __init__(self, input: JobInput) -> None:
        self._input = input
        self._state = JobState(status="queued", model=input.model, metadata=input.metadata)
        self._repair: RepairInput | None = None
        self._call_seq = 0
        self._event_seq = 0
        self._pending_events: list[JobEvent] = []

    @workflow.run
    async def run(self, input: JobInput) -> JobState:
        try:
            self._set_status("running")
            self._event("job.started", model=input.model)
            plan = await self._preflight(input, input.model)
            while True:
                try:
                    deployment, output = await self._call_plan(input, plan)
                    break
                except _Exhausted:
                    if input.on_exhausted == "fail":
                        await self._fail(self._last_error())
                    repair = await self._park(input)
                    if repair.action == "abort":
                        await self._fail(JobError(code=errors.ABORTED, message="aborted by a repair request"))
                    if repair.action == "reroute" and repair.model:
                        self._state.model = repair.model
                        workflow.upsert_search_attributes([sa.MODEL.value_set(repair.model)])
                        plan = await self._preflight(input, repair.model)
            return await self._succeed(input, deployment, output)
        except (asyncio.CancelledError, *CALL_FAILURES) as err:
            # A cancel can surface bare or as the failure of whichever (local) activity was running.
            if not _is_cancellation(err):
                raise
            self._state.finished_at = workflow.now()
            self._set_status("cancelled")
            self._event("job.cancelled")
            await self._flush_events()
            raise asyncio.CancelledError from err

    @workflow.query
    def state(self) -> JobState:
        return self._state

    @workflow.update
    async def repair(self, request: RepairInput) -> RepairOutput:
        self._repair = request
        return RepairOutput(action=request.action, status="running")

    @repair.validator
    def _validate_repair(self, request: RepairInput) -> None:
        if self._state.status != "parked" or self._repair is not None:
            raise ValueError(f"job is {self._state.status}, not parked (or a repair is already under way)")
        if request.action == "reroute" and not request.model:
            raise ValueError("reroute needs a model")

    async def _preflight(self, input: JobInput, model: str) -> PreflightOutput:
        try:
            return await workflow.execute_local_activity_method(
                LLMActivities.preflight,
                PreflightInput(job_id=workflow.info().workflow_id, tenant_id=input.tenant_id, model=model),
                start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
                retry_policy=LOCAL_ACTIVITY_RETRY,
            )
        except CALL_FAILURES as err:
            if _is_cancellation(err):
                raise
            await self._fail(_job_error(_unwrap(err)[0]))

    async def _call_plan(self, input: JobInput, plan: PreflightOutput) -> tuple[PlannedDeployment, CallModelOutput]:
        for index, deployment in enumerate(plan.deployments):
            if index > 0:
                self._event("job.rerouted", provider=deployment.provider, model=deployment.model)
            self._call_seq += 1
            self._state.deployment = DeploymentRef(provider=deployment.provider, model=deployment.model)
            try:
                output = await self._call_model(input, deployment)
            except CALL_FAILURES as err:
                if _is_cancellation(err):
                    raise  # the job was cancelled while the call was in flight: not a provider failure
                cause, retry_state = _unwrap(err)
                self._state.attempts += _attempts(cause, retry_state, deployment.retry)
                self._state.error = _job_error(cause)
                if self._state.error.code in errors.REQUEST_ERRORS:
                    raise _Exhausted from err
                continue
            self._state.attempts += output.attempt
            return deployment, output
        raise _Exhausted

    async def _call_model(self, input: JobInput, deployment: PlannedDeployment) -> CallModelOutput:
        call = CallModelInput(
            job_id=workflow.info().workflow_id,
            call_seq=self._call_seq,
            deployment=deployment,
            messages=input.messages,
            params=input.params,
        )
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=deployment.timeout_s),
            "retry_policy": call_retry_policy(deployment.retry),
            # The trace reads the call number and deployment back from these two.
            "activity_id": f"call-{self._call_seq}",
            "summary": f"{deployment.provider}/{deployment.model}",
        }
        if deployment.call == "local":
            return await workflow.execute_local_activity_method(LLMActivities.call_model, call, **options)
        return await workflow.execute_activity_method(LLMActivities.call_model, call, **options)

    async def _park(self, input: JobInput) -> RepairInput:
        self._state.error = self._last_error()
        self._set_status("parked")
        self._event("job.parked", error=self._state.error.model_dump())
        await self._flush_events()
        try:
            await workflow.wait_condition(
                lambda: self._repair is not None,
                timeout=timedelta(seconds=input.park_timeout_s),
                timeout_summary="park",
            )
        except TimeoutError:
            await self._fail(
                JobError(code=errors.PARK_TIMEOUT, message="parked job was not repaired in time"),
                cause=self._state.error,
            )
        repair, self._repair = self._repair, None
        assert repair is not None
        self._set_status("running")
        self._event("job.repaired", action=repair.action, model=repair.model)
        return repair

    async def _succeed(self, input: JobInput, deployment: PlannedDeployment, output: CallModelOutput) -> JobState:
        self._event(
            "job.succeeded",
            provider=deployment.provider,
            model=deployment.model,
            input_tokens=output.usage.input_tokens,
            output_tokens=output.usage.output_tokens,
            attempts=self._state.attempts,
            upstream_latency_ms=round(output.latency_ms, 1),
            price_known=deployment.price.known,
        )
        billed = await workflow.execute_local_activity_method(
            LLMActivities.postflight,
            PostflightInput(
                job_id=workflow.info().workflow_id,
                tenant_id=input.tenant_id,
                call_seq=self._call_seq,
                deployment=deployment,
                usage=output.usage,
                events=self._take_events(),
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            retry_policy=LOCAL_ACTIVITY_RETRY,
        )
        self._state.result = JobResult(content=output.content, finish_reason=output.finish_reason)
        self._state.usage = output.usage
        self._state.cost_usd = billed.cost_usd
        self._state.error = None
        self._state.finished_at = workflow.now()
        self._set_status("succeeded")
        return self._state

    async def _fail(self, error: JobError, *, cause: JobError | None = None) -> NoReturn:
        self._state.error = error
        self._state.finished_at = workflow.now()
        self._set_status("failed")
        self._event("job.failed", code=error.code, message=error.message)
        await self._flush_events()
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
        workflow.upsert_search_attributes([sa.STATUS.value_set(status)])

    def _event(self, type: str, **data: Any) -> None:
        self._event_seq += 1
        key = f"{workflow.info().workflow_id}:{workflow.info().run_id}:{self._event_seq}"
        self._pending_events.append(JobEvent(key=key, type=type, at=workflow.now(), data=data))

    def _take_events(self) -> list[JobEvent]:
        events, self._pending_events = self._pending_events, []
        return events

    async def _flush_events(self) -> None:
        if not self._pending_events:
            return
        await workflow.execute_local_activity_method(
            LLMActivities.record_events,
            RecordEventsInput(
                job_id=workflow.info().workflow_id,
                tenant_id=self._input.tenant_id,
                events=self._take_events(),
            ),
            start_to_close_timeout=LOCAL_ACTIVITY_TIMEOUT,
            retry_policy=LOCAL_ACTIVITY_RETRY,
        )


def _unwrap(err: Exception) -> tuple[BaseException | None, RetryState | None]:
    """An activity's failure arrives wrapped in `ActivityError`; a local activity's arrives bare."""
    if isinstance(err, ActivityError):
        return err.cause, err.retry_state
    return err, None


def _is_cancellation(err: BaseException) -> bool:
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, asyncio.CancelledError | CancelledError)


def _job_error(cause: BaseException | None) -> JobError:
    if isinstance(cause, ApplicationError):
        return JobError(code=cause.type or errors.UPSTREAM_ERROR, message=cause.message)
    if isinstance(cause, ActivityTimeoutError):
        return JobError(code=errors.UPSTREAM_TIMEOUT, message="upstream call timed out")
    return JobError(code=errors.UPSTREAM_ERROR, message=str(cause))


def _attempts(cause: BaseException | None, retry_state: RetryState | None, retry: RetryConfig) -> int:
    """Attempts spent on one deployment; history records only the last attempt's failure."""
    if isinstance(cause, ApplicationError) and cause.details:
        detail = cause.details[0]
        if isinstance(detail, dict) and isinstance(detail.get("attempt"), int):
            return int(detail["attempt"])
    # A timeout carries no details: it was retried until the attempts ran out (a local activity's failure
    # has no retry state).
    if retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED or (
        retry_state is None and isinstance(cause, ActivityTimeoutError)
    ):
        return retry.max_attempts
    return 1
