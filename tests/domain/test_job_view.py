"""Jobs read from what the Temporal server knows: visibility filters, statuses, and failures."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError

from domain.errors import InvalidFilter
from domain.job_view import state_from_failure, visibility_query
from schemas.jobs import JobError, JobState, JobStatus


def test_the_visibility_query_is_scoped_to_the_tenant_and_filters() -> None:
    query = visibility_query("ten_1", status="parked", model="openai/gpt-4o-mini")

    assert "KintsugiTenant = 'ten_1'" in query
    assert "ExecutionStatus = 'Running' AND KintsugiStatus = 'parked'" in query
    assert "KintsugiModel = 'openai/gpt-4o-mini'" in query
    assert "KintsugiStatus" not in visibility_query("ten_1", status=None, model=None)


@pytest.mark.parametrize(
    ("status", "closed_as"),
    [
        ("succeeded", "ExecutionStatus IN ('Completed')"),
        ("failed", "ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')"),
        ("cancelled", "ExecutionStatus IN ('Canceled')"),
    ],
)
def test_a_final_status_is_filtered_by_how_the_execution_closed(status: JobStatus, closed_as: str) -> None:
    # The workflow does not upsert final statuses (`JobInput.revision` 2): `KintsugiStatus` says how a job
    # was last listed while it ran, the execution status how it ended.
    query = visibility_query("ten_1", status=status, model=None)

    assert query.endswith(f" AND {closed_as}")
    assert "KintsugiStatus" not in query


@pytest.mark.parametrize("model", ["x' OR KintsugiTenant = 'other", "a b", "", "x" * 201])
def test_a_model_filter_that_could_break_out_of_the_query_is_refused(model: str) -> None:
    with pytest.raises(InvalidFilter):
        visibility_query("ten_1", status=None, model=model)


def test_a_failed_job_reads_its_own_state_from_the_failure() -> None:
    state = JobState(status="failed", model="m", attempts=3, error=JobError(code="park_timeout", message="late"))
    err = WorkflowFailureError(cause=ApplicationError("late", state.model_dump(mode="json"), type="park_timeout"))

    assert state_from_failure(err, "m") == state


def test_jobs_ended_from_outside_read_with_a_code() -> None:
    cancelled = state_from_failure(WorkflowFailureError(cause=CancelledError("cancelled")), "m")
    terminated = state_from_failure(WorkflowFailureError(cause=TerminatedError("by ops")), "m")
    other = state_from_failure(WorkflowFailureError(cause=ApplicationError("nondeterminism")), "m")

    assert (cancelled.status, cancelled.error and cancelled.error.code) == ("cancelled", "cancelled")
    assert (terminated.status, terminated.error and terminated.error.code) == ("failed", "terminated")
    assert (other.status, other.error and other.error.code) == ("failed", "job_failed")
