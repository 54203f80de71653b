"""An answer as a stream of OpenAI chunk deltas, each with an SSE id a client can resume from.

The id of an event is its *offset*: how many characters of the answer (content, refusal, tool names and
arguments, in that order per choice) had been delivered once the event was. The live relay counts the
same way as chunks arrive, so a client that reattaches with `Last-Event-ID: N` — to the live stream or to
the finished job — gets exactly what follows those N characters. (With `n > 1` choices streamed live the
upstream interleaves them; the offset then still never repeats, but a resume replays by this order.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.answers import as_dict
from schemas.jobs import Choice, JobResult


@dataclass(frozen=True)
class StreamEvent:
    offset: int
    """The SSE id: answer characters delivered once this event is."""
    choices: list[dict[str, Any]]
    """OpenAI's `choices` of one `chat.completion.chunk`."""


def delta_units(choices: list[dict[str, Any]]) -> int:
    """How many answer characters a chunk's choices deliver (what its offset advances by)."""
    units = 0
    for choice in choices:
        delta = as_dict(choice.get("delta"))
        units += len(delta.get("content") or "") + len(delta.get("refusal") or "")
        for call in delta.get("tool_calls") or []:
            function = as_dict(as_dict(call).get("function"))
            units += len(function.get("name") or "") + len(function.get("arguments") or "")
    return units


def replay(result: JobResult, *, after: int = 0, with_logprobs: bool = True) -> list[StreamEvent]:
    """The finished answer as stream events, skipping the first `after` characters (a resumed stream).

    A fresh stream (`after == 0`) opens each choice with its role; every choice ends with its finish
    reason (and its logprobs, unless the live stream already carried them), which carry no characters and
    so are always sent.
    """
    events: list[StreamEvent] = []
    offset = 0
    for choice in result.choices:
        if after == 0:
            # Its id is what was delivered before it (not 0): a client resuming from here must not get it again.
            events.append(StreamEvent(offset, [_delta(choice, {"role": "assistant", "content": ""})]))
        for piece in _pieces(choice):
            units = delta_units([{"delta": piece}])
            start, offset = offset, offset + units
            if offset <= after:
                continue
            events.append(StreamEvent(offset, [_delta(choice, _tail(piece, after - start))]))
        closing = {"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}
        if with_logprobs and choice.logprobs is not None:
            closing["logprobs"] = choice.logprobs
        events.append(StreamEvent(offset, [closing]))
    return events


def _pieces(choice: Choice) -> list[dict[str, Any]]:
    """The choice's deltas in canonical order: content, refusal, then each tool call whole."""
    message = choice.message
    pieces: list[dict[str, Any]] = []
    if message.content:
        pieces.append({"content": message.content})
    if message.refusal:
        pieces.append({"refusal": message.refusal})
    for index, call in enumerate(message.tool_calls or []):
        function = {"name": call.function.name, "arguments": call.function.arguments}
        pieces.append({"tool_calls": [{"index": index, "id": call.id, "type": call.type, "function": function}]})
    return pieces


def _tail(piece: dict[str, Any], skip: int) -> dict[str, Any]:
    """`piece` without its first `skip` characters (a resume that lands inside it)."""
    if skip <= 0:
        return piece
    if "content" in piece:
        return {"content": piece["content"][skip:]}
    if "refusal" in piece:
        return {"refusal": piece["refusal"][skip:]}
    [call] = piece["tool_calls"]
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    if skip < len(name):
        function = {"name": name[skip:], "arguments": arguments}
        return {"tool_calls": [{**call, "function": function}]}
    # The name was delivered: only the rest of the arguments, under the same index (as OpenAI streams).
    return {"tool_calls": [{"index": call["index"], "function": {"arguments": arguments[skip - len(name) :]}}]}


def _delta(choice: Choice, delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": choice.index, "delta": delta, "finish_reason": None}
