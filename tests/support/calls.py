"""One upstream call as the workflow hands it to `call_model`, for tests of the providers and activities."""

from __future__ import annotations

import uuid
from typing import Any

from schemas.calls import CallModelInput, PlannedDeployment, ResolvedPrice
from schemas.jobs import JobParams
from schemas.messages import ChatMessage
from schemas.routes import RetryConfig

HELLO_THERE = [{"role": "user", "content": "hello there"}]


def unique_model(prefix: str = "m") -> str:
    """An upstream model name no other test uses, so faults configured for it stay in one test."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call_input(
    model: str,
    messages: list[dict[str, Any]] | None = None,
    *,
    provider: str = "p",
    region: str = "local",
    params: JobParams | None = None,
    **param_fields: Any,
) -> CallModelInput:
    """A call of `model` with `messages` (a greeting by default) and the parameters given either way."""
    return CallModelInput(
        job_id="job-1",
        call_seq=1,
        deployment=PlannedDeployment(
            provider=provider,
            model=model,
            region=region,
            price=ResolvedPrice(input_per_mtok=0, output_per_mtok=0, known=True),
            timeout_s=5,
            retry=RetryConfig(),
        ),
        messages=[ChatMessage.model_validate(m) for m in messages or HELLO_THERE],
        params=params or JobParams.model_validate(param_fields),
    )
