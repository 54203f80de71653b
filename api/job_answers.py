"""Waiting for the job an OpenAI-compatible request started, and the HTTP error a failed one answers with."""

from __future__ import annotations

import asyncio

from api.errors import ApiError
from client import job_client
from client.job_client import JobHandle
from schemas import errors
from schemas.jobs import JobResult, JobState

JOB_ERROR_STATUS = {
    errors.BAD_REQUEST: 400,
    errors.CONTEXT_LENGTH_EXCEEDED: 400,
    errors.UNSUPPORTED_PARAMETER: 400,
    errors.MODEL_TYPE_MISMATCH: 400,
    errors.UNKNOWN_MODEL: 404,
    errors.CANCELLED: 409,
    **errors.POLICY_REFUSALS,
}
"""The status of a job that ended without an answer, by its error code; any other code is the upstream's (502)."""


async def wait_finished(handle: JobHandle, model: str, timeout_s: float) -> JobState:
    """The job's final state; a 504 naming the job when it is still running after `timeout_s`."""
    try:
        return await asyncio.wait_for(job_client.finished_state(handle, model), timeout_s)
    except TimeoutError as err:
        raise ApiError(
            504, "job_timeout", f"job {handle.id} is still running; read it at /v1/jobs/{handle.id}"
        ) from err


def answer_or_error(job_id: str, state: JobState) -> JobResult:
    """The job's answer, or the HTTP error its failure maps to."""
    if state.error is not None or state.result is None:
        error = state.error
        code, message = (error.code, error.message) if error else (errors.UPSTREAM_ERROR, "no result")
        details = error.details if error else None  # a refusal's (the guardrail, the kinds), never prompt text
        raise ApiError(
            JOB_ERROR_STATUS.get(code, 502),
            code,
            f"{message} (job {job_id})",
            details,
            headers={"X-Kintsugi-Job-Id": job_id},  # the failed job is there to read: its trace says why
        )
    return state.result
