"""The fake upstream's OpenAI Chat Completions answers: text, tool calls, JSON, `n` choices, logprobs, refusals.

What is answered follows from the request, the way a real model's answer would:
- the last message is a `tool` message → a final text answer quoting the tool results (`tool said: ...`);
- the request has `tools` and its last (user) message names some of them → a call of each named tool
  (only the first when `parallel_tool_calls` is false); `tool_choice` naming a function or `required`
  forces a call, `none` forbids one;
- `response_format` `json_object` → `{"echo": <last user text>}`; `json_schema` → an instance of the schema;
- otherwise `echo: <last user text>`; `n` choices, the ones after the first suffixed ` [2]`, ` [3]`...;
- `logprobs` (with `top_logprobs`) on the content's tokens; usage always with its details.

A streamed answer goes out the way OpenAI streams it: a role chunk, then each choice's content (or refusal,
or tool call: id and name first, then the arguments in pieces) in `chunks` pieces, each after
`chunk_delay_ms`, then the finish chunk, then the usage chunk when `stream_options.include_usage` asks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatBehavior:
    """The chat endpoint's answer options (inherited by `Behavior`; set with `FakeUpstream.configure`)."""

    chunks: int = 3
    """How many pieces a streamed content (or each tool call's arguments) is cut into."""
    chunk_delay_ms: float = 0.0
    """The pause before each streamed piece: the first token arrives this long after the role chunk."""
    tool_arguments: dict[str, Any] | None = None
    """The arguments of every tool call made; default: an instance of the tool's parameter schema."""
    refusal: str | None = None
    """Refuse with this text (`content: null`, `refusal` set) instead of answering."""
    finish_reason: str | None = None
    """Report this finish reason (`length`, `content_filter`...) instead of the natural one."""
    annotations: list[dict[str, Any]] | None = None
    """Attach these annotations to each choice's message (streamed: in its closing chunk)."""
    cached_tokens: int = 0
    """`usage.prompt_tokens_details.cached_tokens`."""
    reasoning_tokens: int = 0
    """`usage.completion_tokens_details.reasoning_tokens` (added to `completion_tokens`)."""
    system_fingerprint: str | None = None


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Planned:
    """One choice of the answer, before it is shaped as a message or as chunks."""

    index: int
    content: str | None
    refusal: str | None = None
    tool_calls: list[_Call] = field(default_factory=list)
    finish_reason: str = "stop"


def answer_body(
    body: dict[str, Any], behavior: ChatBehavior, *, content: str | None, completion_id: str
) -> dict[str, Any]:
    """The whole `chat.completion` for `body`; `content` (when not None) replaces every choice's text."""
    choices = []
    plan = _plan(body, behavior, content)
    for planned in plan:
        message: dict[str, Any] = {"role": "assistant", "content": planned.content, "refusal": planned.refusal}
        if planned.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in planned.tool_calls
            ]
        if behavior.annotations is not None:
            message["annotations"] = behavior.annotations
        choice: dict[str, Any] = {"index": planned.index, "message": message, "finish_reason": planned.finish_reason}
        choice["logprobs"] = _logprobs(body, planned.content, planned.refusal)
        choices.append(choice)
    answer = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": _usage(body, behavior, plan),
    }
    if behavior.system_fingerprint is not None:
        answer["system_fingerprint"] = behavior.system_fingerprint
    return answer


async def answer_stream(
    body: dict[str, Any], behavior: ChatBehavior, *, content: str | None, completion_id: str
) -> AsyncIterator[str]:
    """The same answer as `answer_body`, as OpenAI's SSE chunks, spaced by `chunk_delay_ms`."""
    created = int(time.time())

    def sse(choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "choices": choices,
            **extra,
        }
        if behavior.system_fingerprint is not None:
            payload["system_fingerprint"] = behavior.system_fingerprint
        return f"data: {json.dumps(payload)}\n\n"

    planned = _plan(body, behavior, content)
    for choice in planned:
        # As OpenAI: a text answer opens with empty content, a tool call or a refusal with none.
        opening = {"role": "assistant", "content": "" if choice.content is not None else None}
        yield sse([{"index": choice.index, "delta": opening, "finish_reason": None}])
    # With logprobs the pieces end on token boundaries, so each chunk's logprobs cover whole tokens.
    cut = _split_tokens if body.get("logprobs") else split
    steps = [_stream_deltas(choice, behavior.chunks, cut) for choice in planned]
    for step in range(max((len(s) for s in steps), default=0)):
        await asyncio.sleep(behavior.chunk_delay_ms / 1000)  # 0 still flushes each piece on its own
        for choice, deltas in zip(planned, steps, strict=True):
            if step < len(deltas):
                delta = deltas[step]
                out: dict[str, Any] = {"index": choice.index, "delta": delta, "finish_reason": None}
                text = delta.get("content") or delta.get("refusal")
                if isinstance(text, str) and body.get("logprobs"):
                    out["logprobs"] = _logprobs(body, delta.get("content"), delta.get("refusal"))
                yield sse([out])
    for choice in planned:
        closing = {"annotations": behavior.annotations} if behavior.annotations is not None else {}
        yield sse([{"index": choice.index, "delta": closing, "finish_reason": choice.finish_reason}])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield sse([], usage=_usage(body, behavior, planned))
    yield "data: [DONE]\n\n"


