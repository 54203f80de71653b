"""The fake upstream's Anthropic Messages answers: text, `tool_use` blocks, refusals, stop reasons, cache usage,
whole or as Anthropic's SSE events.

What is answered follows from the request, as with the OpenAI endpoint (`fake_chat.py`), and the same
behaviour fields steer it:
- the last user turn holds `tool_result` blocks → a text answer quoting them (`tool said: ...`);
- the request has `tools` and the last user turn's text names some of them → a `tool_use` block for each
  (only the first with `tool_choice.disable_parallel_tool_use`); `tool_choice` `any` or `tool` forces a call,
  `none` forbids one; the input is `tool_arguments`, else an instance of the tool's `input_schema`;
- otherwise `content` or `echo: <last user text>`;
- `refusal` answers that text with `stop_reason: refusal`; `finish_reason` sets the `stop_reason` as given;
- usage: `cached_tokens` are `cache_read_input_tokens`, `cache_write_tokens` `cache_creation_input_tokens`.

Streamed (`stream: true`): `message_start`, a `ping`, then per block `content_block_start`, its deltas (text,
or `input_json_delta` pieces of the input) in `chunks` pieces each after `chunk_delay_ms`, and
`content_block_stop`; then `message_delta` (stop reason, output usage) and `message_stop`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.support.fake_chat import ChatBehavior, _instance, split


@dataclass(frozen=True)
class AnthropicBehavior:
    """Answer options only the Anthropic endpoint has (inherited by `Behavior`)."""

    cache_write_tokens: int = 0
    """`usage.cache_creation_input_tokens`."""


def message_body(
    body: dict[str, Any], behavior: ChatBehavior, extra: AnthropicBehavior, *, content: str | None, message_id: str
) -> dict[str, Any]:
    """The whole answer to a Messages request; `content` (when not None) replaces a text answer."""
    blocks, stop_reason = _answer(body, behavior, content)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**_input_usage(body, behavior, extra), "output_tokens": _output_tokens(blocks)},
    }


async def message_events(
    body: dict[str, Any], behavior: ChatBehavior, extra: AnthropicBehavior, *, content: str | None, message_id: str
) -> AsyncIterator[str]:
    """The same answer as `message_body`, as Anthropic's SSE events."""
    blocks, stop_reason = _answer(body, behavior, content)
    whole = message_body(body, behavior, extra, content=content, message_id=message_id)
    start = {**whole, "content": [], "stop_reason": None}
    start["usage"] = {**start["usage"], "output_tokens": 1}
    yield _event({"type": "message_start", "message": start})
    yield _event({"type": "ping"})
    for index, block in enumerate(blocks):
        opening: dict[str, Any]
        if block["type"] == "text":
            opening, pieces = {"type": "text", "text": ""}, split(block["text"], behavior.chunks)
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        else:
            opening = {**block, "input": {}}
            pieces = split(json.dumps(block["input"]), behavior.chunks)
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        yield _event({"type": "content_block_start", "index": index, "content_block": opening})
        for delta in deltas:
            await asyncio.sleep(behavior.chunk_delay_ms / 1000)  # 0 still flushes each piece on its own
            yield _event({"type": "content_block_delta", "index": index, "delta": delta})
        yield _event({"type": "content_block_stop", "index": index})
    stop = {"stop_reason": stop_reason, "stop_sequence": None}
    yield _event({"type": "message_delta", "delta": stop, "usage": {"output_tokens": _output_tokens(blocks)}})
    yield _event({"type": "message_stop"})


def _event(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def _answer(body: dict[str, Any], behavior: ChatBehavior, content: str | None) -> tuple[list[dict[str, Any]], str]:
    if behavior.refusal is not None:
        return [{"type": "text", "text": behavior.refusal}], behavior.finish_reason or "refusal"
    calls = _tool_uses(body, behavior)
    if calls:
        return calls, behavior.finish_reason or "tool_use"
    text = content if content is not None else _text_answer(body)
    return [{"type": "text", "text": text}], behavior.finish_reason or "end_turn"


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not messages or messages[-1].get("role") != "user":
        return []
    content = messages[-1].get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")


def _text_answer(body: dict[str, Any]) -> str:
    blocks = _last_user_blocks(body)
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results:
        said = [
            r["content"] if isinstance(r.get("content"), str) else _text_of(r.get("content") or []) for r in results
        ]
        return "tool said: " + "; ".join(said)
    return f"echo: {_text_of(blocks)}"


def _tool_uses(body: dict[str, Any], behavior: ChatBehavior) -> list[dict[str, Any]]:
    tools = {str(t["name"]): t.get("input_schema") or {} for t in body.get("tools") or [] if isinstance(t, dict)}
    blocks = _last_user_blocks(body)
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or not blocks or any(b.get("type") == "tool_result" for b in blocks) or choice["type"] == "none":
        return []
    said = _text_of(blocks)
    if choice["type"] == "tool":
        names = [str(choice["name"])]
    else:
        names = [name for name in tools if name in said] or (list(tools)[:1] if choice["type"] == "any" else [])
    if choice.get("disable_parallel_tool_use"):
        names = names[:1]
    return [
        {
            "type": "tool_use",
            "id": f"toolu_fake_{k}",
            "name": name,
            "input": behavior.tool_arguments if behavior.tool_arguments is not None else _instance(tools[name], said),
        }
        for k, name in enumerate(names)
    ]


def _input_usage(body: dict[str, Any], behavior: ChatBehavior, extra: AnthropicBehavior) -> dict[str, int]:
    prompt = json.dumps(body.get("messages", "")) + json.dumps(body.get("system", ""))
    return {
        "input_tokens": max(1, len(prompt) // 4),
        "cache_read_input_tokens": behavior.cached_tokens,
        "cache_creation_input_tokens": extra.cache_write_tokens,
    }


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    written = "".join(b.get("text", "") if b["type"] == "text" else json.dumps(b["input"]) for b in blocks)
    return max(1, len(written) // 4)
