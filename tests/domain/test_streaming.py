"""domain.streaming.replay: a finished answer as stream events that a client can resume at any offset."""

from __future__ import annotations

from typing import Any

import pytest

from domain.answers import AnswerBuilder
from domain.streaming import StreamEvent, delta_units, replay
from schemas.jobs import JobResult


def _token(text: str) -> dict[str, Any]:
    return {"token": text, "logprob": -0.25, "bytes": list(text.encode()), "top_logprobs": []}


ANSWER = JobResult.model_validate(
    {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "refusal": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c": 1}'}},
                        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": {"content": [_token("Checking"), _token(".")], "refusal": None},
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "refusal": "I can't."},
                "finish_reason": "stop",
            },
            {
                "index": 2,
                "message": {"role": "assistant", "content": "plain", "refusal": None},
                "finish_reason": "length",
            },
        ],
        "system_fingerprint": "fp_x",
    }
)
TOTAL = len("Checking.") + len("weather" + '{"c": 1}') + len("time" + "{}") + len("I can't.") + len("plain")


def _is_closing(event: StreamEvent) -> bool:
    return any(choice.get("finish_reason") for choice in event.choices)


def _cut(delta: dict[str, Any], keep: int) -> dict[str, Any]:
    """The first `keep` characters of one delta (what a client got before its connection dropped)."""
    if "content" in delta:
        return {"content": delta["content"][:keep]}
    if "refusal" in delta:
        return {"refusal": delta["refusal"][:keep]}
    [call] = delta["tool_calls"]
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    function = {"name": name[:keep], "arguments": arguments[: max(0, keep - len(name))]}
    return {"tool_calls": [{**call, "function": function}]}


def _received(events: list[StreamEvent], chars: int) -> list[StreamEvent]:
    """What a client holds after the first `chars` characters of a fresh stream, the last piece maybe cut."""
    held: list[StreamEvent] = []
    delivered = 0
    for event in events:
        if _is_closing(event):
            continue
        units = delta_units(event.choices)
        if delivered + units <= chars:
            held.append(event)
            delivered += units
        elif delivered < chars:
            [choice] = event.choices
            held.append(StreamEvent(chars, [{**choice, "delta": _cut(choice["delta"], chars - delivered)}]))
            delivered = chars
    return held


def _fold(events: list[StreamEvent]) -> JobResult:
    builder = AnswerBuilder()
    for event in events:
        builder.add({"choices": event.choices, "system_fingerprint": "fp_x"})
    assert builder.finished
    return builder.result()


def test_a_fresh_replay_is_the_answer() -> None:
    events = replay(ANSWER)

    assert _fold(events) == ANSWER
    assert events[-1].offset == TOTAL


def test_each_event_id_counts_the_characters_delivered_through_it() -> None:
    delivered = 0
    for event in replay(ANSWER):
        delivered += delta_units(event.choices)
        assert event.offset == delivered


@pytest.mark.parametrize("after", range(TOTAL + 1))
def test_resuming_at_every_offset_reproduces_the_answer_exactly(after: int) -> None:
    resumed = replay(ANSWER, after=after)

    assert _fold(_received(replay(ANSWER), after) + resumed) == ANSWER
    assert all(event.offset > after for event in resumed if delta_units(event.choices))
    # Nothing is sent twice: the resumed stream holds exactly the characters after `after`.
    assert sum(delta_units(event.choices) for event in resumed) == TOTAL - after


def test_a_resume_past_the_end_sends_only_the_finish_reasons() -> None:
    resumed = replay(ANSWER, after=TOTAL)

    assert all(_is_closing(event) for event in resumed)
    assert [event.choices[0]["finish_reason"] for event in resumed] == ["tool_calls", "stop", "length"]
