"""The timeouts and retry policies of a job's activities (`LLMJobWorkflow`'s options, in one place)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from schemas import errors
from schemas.routes import RetryConfig

LOCAL_ACTIVITY_TIMEOUT = timedelta(seconds=30)
LOCAL_ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
"""Bookkeeping (route plan, cost and event rows) retries until the database answers: a blip delays a job."""
RELAY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""How soon a streamed call whose worker died is retried elsewhere."""
NON_RETRYABLE = sorted(errors.REQUEST_ERRORS | errors.DEPLOYMENT_ERRORS | {errors.UNKNOWN_MODEL})


def call_retry_policy(retry: RetryConfig) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=retry.initial_interval_s),
        backoff_coefficient=retry.backoff,
        maximum_interval=timedelta(seconds=retry.max_interval_s),
        maximum_attempts=retry.max_attempts,
        non_retryable_error_types=NON_RETRYABLE,
    )
