"""AnswerBuilder: OpenAI's streamed chunks fold into the answer a non-streamed call would have returned."""

from __future__ import annotations

from typing import Any

from domain.answers import AnswerBuilder, estimated_usage, read_usage
from schemas.jobs import JobResult, Usage


def _chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": list(choices), **extra}


def _delta(index: int, finish_reason: str | None = None, logprobs: Any = None, **delta: Any) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return choice


def _built(*chunks: dict[str, Any]) -> JobResult:
    builder = AnswerBuilder()
    for chunk in chunks:
        builder.add(chunk)
    assert builder.finished
    return builder.result()


def test_tool_call_deltas_become_whole_calls_with_null_content() -> None:
    result = _built(
        _chunk(_delta(0, role="assistant", content=None)),
        _chunk(_delta(0, tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f"}}])),
        _chunk(_delta(0, tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}])),
        # A second, parallel call opens while the first is still streaming its arguments.
        _chunk(_delta(0, tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": ""}}])),
        _chunk(_delta(0, tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}])),
        _chunk(_delta(0, tool_calls=[{"index": 1, "function": {"arguments": "{}"}}])),
        _chunk(_delta(0, finish_reason="tool_calls")),
    )

    [choice] = result.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls == [("call_a", "f", '{"city": "Paris"}'), ("call_b", "g", "{}")]
    assert result.tool_calls == choice.message.tool_calls


def test_an_empty_content_opening_does_not_make_a_tool_call_answer_text() -> None:
    # vLLM and others open every answer with `content: ""`, tool calls or not.
    result = _built(
        _chunk(_delta(0, role="assistant", content="")),
        _chunk(_delta(0, tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}])),
        _chunk(_delta(0, finish_reason="tool_calls")),
    )

    assert result.content is None


def test_an_empty_text_answer_stays_empty_text() -> None:
    result = _built(_chunk(_delta(0, role="assistant", content="")), _chunk(_delta(0, finish_reason="length")))

    assert (result.content, result.finish_reason) == ("", "length")


def test_interleaved_choices_are_kept_apart_in_index_order() -> None:
    result = _built(
        _chunk(_delta(1, role="assistant", content="")),
        _chunk(_delta(0, role="assistant", content="")),
        _chunk(_delta(0, content="hel")),
        _chunk(_delta(1, content="bon")),
        _chunk(_delta(1, content="jour", finish_reason="stop")),
        _chunk(_delta(0, content="lo")),
        _chunk(_delta(0, finish_reason="length")),
    )

    assert [(c.index, c.message.content, c.finish_reason) for c in result.choices] == [
        (0, "hello", "length"),
        (1, "bonjour", "stop"),
    ]


def test_not_finished_until_every_choice_has_its_finish_reason() -> None:
    builder = AnswerBuilder()
    builder.add(_chunk(_delta(0, content="a", finish_reason="stop"), _delta(1, content="b")))

    assert not builder.finished


def test_logprobs_of_each_chunk_are_concatenated() -> None:
    def token(text: str) -> dict[str, Any]:
        return {"token": text, "logprob": -0.5, "bytes": list(text.encode()), "top_logprobs": []}

    result = _built(
        _chunk(_delta(0, content="one", logprobs={"content": [token("one")], "refusal": None})),
        _chunk(_delta(0, content=" two", logprobs={"content": [token(" two")], "refusal": None})),
        _chunk(_delta(0, finish_reason="stop")),
    )

    logprobs = result.choices[0].logprobs
    assert logprobs == {"content": [token("one"), token(" two")], "refusal": None}


def test_refusal_pieces_make_a_refusal_with_null_content() -> None:
    result = _built(
        _chunk(_delta(0, role="assistant", content=None, refusal="")),
        _chunk(_delta(0, refusal="I can't ")),
        _chunk(_delta(0, refusal="help with that.")),
        _chunk(_delta(0, finish_reason="stop")),
    )

    message = result.choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")


def test_fields_openai_does_not_define_are_joined_too() -> None:
    result = _built(
        _chunk(_delta(0, role="assistant", reasoning_content="Let me ")),
        _chunk(_delta(0, reasoning_content="think.", content="4")),
        _chunk(_delta(0, finish_reason="stop")),
    )

    message = result.choices[0].message
    assert message.content == "4"
    assert message.model_dump()["reasoning_content"] == "Let me think."


def test_annotations_fingerprint_tier_and_usage_details_are_kept() -> None:
    citation = {"type": "url_citation", "url_citation": {"url": "https://example.com", "start_index": 0}}
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    builder = AnswerBuilder()
    for chunk in (
        _chunk(_delta(0, content="see"), system_fingerprint="fp_1", service_tier="default"),
        _chunk(_delta(0, annotations=[citation], finish_reason="stop"), system_fingerprint="fp_1"),
        _chunk(usage=usage),
    ):
        builder.add(chunk)

    result = builder.result()
    assert result.choices[0].message.annotations == [citation]
    assert (result.system_fingerprint, result.service_tier) == ("fp_1", "default")
    assert builder.usage == Usage(input_tokens=10, output_tokens=7, cached_input_tokens=4, reasoning_tokens=3)


def test_odd_usage_values_count_zero() -> None:
    assert read_usage({"prompt_tokens": -1, "completion_tokens": "7", "prompt_tokens_details": None}) == Usage(
        input_tokens=0, output_tokens=0
    )


def test_usage_is_estimated_when_the_upstream_reports_none() -> None:
    answer = JobResult.from_text("x" * 40)

    usage = estimated_usage("y" * 400, answer)

    assert (usage.input_tokens, usage.output_tokens) == (100, 10)
