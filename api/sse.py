"""A job's answer as OpenAI's server-sent events: live from the relay, then completed from the record.

Used by `POST /v1/chat/completions` with `stream: true` (a fresh stream) and `GET /v1/jobs/{id}/stream`
(a resumed one). Whatever the relay delivered live is followed by the rest of the recorded answer, the
finish reasons, the usage (when asked) and `[DONE]`; a stream that broke, or a job that failed, ends with
an error event naming the job instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from api.stream_hub import StreamBroken, StreamHub
from domain.streaming import replay
from schemas.jobs import JobState
from schemas.openai import CompletionUsage, chunk

KEEP_ALIVE_S = 15.0
"""A comment line this often while a resumed stream waits for its job, so proxies keep the connection."""


@dataclass(frozen=True)
class StreamTarget:
    job_id: str
    model: str
    created: int
    include_usage: bool


async def first_news(hub: StreamHub, job_id: str, job: asyncio.Future[JobState]) -> None:
    """Wait until the job's live stream has something to say or the job has finished, so a job that fails
    before its first token can still be answered with an HTTP error status."""
    async for _ in hub.follow(job_id, after=0, until=job):
        return


async def answer_events(
    hub: StreamHub, target: StreamTarget, finished: Awaitable[JobState], *, after: int = 0
) -> AsyncIterator[str]:
    """The SSE lines of one job's answer past `after` characters; see the module docstring."""
    job = asyncio.ensure_future(finished)
    delivered, relayed = after, False
    try:
        try:
            async for event in hub.follow(target.job_id, after=after, until=job):
                delivered, relayed = max(delivered, event.offset), True
                yield _event(_chunk(target, event.choices), event.offset)
        except StreamBroken as err:
            yield _error("stream_interrupted", f"{err}; the job goes on: read it at /v1/jobs/{target.job_id}/stream")
            return
        while not job.done():
            done, _ = await asyncio.wait({job}, timeout=KEEP_ALIVE_S)
            if not done:
                yield ": waiting for the job\n\n"
        state = job.result()
        if state.error is not None or state.result is None:
            code, message = (state.error.code, state.error.message) if state.error else ("job_failed", "no result")
            yield _error(code, f"job {target.job_id}: {message}")
            return
        fingerprint = state.result.system_fingerprint
        for event in replay(state.result, after=delivered, with_logprobs=not relayed):
            yield _event(_chunk(target, event.choices, system_fingerprint=fingerprint), event.offset)
        if target.include_usage:
            yield _event(_chunk(target, [], usage=CompletionUsage.of(state.usage)))
        yield "data: [DONE]\n\n"
    finally:
        if job.done():  # a client that leaves a running job leaves its stream live for others to resume
            hub.release(target.job_id)
        job.cancel()


def _chunk(target: StreamTarget, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return chunk(target.job_id, target.created, target.model, choices, **extra)


def _event(body: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(body)}\n\n"


def _error(code: str, message: str) -> str:
    # OpenAI's SDKs raise an APIError for a `data:` line holding `error`.
    return f"data: {json.dumps({'error': {'message': message, 'type': 'api_error', 'param': None, 'code': code}})}\n\n"
