"""Anthropic Messages API: system prompts go top level, `max_tokens` is required, answers come as blocks."""

from __future__ import annotations

from typing import Any

import httpx

from activities.providers.errors import bad_response, status_error, transport_error
from schemas.calls import CallModelInput
from schemas.jobs import JobResult, Usage
from schemas.routes import AnthropicProvider

DEFAULT_MAX_TOKENS = 1024
"""Anthropic refuses a request without `max_tokens`; used when the job sets none."""

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}

Completion = tuple[JobResult, Usage]


def request_body(call: CallModelInput) -> dict[str, Any]:
    system = [m.text() for m in call.messages if m.role in ("system", "developer")]
    # The Messages API knows only `user` and `assistant`; a tool result reads as user input.
    messages = [
        {"role": "assistant" if m.role == "assistant" else "user", "content": m.text()}
        for m in call.messages
        if m.role not in ("system", "developer")
    ]
    params = call.params
    body: dict[str, Any] = {
        "model": call.deployment.model,
        "messages": messages,
        "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = params.stop
    return body  # `seed` has no Anthropic equivalent


async def complete(
    http: httpx.AsyncClient, provider: AnthropicProvider, call: CallModelInput, *, api_key: str | None
) -> Completion:
    where = f"{call.deployment.provider}/{call.deployment.model}"
    headers = {"anthropic-version": provider.api_version}
    if api_key:
        headers["x-api-key"] = api_key
    try:
        response = await http.post(
            f"{provider.base_url.rstrip('/')}/v1/messages",
            json=request_body(call),
            headers=headers,
            timeout=httpx.Timeout(provider.timeout_s),
        )
    except httpx.RequestError as err:
        raise transport_error(where, err) from err
    if not response.is_success:
        raise status_error(where, response)
    try:
        body = response.json()
        blocks = body["content"]
        content = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        stop_reason = body.get("stop_reason") or "end_turn"
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise bad_response(where, f"{type(err).__name__}: {err}; body: {response.text}") from err
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return (
        JobResult.from_text(content, _FINISH_REASONS.get(stop_reason, str(stop_reason))),
        Usage(input_tokens=_count(usage.get("input_tokens")), output_tokens=_count(usage.get("output_tokens"))),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
