"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp, Ollama, ...), plain or streamed as SSE."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.providers.errors import bad_response, status_error, transport_error
from schemas.calls import CallModelInput
from schemas.errors import UPSTREAM_ERROR
from schemas.jobs import Usage
from schemas.routes import OpenAIProvider

Completion = tuple[str, str, Usage]
"""(content, finish_reason, usage)"""


def request_body(call: CallModelInput, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": call.deployment.model,
        "messages": [m.model_dump(exclude_none=True) for m in call.messages],
        **call.params.model_dump(exclude_none=True),
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
) -> Completion:
    where = f"{call.deployment.provider}/{call.deployment.model}"
    request = http.build_request(
        "POST",
        f"{provider.base_url.rstrip('/')}/chat/completions",
        json=request_body(call, stream=provider.stream),
        headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        timeout=httpx.Timeout(provider.timeout_s),
    )
    try:
        response = await http.send(request, stream=provider.stream)
        try:
            if not response.is_success:
                await response.aread()
                raise status_error(where, response)
            if provider.stream:
                return await _read_stream(where, response, heartbeat)
            return _read_body(where, response)
        finally:
            await response.aclose()
    except httpx.RequestError as err:
        raise transport_error(where, err) from err


def _read_body(where: str, response: httpx.Response) -> Completion:
    try:
        body = response.json()
        choice = body["choices"][0]
        content = choice["message"].get("content") or ""
        finish_reason = choice.get("finish_reason") or "stop"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise bad_response(where, f"{type(err).__name__}: {err}; body: {response.text}") from err
    return str(content), str(finish_reason), _usage(body.get("usage"))


async def _read_stream(where: str, response: httpx.Response, heartbeat: Callable[[], None]) -> Completion:
    pieces: list[str] = []
    finish_reason: str | None = None
    usage = Usage(input_tokens=0, output_tokens=0)
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
            raise bad_response(where, f"bad SSE chunk: {data}") from err
        if not isinstance(chunk, dict):
            raise bad_response(where, f"bad SSE chunk: {data}")
        if "error" in chunk:
            # The status line was already 200; an error mid-stream is the server giving up on this answer.
            raise ApplicationError(f"{where}: error in stream: {str(chunk['error'])[:200]}", type=UPSTREAM_ERROR)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                pieces.append(str(delta["content"]))
            if choice.get("finish_reason"):
                finish_reason = str(choice["finish_reason"])
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
    if not done and finish_reason is None:
        raise bad_response(where, "stream ended before a finish_reason or [DONE]")
    return "".join(pieces), finish_reason or "stop", usage


def _usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    return Usage(input_tokens=_count(raw.get("prompt_tokens")), output_tokens=_count(raw.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
