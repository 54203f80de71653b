"""Upstream LLM calls over httpx: one request per call, no retries (Temporal owns them).

Every failure is raised as an `ApplicationError` whose `type` is one of the codes in `schemas.errors`, retryable or
not as the code says; `REQUEST_ERRORS` and `DEPLOYMENT_ERRORS` tell the workflow whether rerouting can help.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from activities.providers import anthropic, embeddings, openai, simulator
from activities.providers.sink import ChunkSink
from schemas.calls import CallModelInput, CallModelOutput
from schemas.embeddings import EmbeddingInput
from schemas.jobs import JobResult, Usage
from schemas.routes import AnthropicProvider, OpenAIProvider, ProviderConfig, SimulatorProvider

__all__ = ["call_provider"]


def _no_heartbeat() -> None:
    pass


async def call_provider(
    http: httpx.AsyncClient,
    provider: ProviderConfig,
    call: CallModelInput,
    *,
    api_key: str | None,
    heartbeat: Callable[[], None] = _no_heartbeat,
    on_chunk: ChunkSink | None = None,
) -> CallModelOutput:
    """Make one upstream call for `call` on `provider`.

    Args:
        http: A shared client; its own retries must be off.
        provider: Where and how to call; `call.deployment.model` names the upstream model.
        call: The messages and sampling parameters.
        api_key: Sent as the provider expects (bearer or `x-api-key`); read from settings by the caller,
            so it never enters workflow history.
        heartbeat: Called on each streamed chunk, so the worker records progress through a long answer.
        on_chunk: Given each chunk as it arrives (OpenAI's chunk shape), which makes the call stream from
            the upstream; None when nobody is listening.

    Raises:
        ApplicationError: `type` is one of this module's codes; `non_retryable` and `next_retry_delay`
            are set for Temporal's RetryPolicy.
    """
    started = time.perf_counter()
    if call.embedding is not None:
        answer, usage = await _embed(http, provider, call, call.embedding, api_key=api_key)
    elif isinstance(provider, OpenAIProvider):
        answer, usage = await openai.complete(
            http, provider, call, api_key=api_key, heartbeat=heartbeat, on_chunk=on_chunk
        )
    elif isinstance(provider, AnthropicProvider):
        answer, usage = await anthropic.complete(
            http, provider, call, api_key=api_key, heartbeat=heartbeat, on_chunk=on_chunk
        )
    elif isinstance(provider, SimulatorProvider):
        answer, usage = await simulator.complete(provider, call, on_chunk=on_chunk)
    else:
        raise TypeError(f"unknown provider kind: {provider!r}")
    return CallModelOutput(
        answer=answer,
        usage=usage,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


async def _embed(
    http: httpx.AsyncClient,
    provider: ProviderConfig,
    call: CallModelInput,
    embedding: EmbeddingInput,
    *,
    api_key: str | None,
) -> tuple[JobResult, Usage]:
    if isinstance(provider, OpenAIProvider):
        return await embeddings.embed(http, provider, call, embedding, api_key=api_key)
    if isinstance(provider, SimulatorProvider):
        return await simulator.embed(provider, call, embedding)
    raise TypeError(f"a {provider.kind} provider serves no embeddings")  # the routes file refuses such a route
