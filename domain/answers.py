"""Answers assembled from OpenAI's streamed chunks, and usage read from OpenAI's usage object.

A streamed answer arrives as `chat.completion.chunk`s whose `choices[i].delta` add text, refusal text, tool
calls (by `index`, the name and id first, then the arguments in pieces) and logprobs; the last chunk of a
choice carries its `finish_reason`, and a final chunk (with `stream_options.include_usage`) the usage.
`AnswerBuilder` folds them into the same `JobResult` a non-streamed call returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.jobs import Choice, JobResult, Usage
from schemas.messages import AssistantMessage, FunctionCall, ToolCall


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _ChoiceParts:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    logprobs: dict[str, list[Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    saw_content: bool = False


class AnswerBuilder:
    """Feed it each chunk's JSON (`add`); `result()` is the whole answer once the stream has ended."""

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceParts] = {}
        self.system_fingerprint: str | None = None
        self.usage: Usage | None = None

    @property
    def finished(self) -> bool:
        """Every choice seen so far has its finish_reason."""
        return bool(self._choices) and all(c.finish_reason for c in self._choices.values())

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("system_fingerprint"):
            self.system_fingerprint = str(chunk["system_fingerprint"])
        if isinstance(chunk.get("usage"), dict):
            self.usage = read_usage(chunk["usage"])
        for raw in chunk.get("choices") or []:
            if isinstance(raw, dict):
                self._add_choice(raw)

    def _add_choice(self, raw: dict[str, Any]) -> None:
        parts = self._choices.setdefault(int(raw.get("index") or 0), _ChoiceParts())
        delta = as_dict(raw.get("delta"))
        if isinstance(delta.get("content"), str):
            parts.content.append(delta["content"])
            parts.saw_content = True
        if isinstance(delta.get("refusal"), str):
            parts.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                _add_tool_call(parts, call)
        if isinstance(raw.get("logprobs"), dict):
            for key, items in raw["logprobs"].items():
                if isinstance(items, list):
                    parts.logprobs.setdefault(key, []).extend(items)
        if raw.get("finish_reason"):
            parts.finish_reason = str(raw["finish_reason"])

    def result(self) -> JobResult:
        choices = [_choice(index, parts) for index, parts in sorted(self._choices.items())]
        return JobResult(choices=choices, system_fingerprint=self.system_fingerprint)


def _add_tool_call(parts: _ChoiceParts, call: dict[str, Any]) -> None:
    tool = parts.tool_calls.setdefault(int(call.get("index") or 0), _ToolCallParts())
    if call.get("id"):
        tool.id = str(call["id"])
    function = as_dict(call.get("function"))
    if function.get("name"):
        tool.name += str(function["name"])
    if isinstance(function.get("arguments"), str):
        tool.arguments.append(function["arguments"])


def _choice(index: int, parts: _ChoiceParts) -> Choice:
    tool_calls = [
        ToolCall(id=tool.id, function=FunctionCall(name=tool.name, arguments="".join(tool.arguments)))
        for _, tool in sorted(parts.tool_calls.items())
    ]
    message = AssistantMessage(
        content="".join(parts.content) if parts.saw_content or not tool_calls else None,
        refusal="".join(parts.refusal) if parts.refusal else None,
        tool_calls=tool_calls or None,
    )
    return Choice(
        index=index,
        message=message,
        finish_reason=parts.finish_reason or "stop",
        logprobs=parts.logprobs or None,
    )


def read_usage(raw: Any) -> Usage:
    """OpenAI's usage object (with its token details) as ours; missing or odd values count zero."""
    raw = as_dict(raw)
    prompt_details = as_dict(raw.get("prompt_tokens_details"))
    completion_details = as_dict(raw.get("completion_tokens_details"))
    return Usage(
        input_tokens=count(raw.get("prompt_tokens")),
        output_tokens=count(raw.get("completion_tokens")),
        cached_input_tokens=count(prompt_details.get("cached_tokens")),
        reasoning_tokens=count(completion_details.get("reasoning_tokens")),
    )


def count(value: Any) -> int:
    """A token count from an upstream answer: a non-negative int, anything else zero."""
    return value if isinstance(value, int) and value >= 0 else 0


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: upstream JSON is read without trusting its shape."""
    return value if isinstance(value, dict) else {}
