"""The workflow-side failure helpers, on the exceptions temporalio raises into workflow code."""

from __future__ import annotations

import asyncio

from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from schemas.contracts import call_activity_id
from schemas.failures import CallFailureDetails
from schemas.routes import RetryConfig
from workflows.failures import attempts_spent, is_cancellation, job_error, unwrap

RETRY = RetryConfig(max_attempts=4)


def activity_error(cause: BaseException, retry_state: RetryState | None) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="call_model",
        activity_id=call_activity_id(1),
        retry_state=retry_state,
    )
    err.__cause__ = cause
    return err


def timeout() -> ActivityTimeoutError:
    return ActivityTimeoutError("timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])


def test_unwrap_reads_the_cause_and_retry_state_of_a_wrapped_failure_or_a_bare_one() -> None:
    cause = ApplicationError("500", type="upstream_error")

    assert unwrap(activity_error(cause, RetryState.MAXIMUM_ATTEMPTS_REACHED)) == (
        cause,
        RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    assert unwrap(cause) == (cause, None)


def test_cancellation_is_recognised_in_every_form_it_arrives() -> None:
    assert is_cancellation(asyncio.CancelledError())
    assert is_cancellation(CancelledError("cancelled"))
    assert is_cancellation(activity_error(CancelledError("cancelled"), RetryState.CANCEL_REQUESTED))
    assert not is_cancellation(activity_error(ApplicationError("500"), RetryState.MAXIMUM_ATTEMPTS_REACHED))
    assert not is_cancellation(ApplicationError("400", type="bad_request"))


def test_job_error_keeps_the_provider_code_and_names_timeouts() -> None:
    assert job_error(ApplicationError("no such model", type="model_not_found")).code == "model_not_found"
    assert job_error(ApplicationError("untyped")).code == "upstream_error"
    assert job_error(timeout()).code == "upstream_timeout"
    assert job_error(RuntimeError("odd")).model_dump() == {"code": "upstream_error", "message": "odd"}


def test_attempts_come_from_the_last_attempts_details() -> None:
    failed_third = ApplicationError("503", CallFailureDetails(attempt=3), type="upstream_error")

    assert attempts_spent(failed_third, RetryState.MAXIMUM_ATTEMPTS_REACHED, RETRY) == 3


def test_a_timeout_without_details_spent_every_attempt() -> None:
    assert attempts_spent(timeout(), RetryState.MAXIMUM_ATTEMPTS_REACHED, RETRY) == 4
    assert attempts_spent(timeout(), None, RETRY) == 4
    assert attempts_spent(timeout(), RetryState.CANCEL_REQUESTED, RETRY) == 4  # how a local call's last timeout reads


def test_a_failure_that_stopped_retrying_early_counts_one() -> None:
    assert attempts_spent(ApplicationError("401", type="upstream_auth"), RetryState.NON_RETRYABLE_FAILURE, RETRY) == 1
