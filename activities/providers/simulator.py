"""The built-in offline provider: fixed latency, optional failure rate, answers labelled as simulated."""

from __future__ import annotations

import asyncio
import random

from temporalio.exceptions import ApplicationError

from schemas.calls import CallModelInput
from schemas.errors import UPSTREAM_ERROR
from schemas.jobs import JobResult, Usage
from schemas.routes import SimulatorProvider

_ECHO_CHARS = 200


def estimate_tokens(text: str) -> int:
    """About four characters a token, as a rough count for text nobody tokenised."""
    return max(1, len(text) // 4)


async def complete(provider: SimulatorProvider, call: CallModelInput) -> tuple[JobResult, Usage]:
    await asyncio.sleep(provider.latency_ms / 1000)
    if provider.fail_rate and random.random() < provider.fail_rate:
        raise ApplicationError(
            f"{call.deployment.provider}/{call.deployment.model}: simulated failure", type=UPSTREAM_ERROR
        )
    users = [m for m in call.messages if m.role == "user"] or call.messages
    echo = users[-1].text()[:_ECHO_CHARS] if users else ""
    content = f"[simulated] {echo}"
    prompt = "".join(m.text() for m in call.messages)
    return (
        JobResult.from_text(content),
        Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(content)),
    )
