"""Answers assembled from OpenAI's streamed chunks, and usage read from OpenAI's usage object.

A streamed answer arrives as `chat.completion.chunk`s whose `choices[i].delta` add text, refusal text, tool
calls (by `index`, the name and id first, then the arguments in pieces), annotations and logprobs; the last
chunk of a choice carries its `finish_reason`, and a final chunk (with `stream_options.include_usage`) the
usage. `AnswerBuilder` folds them into the same `JobResult` a non-streamed call returns, down to delta
fields OpenAI does not define (a server's `reasoning_content`), whose text pieces are joined the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.jobs import Choice, JobResult, Usage
from schemas.messages import AssistantMessage, ToolCall

_DELTA_FIELDS = frozenset({"role", "content", "refusal", "tool_calls", "annotations"})
"""The delta fields read one by one; any other text field is joined as it comes (see `_ChoiceParts.other`)."""


@dataclass
class _ToolCallParts:
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _ChoiceParts:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    other: dict[str, list[str]] = field(default_factory=dict)
    """Text of delta fields OpenAI does not define, e.g. the `reasoning_content` of vLLM or DeepSeek."""
    logprobs: dict[str, list[Any] | None] = field(default_factory=dict)
    finish_reason: str | None = None


class AnswerBuilder:
    """Feed it each chunk's JSON (`add`); `result()` is the whole answer once the stream has ended."""

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceParts] = {}
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.usage: Usage | None = None

    @property
    def finished(self) -> bool:
        """Every choice seen so far has its finish_reason."""
        return bool(self._choices) and all(c.finish_reason for c in self._choices.values())

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("system_fingerprint"):
            self.system_fingerprint = str(chunk["system_fingerprint"])
        if chunk.get("service_tier"):
            self.service_tier = str(chunk["service_tier"])
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
        if isinstance(delta.get("refusal"), str):
            parts.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                _add_tool_call(parts, call)
        for annotation in delta.get("annotations") or []:
            if isinstance(annotation, dict):
                parts.annotations.append(annotation)
        for key, value in delta.items():
            if key not in _DELTA_FIELDS and isinstance(value, str):
                parts.other.setdefault(key, []).append(value)
        if isinstance(raw.get("logprobs"), dict):
            for key, items in raw["logprobs"].items():
                if isinstance(items, list):
                    parts.logprobs[key] = [*(parts.logprobs.get(key) or []), *items]
                elif items is None:
                    parts.logprobs.setdefault(key, None)  # OpenAI's `refusal: null` beside `content`
        if raw.get("finish_reason"):
            parts.finish_reason = str(raw["finish_reason"])

    def result(self) -> JobResult:
        choices = [_choice(index, parts) for index, parts in sorted(self._choices.items())]
        return JobResult(choices=choices, system_fingerprint=self.system_fingerprint, service_tier=self.service_tier)


def _add_tool_call(parts: _ChoiceParts, call: dict[str, Any]) -> None:
    tool = parts.tool_calls.setdefault(int(call.get("index") or 0), _ToolCallParts())
    if call.get("id"):
        tool.id = str(call["id"])
    if call.get("type"):
        tool.type = str(call["type"])
    function = as_dict(call.get("function"))
    if function.get("name"):
        tool.name += str(function["name"])
    if isinstance(function.get("arguments"), str):
        tool.arguments.append(function["arguments"])


def _choice(index: int, parts: _ChoiceParts) -> Choice:
    tool_calls = [
        ToolCall.model_validate(
            {"id": tool.id, "type": tool.type, "function": {"name": tool.name, "arguments": "".join(tool.arguments)}}
        )
        for _, tool in sorted(parts.tool_calls.items())
    ]
    content = "".join(parts.content)
    refusal = "".join(parts.refusal) if parts.refusal else None
    fields: dict[str, Any] = {
        # As OpenAI answers: a turn that only calls tools or refuses has `content: null`, not "".
        "content": content if content or not (tool_calls or refusal is not None) else None,
        "refusal": refusal,
    }
    if tool_calls:
        fields["tool_calls"] = tool_calls
    if parts.annotations:
        fields["annotations"] = parts.annotations
    message = AssistantMessage(**fields, **{key: "".join(texts) for key, texts in parts.other.items()})
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


def estimate_tokens(text: str) -> int:
    """About four characters a token: a rough count for text nobody tokenised."""
    return max(1, len(text) // 4)


def estimated_usage(prompt: str, answer: JobResult) -> Usage:
    """Usage guessed from the text when the upstream reported none (a stream that ignored
    `stream_options.include_usage`): better an estimate on the cost row than a call that cost nothing."""
    written = "".join(
        (c.message.content or "") + "".join(call.function.arguments for call in c.message.tool_calls or [])
        for c in answer.choices
    )
    return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(written) if written else 0)
