"""Typed failure details: what a sender puts in an ApplicationError, a receiver reads back as the same model."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from schemas.failures import CallFailureDetails, read_details
from schemas.jobs import JobError, JobState


def test_details_read_back_from_the_model_or_its_json_form() -> None:
    sent = ApplicationError("boom", CallFailureDetails(attempt=3), type="upstream_error")
    received = ApplicationError("boom", {"attempt": 3}, type="upstream_error")  # as a converter decodes it

    assert read_details(sent, CallFailureDetails) == CallFailureDetails(attempt=3)
    assert read_details(received, CallFailureDetails) == CallFailureDetails(attempt=3)


def test_missing_or_foreign_details_read_as_none() -> None:
    state = JobState(status="failed", model="m", error=JobError(code="x", message="y"))

    assert read_details(ApplicationError("no details"), CallFailureDetails) is None
    assert read_details(ApplicationError("other", {"unrelated": True}), CallFailureDetails) is None
    assert read_details(ValueError("not an application error"), CallFailureDetails) is None
    assert read_details(None, CallFailureDetails) is None
    assert read_details(ApplicationError("job", state.model_dump(mode="json")), JobState) == state
