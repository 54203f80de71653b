"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp, Ollama, ...), plain or streamed as SSE.

The request goes out as the app sent it: every message field and every parameter, declared or not. The
answer comes back whole: every choice, tool calls, refusals, annotations, logprobs, usage details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.providers.errors import bad_response
from activities.providers.exchange import exchange, streamed_answer
from activities.providers.sink import ChunkSink
from domain.answers import AnswerBuilder, estimated_usage, read_usage
from schemas.calls import CallModelInput
from schemas.errors import UPSTREAM_ERROR
from schemas.jobs import JobResult, Usage
from schemas.routes import OpenAIProvider

Completion = tuple[JobResult, Usage]
log = logging.getLogger("kintsugi.providers")


def request_body(call: CallModelInput, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        **call.params.declared(),
        "model": call.deployment.model,
        # As the app wrote them: an assistant turn's `content: null` stays null (see `schemas.messages.AsSent`).
        "messages": [m.model_dump(mode="json", by_alias=True) for m in call.messages],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def complete(
    http: httpx.AsyncClient,
    provider: OpenAIProvider,
    call: CallModelInput,
    *,
    api_key: str | None,
    heartbeat: Callable[[], None],
    on_chunk: ChunkSink | None = None,
) -> Completion:
    """One call; streamed from the upstream when the provider says so or when `on_chunk` wants the chunks."""
    where = f"{call.deployment.provider}/{call.deployment.model}"
    stream = provider.stream or on_chunk is not None
    request = http.build_request(
        "POST",
        f"{provider.base_url.rstrip('/')}/chat/completions",
        json=request_body(call, stream=stream),
        headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        timeout=httpx.Timeout(provider.timeout_s),
    )

    async def read(response: httpx.Response) -> Completion:
        if not stream:
            return _read_body(where, response)
        answer, usage = await _read_stream(where, response, heartbeat, on_chunk)
        if usage is None:
            log.warning("%s streamed no usage; the call is billed on estimated tokens", where)
            usage = estimated_usage("".join(m.text() for m in call.messages), answer)
        return answer, usage

    return await exchange(http, request, where, stream=stream, read=read)


def _read_body(where: str, response: httpx.Response) -> Completion:
    try:
        body = response.json()
        answer = JobResult.model_validate(
            {
                "choices": body["choices"],
                "system_fingerprint": body.get("system_fingerprint"),
                "service_tier": body.get("service_tier"),
            }
        )
    except (ValueError, KeyError, TypeError, ValidationError) as err:
        raise bad_response(where, f"{type(err).__name__}: {err}; body: {response.text[:500]}") from err
    if not answer.choices:
        raise bad_response(where, f"no choices; body: {response.text[:500]}")
    return answer, read_usage(body.get("usage"))


async def _read_stream(
    where: str, response: httpx.Response, heartbeat: Callable[[], None], on_chunk: ChunkSink | None
) -> tuple[JobResult, Usage | None]:
    builder = AnswerBuilder()
    done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `event:` and `:` keep-alive comments
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            done = True
            break
        heartbeat()
        try:
            chunk = json.loads(data)
        except ValueError as err:
            raise bad_response(where, f"bad SSE chunk: {data[:200]}") from err
        if not isinstance(chunk, dict):
            raise bad_response(where, f"bad SSE chunk: {data[:200]}")
        if "error" in chunk:
            # The status line was already 200; an error mid-stream is the server giving up on this answer.
            raise ApplicationError(f"{where}: error in stream: {str(chunk['error'])[:200]}", type=UPSTREAM_ERROR)
        builder.add(chunk)
        if on_chunk is not None:
            await on_chunk(chunk)
    if not done and not builder.finished:
        raise bad_response(where, "stream ended before a finish_reason or [DONE]")
    return streamed_answer(where, builder), builder.usage
