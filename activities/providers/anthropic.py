"""Anthropic Messages API: the request translated (`anthropic_request`), the answer read back in OpenAI's
shapes (`anthropic_stream`), whole or streamed as SSE events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.providers.anthropic_request import request_body
from activities.providers.anthropic_stream import ChunkTranslator, read_message, read_usage
from activities.providers.errors import bad_response
from activities.providers.exchange import exchange, streamed_answer
from activities.providers.sink import ChunkSink
from domain.answers import AnswerBuilder, as_dict
from schemas.calls import CallModelInput
from schemas.errors import BAD_REQUEST, RATE_LIMITED, UPSTREAM_ERROR
from schemas.jobs import JobResult, Usage
from schemas.routes import AnthropicProvider

Completion = tuple[JobResult, Usage]

_STREAM_ERRORS = {"invalid_request_error": BAD_REQUEST, "rate_limit_error": RATE_LIMITED}
"""An `error` event's type as our code; the others (overloaded, api_error) are the upstream's, retryable."""


async def complete(
    http: httpx.AsyncClient,
    provider: AnthropicProvider,
    call: CallModelInput,
    *,
    api_key: str | None,
    heartbeat: Callable[[], None],
    on_chunk: ChunkSink | None = None,
) -> Completion:
    """One call; streamed from the upstream when the provider says so or when `on_chunk` wants the chunks."""
    where = f"{call.deployment.provider}/{call.deployment.model}"
    stream = provider.stream or on_chunk is not None
    headers = {"anthropic-version": provider.api_version}
    if api_key:
        headers["x-api-key"] = api_key
    request = http.build_request(
        "POST",
        f"{provider.base_url.rstrip('/')}/v1/messages",
        json=request_body(call, stream=stream),
        headers=headers,
        timeout=httpx.Timeout(provider.timeout_s),
    )

    async def read(response: httpx.Response) -> Completion:
        if stream:
            return await _read_stream(where, call.deployment.model, response, heartbeat, on_chunk)
        return _read_body(where, response)

    return await exchange(http, request, where, stream=stream, read=read)


def _read_body(where: str, response: httpx.Response) -> Completion:
    try:
        body = response.json()
        return read_message(body), read_usage(body.get("usage"))
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as err:
        raise bad_response(where, f"{type(err).__name__}: {err}; body: {response.text[:500]}") from err


async def _read_stream(
    where: str, model: str, response: httpx.Response, heartbeat: Callable[[], None], on_chunk: ChunkSink | None
) -> Completion:
    translator = ChunkTranslator(created=int(time.time()), model=model)
    builder = AnswerBuilder()
    async for event in _events(where, response):
        heartbeat()
        if event.get("type") == "error":
            # The status line was already 200; an error event is the server giving up on this answer.
            error = as_dict(event.get("error"))
            code = _STREAM_ERRORS.get(str(error.get("type")), UPSTREAM_ERROR)
            raise ApplicationError(
                f"{where}: error in stream: {str(error.get('message') or error)[:200]}",
                type=code,
                non_retryable=code == BAD_REQUEST,
            )
        for chunk in translator.chunks(event):
            builder.add(chunk)
            if on_chunk is not None:
                await on_chunk(chunk)
        if translator.stopped:
            break
    if not translator.stopped:
        raise bad_response(where, "stream ended before message_stop")
    return streamed_answer(where, builder), translator.usage


async def _events(where: str, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON of each SSE `data:` line (each names its own `type`, so `event:` lines are not needed)."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        try:
            event = json.loads(data)
        except ValueError as err:
            raise bad_response(where, f"bad SSE event: {data[:200]}") from err
        if not isinstance(event, dict):
            raise bad_response(where, f"bad SSE event: {data[:200]}")
        yield event