def _plan(body: dict[str, Any], behavior: ChatBehavior, content: str | None) -> list[_Planned]:
    n = body.get("n")
    count = n if isinstance(n, int) and n > 0 else 1
    calls = _called_tools(body, behavior)
    # Call ids differ between conversations but not between two asks of the same one (streamed or not).
    conversation = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:12]
    planned = []
    for index in range(count):
        if behavior.refusal is not None:
            choice = _Planned(index, None, refusal=behavior.refusal)
        elif calls:
            tool_calls = [
                _Call(f"call_{conversation}_{index}_{k}", name, arguments) for k, (name, arguments) in enumerate(calls)
            ]
            choice = _Planned(index, None, tool_calls=tool_calls, finish_reason="tool_calls")
        else:
            text = content if content is not None else _text_answer(body)
            structured = _response_format(body) in ("json_object", "json_schema")
            choice = _Planned(index, text if index == 0 or structured else f"{text} [{index + 1}]")
        if behavior.finish_reason is not None:
            choice = _Planned(choice.index, choice.content, choice.refusal, choice.tool_calls, behavior.finish_reason)
        planned.append(choice)
    return planned


def _called_tools(body: dict[str, Any], behavior: ChatBehavior) -> list[tuple[str, str]]:
    """`(name, arguments)` of each tool the answer calls: the tools the last user message names."""
    tools = {
        str(tool["function"]["name"]): tool["function"].get("parameters") or {}
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict) and tool["function"].get("name")
    }
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    tool_choice = body.get("tool_choice")
    if not tools or last.get("role") != "user" or tool_choice == "none":
        return []
    said = _text(last.get("content"))
    if isinstance(tool_choice, dict):
        names = [str((tool_choice.get("function") or {}).get("name"))]
    else:
        names = [name for name in tools if name in said] or (list(tools)[:1] if tool_choice == "required" else [])
    if body.get("parallel_tool_calls") is False:
        names = names[:1]
    return [(name, json.dumps(_arguments(behavior, tools.get(name), said))) for name in names]


def _arguments(behavior: ChatBehavior, parameters: Any, said: str) -> dict[str, Any]:
    if behavior.tool_arguments is not None:
        return behavior.tool_arguments
    arguments = _instance(parameters, said) if parameters else {}
    return arguments if isinstance(arguments, dict) else {}


def _text_answer(body: dict[str, Any]) -> str:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, _text(message.get("content")))
    if results:
        return "tool said: " + "; ".join(results)
    said = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    response_format = body.get("response_format") or {}
    if _response_format(body) == "json_object":
        return json.dumps({"echo": said})
    if _response_format(body) == "json_schema":
        return json.dumps(_instance((response_format.get("json_schema") or {}).get("schema") or {}, said))
    return f"echo: {said}"


def _response_format(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    return str(response_format.get("type")) if isinstance(response_format, dict) else None


def _instance(schema: Any, text: str) -> Any:
    """A value that fits the JSON schema, its strings being `text` (enough for a fake to answer in JSON)."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if schema.get("anyOf"):
        return _instance(schema["anyOf"][0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {key: _instance(sub, text) for key, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, text)]
    return {"integer": len(text), "number": len(text) / 2, "boolean": True, "null": None}.get(str(kind), text)


def _text(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def split(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` nearly equal parts (fewer when it is shorter), so a client has to assemble it."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    bounds = [k * size + min(k, extra) for k in range(pieces + 1)]
    return [text[bounds[k] : bounds[k + 1]] for k in range(pieces)]


def _split_tokens(text: str, pieces: int) -> list[str]:
    """`text` in up to `pieces` runs of whole tokens."""
    tokens = _tokens_of(text)
    size = max(1, -(-len(tokens) // max(1, pieces)))
    return ["".join(tokens[k : k + size]) for k in range(0, len(tokens), size)]


def _stream_deltas(choice: _Planned, pieces: int, cut: Callable[[str, int], list[str]] = split) -> list[dict[str, Any]]:
    """The deltas of one choice after its role chunk, as OpenAI sends them."""
    if choice.refusal is not None:
        return [{"refusal": piece} for piece in cut(choice.refusal, pieces)]
    deltas: list[dict[str, Any]] = [{"content": piece} for piece in cut(choice.content or "", pieces)]
    for k, call in enumerate(choice.tool_calls):
        opening = {"index": k, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas.append({"tool_calls": [opening]})
        for piece in split(call.arguments, pieces):
            deltas.append({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
    return deltas


def _tokens_of(text: str) -> list[str]:
    """The fake's tokens: words with their leading spaces (they join back into the text)."""
    return re.findall(r"\s*\S+|\s+", text)


def _logprobs(body: dict[str, Any], content: str | None, refusal: str | None) -> dict[str, Any] | None:
    if not body.get("logprobs"):
        return None
    requested = body.get("top_logprobs")
    top = requested if isinstance(requested, int) else 0

    def entries(text: str | None) -> list[dict[str, Any]] | None:
        if text is None:
            return None
        out = []
        for token in _tokens_of(text):
            logprob = -round(0.01 * len(token), 4)
            alternatives = [(token, logprob)] + [(f"{token}~{k}", logprob - k) for k in range(1, top)]
            out.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": [
                        {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives[:top]
                    ],
                }
            )
        return out

    return {"content": entries(content), "refusal": entries(refusal)}


def _usage(body: dict[str, Any], behavior: ChatBehavior, planned: list[_Planned]) -> dict[str, Any]:
    prompt = max(_count(json.dumps(body.get("messages", ""))), behavior.cached_tokens)
    written = sum(
        _count((c.content or "") + (c.refusal or "") + "".join(t.name + t.arguments for t in c.tool_calls))
        for c in planned
    )
    completion = written + behavior.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": behavior.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": behavior.reasoning_tokens, "audio_tokens": 0},
    }


def _count(text: str) -> int:
    return max(1, len(text) // 4)
