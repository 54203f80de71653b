"""The job workflow following its policy's decision (time-skipping server, fake activities): refusals fail
at once with their code, redacted messages are what the provider gets, a refused answer is billed and fails,
and a budget reservation is settled or given back."""

from __future__ import annotations

import pytest

from schemas.decisions import GuardrailOutcome, OutputVerdict, PolicyDecision, Refusal
from schemas.jobs import ChatMessage
from tests.support.workflow_fakes import FakeActivities, JobRig, Upstream, deployment

EMAIL = GuardrailOutcome(guardrail="pii", stage="input", action="redact", kinds=["email"])


@pytest.fixture
def fakes() -> FakeActivities:
    return FakeActivities(routes={"fast": [deployment("a"), deployment("b")]})


async def test_a_refused_job_fails_with_the_refusals_code_and_calls_nothing(
    jobs: JobRig, fakes: FakeActivities
) -> None:
    fakes.decision = PolicyDecision(
        policy_version=3,
        refusal=Refusal(code="model_not_allowed", message="no", details={"model": "fast"}),
        guardrails=[EMAIL],
    )

    failure = await jobs.failure(await jobs.start("fast"))

    assert failure.code == "model_not_allowed"
    assert failure.state.error is not None and failure.state.error.details == {"model": "fast"}
    assert fakes.calls == [] and fakes.postflights == []
    assert fakes.event_types() == ["job.started", "guardrail.triggered", "policy.refused", "job.failed"]
    assert fakes.written[2].data["policy_version"] == 3


async def test_a_budget_refusal_is_written_as_budget_exceeded(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.decision = PolicyDecision(refusal=Refusal(code="budget_exceeded", message="no", details={"period": "day"}))

    failure = await jobs.failure(await jobs.start("fast"))

    assert failure.code == "budget_exceeded"
    assert "budget.exceeded" in fakes.event_types()


async def test_the_provider_gets_the_redacted_messages_and_the_policys_output_cap(
    jobs: JobRig, fakes: FakeActivities
) -> None:
    redacted = [ChatMessage(role="user", content="mail [EMAIL]")]
    fakes.decision = PolicyDecision(
        policy_id="pol_x", policy_version=2, guardrails=[EMAIL], redacted_messages=redacted, max_tokens=50
    )

    state = await (await jobs.start("fast")).result()

    assert state.status == "succeeded"
    [call] = fakes.call_inputs
    assert call.messages == redacted
    assert call.params.max_tokens == 50
    [postflight] = fakes.postflights
    assert postflight.messages == redacted
    assert postflight.policy_version == 2
    assert fakes.event_types() == ["job.started", "guardrail.triggered", "job.succeeded"]


async def test_a_refused_answer_is_billed_then_fails_and_is_not_kept(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.flags = {"enable_response_cache": True}
    outcome = GuardrailOutcome(guardrail="json", stage="output", action="fail", kinds=["invalid_json"])
    fakes.verdict = OutputVerdict(
        guardrails=[outcome],
        refusal=Refusal(code="guardrail_blocked", message="bad json", details={"guardrail": "json"}),
    )

    failure = await jobs.failure(await jobs.start("fast"))

    assert failure.code == "guardrail_blocked"
    assert fakes.models_called() == ["a"]  # a refused answer is not a failed deployment: no reroute
    [postflight] = fakes.postflights
    assert (postflight.outcome, postflight.answer) == ("failed_billed", None)
    assert fakes.event_types() == ["job.started", "guardrail.triggered", "policy.refused", "job.failed"]


async def test_a_reservation_is_settled_by_postflight_and_not_released(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.decision = PolicyDecision(budget_reserved_usd=0.01)
    fakes.budget_key = "job:1"

    await (await jobs.start("fast")).result()

    assert fakes.postflights[0].budget_key == "job:1"
    assert not any(recorded.release_budget for recorded in fakes.recorded)


async def test_a_job_that_fails_after_reserving_gives_the_reservation_back(jobs: JobRig, fakes: FakeActivities) -> None:
    fakes.decision = PolicyDecision(budget_reserved_usd=0.01)
    fakes.budget_key = "job:1"
    fakes.upstreams = {"a": Upstream(fail_always=True, code="bad_request")}

    failure = await jobs.failure(await jobs.start("fast"))

    assert failure.code == "bad_request"
    assert [recorded.release_budget for recorded in fakes.recorded] == [True]
    assert fakes.postflights == []
