"""The Anthropic provider against the fake Anthropic server: the exact request it receives, and the answer read
back in OpenAI's shapes, whole and streamed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.providers import call_provider
from schemas.calls import CallModelInput
from schemas.errors import BAD_REQUEST, RATE_LIMITED, UPSTREAM_BAD_RESPONSE
from schemas.routes import AnthropicProvider
from tests.support.calls import call_input
from tests.support.fake_upstream import FakeUpstream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture
def model() -> str:
    return f"claude-{uuid.uuid4().hex[:8]}"


def claude(upstream: FakeUpstream, *, stream: bool = False) -> AnthropicProvider:
    return AnthropicProvider(kind="anthropic", base_url=upstream.url, timeout_s=5, stream=stream)


def call(model: str, messages: list[dict[str, Any]], **params: Any) -> CallModelInput:
    return call_input(model, messages, provider="claude", region="us", **params)


class Chunks:
    """An `on_chunk` sink that keeps what it is given."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, chunk: dict[str, Any]) -> None:
        self.received.append(chunk)

    def deltas(self) -> list[dict[str, Any]]:
        return [c["choices"][0]["delta"] for c in self.received if c["choices"]]


async def test_a_tool_round_trip_is_translated_into_anthropic_blocks(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be terse"},
        {"role": "developer", "content": "answer in French"},
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "thanks"},
    ]
    request = call(
        model,
        messages,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        stop=["END"],
        max_tokens=100,
        max_completion_tokens=300,
        temperature=0.5,
        user="u-42",
        seed=7,
    )

    out = await call_provider(http, claude(upstream), request, api_key="ak")

    assert upstream.last_request(model)["body"] == {
        "model": model,
        "system": "be terse\n\nanswer in French",
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
        "max_tokens": 300,
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather of a city",
                "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    assert (out.answer.content, out.answer.finish_reason) == ("tool said: sunny; rainy", "stop")


async def test_tool_use_blocks_come_back_as_tool_calls(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    upstream.configure(model, tool_arguments={"city": "Paris"})
    messages = [{"role": "user", "content": "call get_weather and get_time"}]

    out = await call_provider(http, claude(upstream), call(model, messages, tools=[WEATHER, CLOCK]), api_key=None)

    sent = upstream.last_request(model)["body"]
    assert sent["tools"][1] == {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    assert "tool_choice" not in sent  # auto is Anthropic's default
    assert out.answer.finish_reason == "tool_calls"
    assert out.answer.content is None
    assert [c.model_dump() for c in out.answer.tool_calls or []] == [
        {
            "id": "toolu_fake_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "toolu_fake_1", "type": "function", "function": {"name": "get_time", "arguments": '{"city":"Paris"}'}},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "sent"),
    [
        ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
        ("none", {"type": "none"}),
        ("auto", {"type": "auto"}),
    ],
)
async def test_tool_choice_is_translated(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str, tool_choice: Any, sent: dict[str, Any]
) -> None:
    messages = [{"role": "user", "content": "what now?"}]

    out = await call_provider(
        http, claude(upstream), call(model, messages, tools=[WEATHER, CLOCK], tool_choice=tool_choice), api_key=None
    )

    assert upstream.last_request(model)["body"]["tool_choice"] == sent
    called = [c.function.name for c in out.answer.tool_calls or []]
    assert called == (["get_time"] if sent["type"] == "tool" else [])


async def test_images_go_inline_or_by_url_and_cache_control_passes(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    content = [
        {"type": "text", "text": "what is this?", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    await call_provider(http, claude(upstream), call(model, [{"role": "user", "content": content}]), api_key=None)

    assert upstream.last_request(model)["body"]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str, stop_reason: str, finish_reason: str, stream: bool
) -> None:
    upstream.configure(model, finish_reason=stop_reason, content="cut sh")

    out = await call_provider(
        http, claude(upstream, stream=stream), call(model, [{"role": "user", "content": "x"}]), api_key=None
    )

    assert (out.answer.finish_reason, out.answer.content) == (finish_reason, "cut sh")


@pytest.mark.parametrize("stream", [False, True])
async def test_cache_reads_and_writes_are_kept_in_usage(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str, stream: bool
) -> None:
    request = call(model, [{"role": "user", "content": "a long shared prefix"}])
    plain = await call_provider(http, claude(upstream, stream=stream), request, api_key=None)
    upstream.configure(model, cached_tokens=300, cache_write_tokens=40)

    cached = await call_provider(http, claude(upstream, stream=stream), request, api_key=None)

    assert plain.usage.cached_input_tokens == plain.usage.cache_write_input_tokens == 0
    # Anthropic's `input_tokens` leaves the cached ones out; ours counts every input token.
    assert cached.usage.input_tokens == plain.usage.input_tokens + 340
    assert (cached.usage.cached_input_tokens, cached.usage.cache_write_input_tokens) == (300, 40)
    assert cached.usage.output_tokens == plain.usage.output_tokens > 0


async def test_a_stream_with_tool_use_relays_openai_tool_call_deltas(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    upstream.configure(model, tool_arguments={"city": "Paris", "days": 3}, chunks=3, cached_tokens=8)
    chunks, beats = Chunks(), []
    request = call(model, [{"role": "user", "content": "use get_weather"}], tools=[WEATHER])

    out = await call_provider(
        http, claude(upstream), request, api_key=None, heartbeat=lambda: beats.append(1), on_chunk=chunks
    )

    assert upstream.last_request(model)["body"]["stream"] is True
    deltas = chunks.deltas()
    assert deltas[0] == {"role": "assistant"}
    assert deltas[1] == {
        "tool_calls": [
            {"index": 0, "id": "toolu_fake_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ]
    }
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:5]]
    assert "".join(pieces) == '{"city": "Paris", "days": 3}' and all(pieces)
    assert [c["choices"][0]["finish_reason"] for c in chunks.received[-2:-1]] == ["tool_calls"]
    last = chunks.received[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    assert last["usage"]["prompt_tokens"] == out.usage.input_tokens
    assert {c["object"] for c in chunks.received} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks.received} == {"msg_fake_1"}
    # Folded into the same answer a non-streamed call gives.
    assert out.answer.finish_reason == "tool_calls"
    assert out.answer.tool_calls is not None
    assert json.loads(out.answer.tool_calls[0].function.arguments) == {"city": "Paris", "days": 3}
    assert out.answer.content is None
    assert len(beats) == 9  # message_start, ping, block start, 3 deltas, block stop, message_delta, message_stop


async def test_a_streamed_text_answer_arrives_in_pieces(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    upstream.configure(model, content="the quick brown fox", chunks=4)
    chunks = Chunks()

    out = await call_provider(
        http, claude(upstream), call(model, [{"role": "user", "content": "x"}]), api_key=None, on_chunk=chunks
    )

    texts = [d["content"] for d in chunks.deltas() if "content" in d]
    assert len(texts) == 4 and "".join(texts) == "the quick brown fox"
    assert (out.answer.content, out.answer.finish_reason) == ("the quick brown fox", "stop")


async def test_tool_arguments_that_are_not_a_json_object_are_refused_unsent(
    http: httpx.AsyncClient, upstream: FakeUpstream, model: str
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]

    with pytest.raises(ApplicationError) as refused:
        await call_provider(http, claude(upstream), call(model, messages), api_key=None)

    assert (refused.value.type, refused.value.non_retryable) == (BAD_REQUEST, True)
    assert upstream.calls(model) == 0


def _sse_server(events: list[dict[str, Any]]) -> httpx.AsyncClient:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
    )
    return httpx.AsyncClient(transport=transport)


START = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 5}}}


async def test_a_tool_that_takes_no_input_streams_empty_json_arguments() -> None:
    events: list[dict[str, Any]] = [
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    async with _sse_server(events) as http:
        out = await call_provider(
            http,
            AnthropicProvider(kind="anthropic", base_url="http://x", stream=True),
            call("m", [{"role": "user", "content": "x"}]),
            api_key=None,
        )

    assert out.answer.content == "Checking."
    assert [(c.id, c.function.name, c.function.arguments) for c in out.answer.tool_calls or []] == [("t1", "now", "{}")]
    assert (out.usage.input_tokens, out.usage.output_tokens) == (5, 7)


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ([START, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}], "upstream_error"),
        ([START, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}], RATE_LIMITED),
        ([START, {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}], UPSTREAM_BAD_RESPONSE),
    ],
)
async def test_a_stream_that_errs_or_stops_short_fails_retryably(events: list[dict[str, Any]], code: str) -> None:
    async with _sse_server(events) as http:
        with pytest.raises(ApplicationError) as failed:
            await call_provider(
                http,
                AnthropicProvider(kind="anthropic", base_url="http://x", stream=True),
                call("m", [{"role": "user", "content": "x"}]),
                api_key=None,
            )

    assert (failed.value.type, failed.value.non_retryable) == (code, False)
