"""The OpenAI provider against the fake upstream: the request goes out as the app wrote it, and the answer
comes back whole, the same whether the upstream streamed it or not."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from activities.providers import call_provider
from schemas.calls import CallModelInput, CallModelOutput
from schemas.routes import OpenAIProvider
from tests.support.calls import call_input, unique_model
from tests.support.fake_upstream import FakeUpstream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


async def _complete(
    http: httpx.AsyncClient, upstream: FakeUpstream, call: CallModelInput, *, stream: bool
) -> CallModelOutput:
    provider = OpenAIProvider(kind="openai", base_url=upstream.url + "/v1", stream=stream, timeout_s=5)
    return await call_provider(http, provider, call, api_key="k")


async def test_the_request_reaches_the_upstream_as_the_app_wrote_it(
    http: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    model = unique_model()
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        # A message field Kintsugi does not know (a provider's cache hint) travels with its message.
        {"role": "user", "content": "and now?", "cache_control": {"type": "ephemeral"}},
    ]
    params: dict[str, Any] = {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "max_completion_tokens": 300,
        "logprobs": True,
        "top_logprobs": 2,
        "reasoning_effort": "low",
        "service_tier": "flex",
        "logit_bias": {"50256": -100},
        "some_future_knob": {"nested": [1, None, "x"]},
    }

    await _complete(http, upstream, call_input(model, messages, **params), stream=False)

    sent = upstream.last_request(model)["body"]
    assert sent["messages"] == messages
    assert {key: sent[key] for key in params} == params
    assert "max_tokens" not in sent


@pytest.mark.parametrize(
    ("behavior", "request_params"),
    [
        pytest.param({"system_fingerprint": "fp_t"}, {"tools": [WEATHER, CLOCK]}, id="parallel-tool-calls"),
        pytest.param({}, {"n": 2, "logprobs": True, "top_logprobs": 2}, id="n-choices-with-logprobs"),
        pytest.param({"refusal": "I can't help with that."}, {}, id="refusal"),
        pytest.param({"annotations": [{"type": "url_citation", "url_citation": {"url": "u"}}]}, {}, id="annotations"),
        pytest.param({"cached_tokens": 12, "reasoning_tokens": 30}, {}, id="usage-details"),
        pytest.param({"finish_reason": "length", "chunks": 7}, {"n": 3}, id="length"),
    ],
)
async def test_an_answer_is_whole_and_the_same_streamed_or_not(
    http: httpx.AsyncClient, upstream: FakeUpstream, behavior: dict[str, Any], request_params: dict[str, Any]
) -> None:
    model = unique_model()
    upstream.configure(model, **behavior)
    call = call_input(model, [{"role": "user", "content": "call get_weather and get_time, please"}], **request_params)

    plain = await _complete(http, upstream, call, stream=False)
    streamed = await _complete(http, upstream, call, stream=True)

    assert streamed.answer == plain.answer
    assert streamed.usage == plain.usage
    assert len(plain.answer.choices) == request_params.get("n", 1)


async def test_tool_calls_come_back_with_null_content(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    upstream.configure(model, tool_arguments={"city": "Paris"})
    call = call_input(model, [{"role": "user", "content": "use get_weather for Paris"}], tools=[WEATHER, CLOCK])

    out = await _complete(http, upstream, call, stream=True)

    [tool_call] = out.answer.tool_calls or []
    assert (tool_call.function.name, tool_call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert (out.answer.content, out.answer.finish_reason) == (None, "tool_calls")


async def test_logprobs_and_usage_details_are_carried(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    upstream.configure(model, cached_tokens=12, reasoning_tokens=30)
    call = call_input(model, [{"role": "user", "content": "count the tokens"}], logprobs=True, top_logprobs=3)

    out = await _complete(http, upstream, call, stream=True)

    logprobs = out.answer.choices[0].logprobs or {}
    assert "".join(token["token"] for token in logprobs["content"]) == "echo: count the tokens"
    assert all(len(token["top_logprobs"]) == 3 for token in logprobs["content"])
    assert (out.usage.cached_input_tokens, out.usage.reasoning_tokens) == (12, 30)
    assert out.usage.output_tokens >= 30


async def test_annotations_and_unknown_message_fields_are_kept(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    citation = {"type": "url_citation", "url_citation": {"url": "https://example.com", "title": None}}
    upstream.configure(model, annotations=[citation])

    out = await _complete(http, upstream, call_input(model, [{"role": "user", "content": "cite"}]), stream=False)

    assert out.answer.choices[0].message.annotations == [citation]
