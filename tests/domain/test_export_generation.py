"""What the Langfuse sink reports of a job (`job_calls`), read from recorded histories: the messages the
provider got (redacted), its answer, usage, cost and times, and how the job ended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.exports.generation import job_calls
from tests.support.common import HISTORIES

EVERY_HISTORY = sorted(path for path in HISTORIES.glob("**/*.json") if path.parent.name != "abuse_training")


def history(name: str) -> dict[str, Any]:
    return json.loads((HISTORIES / f"{name}.json").read_text())


def test_a_redacted_prompt_is_reported_as_sent_never_as_the_app_wrote_it() -> None:
    job = job_calls("job_guarded", history("guarded"))

    [call] = job.calls
    assert call.messages == [{"role": "user", "content": "Mail [EMAIL]"}]
    assert "jane@example.com" not in repr(job)
    assert call.output == {"role": "assistant", "content": "Call [PHONE]."}
    assert (call.provider, call.model) == ("up", "gpt-4o-mini")
    assert call.usage == {"input": 11, "output": 5, "total": 16}
    assert call.cost_usd == pytest.approx(4.65e-06)
    assert job.started_at <= call.started_at < call.ended_at <= job.ended_at  # type: ignore[operator]
    assert (job.status, job.route, job.tenant_id) == ("succeeded", "priced", "default")
    assert job.output == call.output


def test_a_reroute_reports_each_deployment_tried_with_the_failure_of_the_first() -> None:
    job = job_calls("job_reroute", history("reroute_activity"))

    first, second = job.calls
    assert first.model.endswith("-a") and second.model.endswith("-b")
    assert first.attempts == 3
    assert first.error is not None and first.error.startswith("upstream_error: ")
    assert first.output is None and first.usage is None
    assert second.error is None
    assert second.output == {"role": "assistant", "content": "echo: hello"}
    assert second.messages == [{"role": "user", "content": "hello"}]
    assert first.ended_at is not None and first.ended_at <= second.started_at
    assert job.status == "succeeded"


def test_local_calls_take_their_deployment_from_the_summary_and_their_retries_from_the_marker() -> None:
    [call] = job_calls("job_retry", history("retry")).calls

    assert call.provider == "up" and call.model.endswith("-a")
    assert call.attempts == 3
    assert call.usage == {"input": 9, "output": 2, "total": 11}


def test_parameters_are_reported_as_scalars() -> None:
    [call] = job_calls("job_refused", history("output_refused")).calls

    assert call.parameters == {"response_format": '{"type": "json_object"}'}


def test_an_answer_refused_by_an_output_guardrail_fails_the_job_and_keeps_the_billed_call() -> None:
    job = job_calls("job_refused", history("output_refused"))

    assert (job.status, job.error_code) == ("failed", "guardrail_blocked")
    assert job.output is None
    [call] = job.calls
    assert call.usage is not None  # the call was made and billed


def test_a_refused_request_has_no_calls_and_says_why() -> None:
    job = job_calls("job_policy", history("policy_refused"))

    assert job.calls == []
    assert (job.status, job.error_code) == ("failed", "model_not_allowed")
    assert job.error_message


def test_a_cache_hit_answers_without_a_call() -> None:
    job = job_calls("job_cached", history("cache_hit"))

    assert job.cache_hit is True
    assert job.calls == []
    assert job.output == {"role": "assistant", "content": "echo: hello"}


def test_a_cancelled_job_says_so() -> None:
    job = job_calls("job_cancelled", history("cancelled"))

    assert (job.status, job.error_code) == ("cancelled", "cancelled")


def test_revision_1_answers_are_read_from_their_older_shape() -> None:
    [call] = job_calls("job_old", history("revision-1/success")).calls

    assert call.output == {"role": "assistant", "content": "echo: hello"}


@pytest.mark.parametrize("path", EVERY_HISTORY, ids=lambda path: str(path.relative_to(HISTORIES)))
def test_every_recorded_job_reads_as_a_closed_job_whose_calls_lie_within_it(path: Path) -> None:
    job = job_calls("job", json.loads(path.read_text()))

    assert job.status in ("succeeded", "failed", "cancelled")
    assert job.ended_at is not None
    assert [call.call_seq for call in job.calls] == sorted(call.call_seq for call in job.calls)
    for call in job.calls:
        assert call.ended_at is not None
        assert job.started_at <= call.started_at <= call.ended_at <= job.ended_at
        assert (call.output is None) == (call.error is not None)


def test_a_history_without_its_start_event_is_refused() -> None:
    with pytest.raises(ValueError, match="no WorkflowExecutionStarted"):
        job_calls("job", {"events": []})
