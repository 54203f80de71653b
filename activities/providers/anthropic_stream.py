"""Anthropic's answer, whole or streamed, in OpenAI's shapes: a `JobResult`, `chat.completion.chunk`s, `Usage`.

A streamed answer arrives as events: `message_start` (id, model, input usage), then per content block a
`content_block_start`, its `content_block_delta`s (`text_delta`, or `input_json_delta` pieces of a tool
call's input) and a `content_block_stop`; then `message_delta` (stop reason, output usage) and
`message_stop`. `ChunkTranslator` turns each event into the OpenAI chunks a client of Kintsugi expects:
the role first, text as `content` deltas, each `tool_use` block as a tool call (id and name first, then its
arguments in pieces), the finish reason, and a last chunk with the usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from domain.answers import as_dict, count
from schemas.jobs import Choice, JobResult, Usage
from schemas.messages import AssistantMessage, FunctionCall, ToolCall

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's `stop_reason` as OpenAI's `finish_reason`; one not listed is passed on as it came."""


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(str(stop_reason), str(stop_reason)) if stop_reason else "stop"


def read_usage(raw: Any) -> Usage:
    """Anthropic's usage as ours. Its `input_tokens` leaves out cache reads and writes; ours counts them in."""
    raw = as_dict(raw)
    read, written = count(raw.get("cache_read_input_tokens")), count(raw.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=count(raw.get("input_tokens")) + read + written,
        output_tokens=count(raw.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_input_tokens=written,
    )


def openai_usage(usage: Usage) -> dict[str, Any]:
    """Our usage as the usage object of OpenAI's last chunk."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def read_message(body: dict[str, Any]) -> JobResult:
    """A whole (non-streamed) Anthropic message as a one-choice answer; raises KeyError/TypeError on a bad one."""
    blocks = [as_dict(block) for block in body["content"]]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    calls = [
        ToolCall(id=str(b["id"]), function=FunctionCall(name=str(b["name"]), arguments=_arguments(b.get("input"))))
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message = AssistantMessage(content=text if text or not calls else None, tool_calls=calls or None)
    return JobResult(choices=[Choice(message=message, finish_reason=finish_reason(body.get("stop_reason")))])


def _arguments(value: Any) -> str:
    return json.dumps(value if value is not None else {}, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _ToolBlock:
    index: int
    """The tool call's position among the answer's tool calls (OpenAI's `tool_calls[].index`)."""
    start_input: Any
    sent_arguments: bool = False


class ChunkTranslator:
    """Feed it each event (`chunks`); `usage` and `stopped` read what the events said."""

    def __init__(self, *, created: int, model: str) -> None:
        self._created = created
        self._id = ""
        self._model = model
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, _ToolBlock] = {}
        self.stopped = False
        """`message_stop` arrived: the answer is complete."""

    @property
    def usage(self) -> Usage:
        return read_usage(self._usage)

    def chunks(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks that say what `event` says (none for `ping` and block kinds we do not relay)."""
        kind = event.get("type")
        if kind == "message_start":
            message = as_dict(event.get("message"))
            self._id = str(message.get("id") or "")
            self._model = str(message.get("model") or self._model)
            self._add_usage(message.get("usage"))
            return [self._chunk({"role": "assistant"})]
        if kind == "content_block_start":
            return self._block_start(int(event.get("index") or 0), as_dict(event.get("content_block")))
        if kind == "content_block_delta":
            return self._block_delta(int(event.get("index") or 0), as_dict(event.get("delta")))
        if kind == "content_block_stop":
            return self._block_stop(int(event.get("index") or 0))
        if kind == "message_delta":
            self._add_usage(event.get("usage"))
            stop_reason = as_dict(event.get("delta")).get("stop_reason")
            return [self._chunk({}, finish_reason=finish_reason(stop_reason))]
        if kind == "message_stop":
            self.stopped = True
            return [{**self._chunk({}), "choices": [], "usage": openai_usage(self.usage)}]
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks have no place in an OpenAI message
        tool = self._tools[index] = _ToolBlock(index=len(self._tools), start_input=block.get("input"))
        opening = {
            "index": tool.index,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [opening]})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": str(delta["text"])})]
        tool = self._tools.get(index)
        if delta.get("type") == "input_json_delta" and tool is not None and delta.get("partial_json"):
            tool.sent_arguments = True
            return [self._arguments(tool, str(delta["partial_json"]))]
        return []

    def _block_stop(self, index: int) -> list[dict[str, Any]]:
        tool = self._tools.get(index)
        if tool is None or tool.sent_arguments:
            return []
        # A tool that takes no input streams no JSON; its arguments must still parse.
        tool.sent_arguments = True
        return [self._arguments(tool, _arguments(tool.start_input or {}))]

    def _arguments(self, tool: _ToolBlock, text: str) -> dict[str, Any]:
        return self._chunk({"tool_calls": [{"index": tool.index, "function": {"arguments": text}}]})

    def _add_usage(self, raw: Any) -> None:
        # Counts are cumulative: a later event's count replaces an earlier one.
        self._usage.update({key: value for key, value in as_dict(raw).items() if value is not None})

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
