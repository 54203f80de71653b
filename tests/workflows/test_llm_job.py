"""LLMJobWorkflow's logic on the time-skipping server: retries, reroutes, parking, repairs, cancellation.

Activities are fakes (`tests/support/workflow_fakes.py`) registered under the real names; timers and retry
backoffs run on skipped time, so a 24-hour park timeout takes a moment.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from schemas import errors
from schemas import search_attributes as search_attrs
from schemas.calls import CachedAnswer
from schemas.jobs import JOB_REVISION, DeploymentRef, JobResult, RepairInput, RepairOutput, Usage
from schemas.routes import CallMode
from tests.support.workflow_fakes import USAGE, FakeActivities, JobRig, Upstream, deployment
from workflows.llm_job import LLMJobWorkflow


@pytest.fixture
def fakes() -> FakeActivities:
    """Routes shared by these tests: `fast` falls back from `a` to `b`; `other` is one deployment, `c`."""
    return FakeActivities(
        routes={
            "fast": [deployment("a"), deployment("b")],
            "other": [deployment("c", provider="alt")],
            "local": [deployment("a", call="local"), deployment("b", call="local")],
        }
    )


# --- success ----------------------------------------------------------------------------------------------


async def test_a_job_succeeds_with_one_call_and_is_billed_once(jobs: JobRig, fakes: FakeActivities) -> None:
    handle = await jobs.start("fast")

    state = await handle.result()

    assert state.status == "succeeded"
    assert state.result is not None and state.result.content == "echo: hello"
    assert (state.deployment, state.attempts, state.usage) == (DeploymentRef(provider="up", model="a"), 1, USAGE)
    assert state.cost_usd == fakes.cost_usd
    assert state.error is None and state.finished_at is not None
    assert [p.model for p in fakes.preflights] == ["fast"]
    assert fakes.models_called() == ["a"]
    assert fakes.call_inputs[0].messages[0].content == "hello"
    [postflight] = fakes.postflights
    assert (postflight.call_seq, postflight.deployment.model, postflight.usage) == (1, "a", USAGE)
    assert fakes.event_types() == ["job.started", "job.succeeded"]
    assert await jobs.listed_status(handle) == "succeeded"


def cached_answer(provider: str = "up", model: str = "b") -> CachedAnswer:
    return CachedAnswer(
        job_id="job_earlier",
        answer=JobResult.from_text("the earlier answer"),
        usage=Usage(input_tokens=30, output_tokens=9),
        provider=provider,
        model=model,
        saved_usd=0.0123,
        score=0.97,
        method="minhash",
    )


async def test_a_cache_hit_answers_without_calling_a_provider(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.cached = cached_answer()
    handle = await jobs.start("fast", eager=True)

    state = await handle.result()

    assert state.status == "succeeded" and state.cache_hit
    assert state.result is not None and state.result.content == "the earlier answer"
    assert (state.deployment, state.usage, state.cost_usd) == (
        DeploymentRef(provider="up", model="b"),
        fakes.cached.usage,
        0.0,
    )
    assert fakes.models_called() == []
    [postflight] = fakes.postflights
    assert (postflight.outcome, postflight.cached, postflight.deployment.model) == ("cache_hit", fakes.cached, "b")
    assert postflight.call_seq == 1  # the first call's number: one cost row per job, hit or call
    assert postflight.answer is None  # nothing new to keep in the cache
    assert fakes.event_types() == ["job.started", "job.cache_hit"]
    assert fakes.written[-1].data["cached_job_id"] == "job_earlier"
    assert await jobs.listed_status(handle) == "succeeded"


async def test_a_job_of_revision_2_calls_its_provider_even_on_a_cache_hit(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.cached = cached_answer()
    handle = await jobs.start("fast", revision=2)

    state = await handle.result()

    assert not state.cache_hit and state.result is not None and state.result.content == "echo: hello"
    assert fakes.models_called() == ["a"]
    assert fakes.postflights[0].outcome == "success"


async def test_preflights_flags_and_the_answer_reach_postflight(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.flags = {"track_model_costs": False, "enable_similarity_logging": True, "enable_response_cache": True}
    handle = await jobs.start("fast")

    state = await handle.result()

    [postflight] = fakes.postflights
    assert postflight.flags == fakes.flags
    assert postflight.answer == state.result
    assert (postflight.route, postflight.outcome, postflight.latency_ms) == ("fast", "success", 5.0)
    assert postflight.messages[0].content == "hello"


# --- retry accounting -------------------------------------------------------------------------------------


async def test_attempts_are_summed_over_deployments(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.UPSTREAM_ERROR)
    fakes.upstreams["b"] = Upstream(fail_first=1, code=errors.RATE_LIMITED)

    state = await (await jobs.start("fast")).result()

    assert (state.status, state.deployment) == ("succeeded", DeploymentRef(provider="up", model="b"))
    assert state.attempts == 3 + 2
    assert fakes.models_called() == ["a", "a", "a", "b", "b"]
    assert [p.call_seq for p in fakes.postflights] == [2]
    assert fakes.event_types() == ["job.started", "job.rerouted", "job.succeeded"]


async def test_a_deployment_that_times_out_counts_its_max_attempts(jobs: JobRig, fakes: FakeActivities) -> None:
    # The test server's clock stands still while an activity runs, so its timeout passes in real time.
    fakes.routes["fast"] = [deployment("a", max_attempts=2, timeout_s=0.3), deployment("b")]
    fakes.upstreams["a"] = Upstream(hang=True)

    state = await (await jobs.start("fast")).result()

    assert (state.status, state.deployment) == ("succeeded", DeploymentRef(provider="up", model="b"))
    assert state.attempts == 2 + 1
    assert fakes.models_called() == ["a", "a", "b"]


async def test_local_deployments_count_attempts_over_deployments(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.UPSTREAM_ERROR)
    fakes.upstreams["b"] = Upstream(fail_first=1, code=errors.UPSTREAM_ERROR)

    state = await (await jobs.start("local")).result()

    assert (state.status, state.deployment) == ("succeeded", DeploymentRef(provider="up", model="b"))
    assert state.attempts == 3 + 2
    assert all(call.local for call in fakes.calls)
    assert fakes.models_called() == ["a", "a", "a", "b", "b"]


async def test_a_local_deployment_that_times_out_counts_its_max_attempts(jobs: JobRig, fakes: FakeActivities) -> None:
    # A local call's timeout is enforced by the worker in real time, so it is short.
    fakes.routes["local"] = [deployment("a", call="local", max_attempts=2, timeout_s=0.2), deployment("b")]
    fakes.upstreams["a"] = Upstream(hang=True)

    state = await (await jobs.start("local")).result()

    assert (state.status, state.deployment) == ("succeeded", DeploymentRef(provider="up", model="b"))
    assert state.attempts == 2 + 1
    assert fakes.models_called() == ["a", "a", "b"]


# --- reroute order ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errors.UPSTREAM_AUTH, errors.MODEL_NOT_FOUND])
async def test_a_deployment_error_reroutes_without_retry(jobs: JobRig, fakes: FakeActivities, code: str) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=code)

    state = await (await jobs.start("fast")).result()

    assert (state.status, state.deployment, state.attempts) == ("succeeded", DeploymentRef(provider="up", model="b"), 2)
    assert fakes.models_called() == ["a", "b"]
    assert [call.call_seq for call in fakes.calls] == [1, 2]


async def test_an_exhausted_deployment_reroutes_to_the_next(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.UPSTREAM_TIMEOUT)

    state = await (await jobs.start("fast")).result()

    assert (state.status, state.deployment, state.attempts) == ("succeeded", DeploymentRef(provider="up", model="b"), 4)
    assert fakes.models_called() == ["a", "a", "a", "b"]


@pytest.mark.parametrize("call", ["activity", "local"])
@pytest.mark.parametrize("code", [errors.BAD_REQUEST, errors.CONTEXT_LENGTH_EXCEEDED])
async def test_a_request_error_fails_at_once_without_reroute(
    jobs: JobRig, fakes: FakeActivities, code: str, call: CallMode
) -> None:
    fakes.routes["fast"] = [deployment("a", call=call), deployment("b", call=call)]
    fakes.upstreams["a"] = Upstream(fail_always=True, code=code)

    failure = await jobs.failure(await jobs.start("fast"))

    assert failure.code == code
    assert (failure.state.status, failure.state.attempts) == ("failed", 1)
    assert failure.state.error is not None and failure.state.error.code == code
    assert fakes.models_called() == ["a"]
    assert fakes.postflights == []
    assert fakes.event_types() == ["job.started", "job.failed"]


async def test_every_deployment_failing_fails_with_all_deployments_failed(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.UPSTREAM_ERROR)
    fakes.upstreams["b"] = Upstream(fail_always=True, code=errors.UPSTREAM_AUTH)
    handle = await jobs.start("fast")

    failure = await jobs.failure(handle)

    assert failure.code == errors.ALL_DEPLOYMENTS_FAILED
    assert (failure.state.status, failure.state.attempts) == ("failed", 3 + 1)
    assert failure.state.error is not None and errors.UPSTREAM_AUTH in failure.state.error.message
    assert fakes.models_called() == ["a", "a", "a", "b"]
    assert fakes.postflights == []
    assert fakes.event_types() == ["job.started", "job.rerouted", "job.failed"]
    assert await jobs.listed_status(handle) == "failed"


async def test_an_unknown_model_fails_without_calling_anything(jobs: JobRig, fakes: FakeActivities) -> None:
    failure = await jobs.failure(await jobs.start("nope"))

    assert failure.code == errors.UNKNOWN_MODEL
    assert (failure.state.status, failure.state.attempts) == ("failed", 0)
    assert fakes.calls == []
    assert fakes.event_types() == ["job.started", "job.failed"]


# --- parking and repair -----------------------------------------------------------------------------------


async def test_an_exhausted_job_parks_instead_of_failing(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True)
    fakes.upstreams["b"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")

    state = await jobs.until_status(handle, "parked")

    assert state.error is not None and state.error.code == errors.ALL_DEPLOYMENTS_FAILED
    assert state.attempts == 6
    assert await jobs.search_status(handle) == "parked"
    assert fakes.event_types() == ["job.started", "job.rerouted", "job.parked"]


async def test_a_parked_job_fails_with_park_timeout_after_24_hours(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.UPSTREAM_AUTH)
    fakes.upstreams["b"] = Upstream(fail_always=True, code=errors.UPSTREAM_AUTH)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")
    parked_at = await jobs.env.get_current_time()

    await jobs.env.sleep(timedelta(hours=23))
    assert await jobs.status(handle) == "parked"
    failure = await jobs.failure(handle)

    assert await jobs.env.get_current_time() - parked_at >= timedelta(hours=24)
    assert failure.code == errors.PARK_TIMEOUT
    assert failure.state.status == "failed"
    assert fakes.models_called() == ["a", "b"]
    assert fakes.event_types() == ["job.started", "job.rerouted", "job.parked", "job.failed"]


async def test_repair_retry_succeeds_on_a_later_call(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")
    fakes.upstreams["a"] = Upstream()  # the provider recovers

    answer = await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry"))
    state = await handle.result()

    assert (answer.action, answer.status) == ("retry", "running")
    assert (state.status, state.attempts, state.error) == ("succeeded", 3 + 1, None)
    assert fakes.models_called() == ["a"] * 4
    assert [p.call_seq for p in fakes.postflights] == [2]
    assert fakes.event_types() == ["job.started", "job.parked", "job.repaired", "job.succeeded"]


async def test_repair_reroute_replans_with_the_new_model(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")

    await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="reroute", model="other"))
    state = await handle.result()

    assert (state.status, state.model) == ("succeeded", "other")
    assert state.deployment == DeploymentRef(provider="alt", model="c")
    assert [p.model for p in fakes.preflights] == ["fast", "other"]
    assert fakes.models_called() == ["a", "a", "a", "c"]
    assert (await handle.describe()).typed_search_attributes.get(search_attrs.MODEL) == "other"


async def test_repair_abort_fails_the_job_as_aborted(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")

    await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="abort"))
    failure = await jobs.failure(handle)

    assert (failure.code, failure.state.status) == (errors.ABORTED, "failed")
    assert fakes.models_called() == ["a"] * 3
    assert fakes.event_types() == ["job.started", "job.parked", "job.repaired", "job.failed"]


# --- the listed status: `KintsugiStatus` while a job runs, the execution status once it ended -------------


async def test_a_job_started_running_succeeds_without_a_status_upsert(jobs: JobRig) -> None:
    handle = await jobs.start("fast", eager=True)

    state = await handle.result()

    assert state.status == "succeeded"
    assert await jobs.status_upserts(handle) == []
    assert await jobs.search_status(handle) == "running"
    assert await jobs.execution_status(handle) == WorkflowExecutionStatus.COMPLETED
    assert await jobs.listed_status(handle) == "succeeded"


async def test_a_queued_job_says_running_once_and_nothing_at_its_end(jobs: JobRig) -> None:
    handle = await jobs.start("fast")

    await handle.result()

    assert await jobs.status_upserts(handle) == ["running"]
    assert await jobs.listed_status(handle) == "succeeded"


async def test_a_parked_job_is_listed_parked_then_running_once_repaired(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park", eager=True)
    await jobs.until_status(handle, "parked")

    assert await jobs.status_upserts(handle) == ["parked"]
    assert await jobs.listed_status(handle) == "parked"
    fakes.upstreams["a"] = Upstream()
    await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry"))
    await handle.result()

    assert await jobs.status_upserts(handle) == ["parked", "running"]
    assert await jobs.listed_status(handle) == "succeeded"


async def test_a_failed_job_upserts_nothing_at_its_end(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(fail_always=True, code=errors.BAD_REQUEST)
    handle = await jobs.start("fast")

    await jobs.failure(handle)

    assert await jobs.status_upserts(handle) == ["running"]
    assert await jobs.search_status(handle) == "running"
    assert await jobs.execution_status(handle) == WorkflowExecutionStatus.FAILED
    assert await jobs.listed_status(handle) == "failed"


async def test_a_revision_1_job_still_upserts_every_status(jobs: JobRig, fakes: FakeActivities) -> None:
    # A job that a deploy before revisions started keeps the commands it was recorded with (test_replay).
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park", revision=1)
    await jobs.until_status(handle, "parked")
    fakes.upstreams["a"] = Upstream()

    await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry"))
    await handle.result()

    assert await jobs.status_upserts(handle) == ["running", "parked", "running", "succeeded"]
    assert await jobs.search_status(handle) == "succeeded"


async def test_a_job_of_a_newer_revision_waits_for_a_worker_that_knows_it(jobs: JobRig, fakes: FakeActivities) -> None:
    # An API deployed before the workers started it: this worker fails the workflow task, not the job.
    handle = await jobs.start("fast", revision=JOB_REVISION + 1)
    for _ in range(100):
        history = await handle.fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events):
            break
        await asyncio.sleep(0.05)

    assert any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert fakes.calls == []  # nothing ran
    await handle.terminate()


# --- repair validation ------------------------------------------------------------------------------------


async def test_repair_of_a_running_job_is_rejected(isolated_jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.upstreams["a"] = Upstream(hang=True)
    handle = await isolated_jobs.start("fast", on_exhausted="park")
    await isolated_jobs.until(lambda: fakes.calls, "the call in flight")

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry"))

    assert await isolated_jobs.status(handle) == "running"


async def test_repair_reroute_without_a_model_is_rejected(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="reroute"))

    assert await jobs.status(handle) == "parked"
    assert [p.model for p in fakes.preflights] == ["fast"]


async def test_a_second_repair_while_one_is_under_way_is_rejected(isolated_jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await isolated_jobs.start("fast", on_exhausted="park")
    await isolated_jobs.until_status(handle, "parked")
    fakes.upstreams["a"] = Upstream(hang=True)  # the repaired call stays in flight

    answers = await asyncio.gather(
        handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry")),
        handle.execute_update(LLMJobWorkflow.repair, RepairInput(action="retry")),
        return_exceptions=True,
    )

    accepted = [answer for answer in answers if isinstance(answer, RepairOutput)]
    rejected = [answer for answer in answers if isinstance(answer, WorkflowUpdateFailedError)]
    assert (len(accepted), len(rejected)) == (1, 1)
    await isolated_jobs.until(lambda: len(fakes.calls) == 4, "the repaired call")
    assert fakes.models_called() == ["a"] * 4  # one retry, not two
    assert await isolated_jobs.status(handle) == "running"


# --- cancellation at each step ----------------------------------------------------------------------------

# A local activity holds its workflow task open, and a cancel request waits for that task to end; the
# worker hands a task back at 80% of its timeout, so a short one delivers the cancel in 1.6 s instead of 8.
SHORT_TASK = timedelta(seconds=2)


async def test_cancel_during_preflight(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.hang_preflight = True
    handle = await jobs.start("fast", task_timeout=SHORT_TASK)
    await jobs.until(lambda: fakes.preflights, "preflight")

    await handle.cancel()
    await jobs.cancelled(handle)

    assert fakes.calls == []
    assert fakes.event_types() == ["job.started", "job.cancelled"]


@pytest.mark.parametrize("call", ["activity", "local"])
async def test_cancel_during_a_call_in_flight(isolated_jobs: JobRig, fakes: FakeActivities, call: CallMode) -> None:
    fakes.routes["fast"] = [deployment("a", call=call), deployment("b", call=call)]
    fakes.upstreams["a"] = Upstream(hang=True)
    handle = await isolated_jobs.start("fast", task_timeout=SHORT_TASK)
    await isolated_jobs.until(lambda: fakes.calls, "the call in flight")

    await handle.cancel()
    await isolated_jobs.cancelled(handle)

    assert fakes.models_called() == ["a"]  # a cancel is not a provider failure: no retry, no reroute
    assert fakes.postflights == []
    assert fakes.event_types() == ["job.started", "job.cancelled"]
    assert await isolated_jobs.listed_status(handle) == "cancelled"


async def test_cancel_while_parked(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.routes["fast"] = [deployment("a")]
    fakes.upstreams["a"] = Upstream(fail_always=True)
    handle = await jobs.start("fast", on_exhausted="park")
    await jobs.until_status(handle, "parked")

    await handle.cancel()
    await jobs.cancelled(handle)

    assert fakes.event_types() == ["job.started", "job.parked", "job.cancelled"]
    # Nothing upserted at its end: the execution status says it was cancelled.
    assert await jobs.status_upserts(handle) == ["running", "parked"]
    assert await jobs.execution_status(handle) == WorkflowExecutionStatus.CANCELED
    assert await jobs.listed_status(handle) == "cancelled"


async def test_cancel_during_postflight(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.hang_postflight = True
    handle = await jobs.start("fast", task_timeout=SHORT_TASK)
    await jobs.until(lambda: fakes.postflights, "postflight")

    await handle.cancel()
    await jobs.cancelled(handle)

    assert fakes.models_called() == ["a"]
    assert fakes.event_types() == ["job.started", "job.cancelled"]
