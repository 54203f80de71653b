"""Reading activity failures inside a workflow: what failed, whether it was a cancellation, how many attempts
it cost. Pure functions of the exceptions temporalio raises into workflow code, so they are tested directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from schemas import errors
from schemas.failures import CallFailureDetails, read_details
from schemas.jobs import JobError
from schemas.routes import RetryConfig

T = TypeVar("T")

CALL_FAILURES = (ActivityError, ApplicationError, ActivityTimeoutError, CancelledError)
"""What an activity or a local activity raises into the workflow when it fails for good."""


def unwrap(err: BaseException) -> tuple[BaseException | None, RetryState | None]:
    """The failure's cause and retry state. A failed activity or local activity arrives wrapped in
    `ActivityError`; anything else is read as its own cause, with no retry state."""
    if isinstance(err, ActivityError):
        return err.cause, err.retry_state
    return err, None


def is_cancellation(err: BaseException) -> bool:
    """A cancel reaches the workflow bare, or as the failure of whichever (local) activity was running."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, asyncio.CancelledError | CancelledError)


def job_error(cause: BaseException | None) -> JobError:
    """The job's error for a failed call: the provider's code, or a timeout, or a generic upstream error."""
    if isinstance(cause, ApplicationError):
        return JobError(code=cause.type or errors.UPSTREAM_ERROR, message=cause.message)
    if isinstance(cause, ActivityTimeoutError):
        return JobError(code=errors.UPSTREAM_TIMEOUT, message="upstream call timed out")
    return JobError(code=errors.UPSTREAM_ERROR, message=str(cause))


def attempts_spent(cause: BaseException | None, retry_state: RetryState | None, retry: RetryConfig) -> int:
    """Attempts spent on one deployment; history records only the last attempt's failure, which carries its
    attempt number (`CallFailureDetails`)."""
    details = read_details(cause, CallFailureDetails)
    if details is not None:
        return details.attempt
    # A timeout carries no details: it was retried until the attempts ran out. A local activity's last
    # timeout reports `CANCEL_REQUESTED` as its retry state (temporalio 1.35), so the cause decides.
    if retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED or isinstance(cause, ActivityTimeoutError):
        return retry.max_attempts
    return 1


async def cancellable(call: Awaitable[T]) -> T:
    """Await an (local) activity, turning every form a cancel takes into `asyncio.CancelledError`, so code that
    handles call failures never mistakes a cancelled job for a failed provider."""
    try:
        return await call
    except CALL_FAILURES as err:
        if is_cancellation(err):
            raise asyncio.CancelledError from err
        raise
