"""Drop-in fidelity: the official OpenAI SDK, over real HTTP, gets through Kintsugi what it would get from
OpenAI: tools, structured output, images, unknown fields, `n`, logprobs, usage details, OpenAI-shaped errors."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from api.errors import error_body
from tests.support.harness import Harness

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def _sent(kintsugi: Harness) -> dict[str, Any]:
    """The body the upstream received for the `primary` route's latest call."""
    body: dict[str, Any] = kintsugi.upstream.last_request(kintsugi.model("a"))["body"]
    return body


async def test_a_tool_calling_round_trip(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), tool_arguments={"city": "Paris"})
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]

    raw = await sdk.chat.completions.with_raw_response.create(
        model="primary", messages=messages, tools=[WEATHER], tool_choice="auto"
    )
    first = raw.parse()

    # The answer has OpenAI's shape: `content: null` beside the tool calls, not "" and not missing.
    message_json = raw.http_response.json()["choices"][0]["message"]
    assert message_json["content"] is None and "refusal" in message_json
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert _sent(kintsugi)["tools"] == [WEATHER] and _sent(kintsugi)["tool_choice"] == "auto"

    # As the SDK's docs do it: the answer's message object goes back as the assistant turn.
    tool_turn: Any = {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 °C"}
    turns: list[Any] = [*messages, first.choices[0].message, tool_turn]
    final = await sdk.chat.completions.create(model="primary", messages=turns, tools=[WEATHER])

    assert final.choices[0].message.content == "tool said: sunny, 21 °C"
    assert final.choices[0].finish_reason == "stop"
    # The turns reached the upstream as the SDK wrote them: null content kept, the call id with its result.
    assistant_sent, tool_sent = _sent(kintsugi)["messages"][1:]
    assert assistant_sent == {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call.model_dump()]}
    assert tool_sent == tool_turn
    job = (await kintsugi.http.get(f"/v1/jobs/{first.id}", headers=kintsugi.admin)).json()
    assert job["result"]["tool_calls"][0]["id"] == call.id


class Forecast(BaseModel):
    city: str
    celsius: int


async def test_json_schema_is_forwarded_and_the_answer_parses(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    completion = await sdk.chat.completions.parse(
        model="primary", messages=[{"role": "user", "content": "Paris"}], response_format=Forecast
    )

    sent = _sent(kintsugi)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["city", "celsius"]
    assert completion.choices[0].message.parsed == Forecast(city="Paris", celsius=len("Paris"))


async def test_an_image_part_is_forwarded(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    parts: Any = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]

    completion = await sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": parts}])

    assert completion.choices[0].message.content == "echo: What is in this picture?"
    assert _sent(kintsugi)["messages"] == [{"role": "user", "content": parts}]


async def test_every_field_is_forwarded_unchanged_including_unknown_ones(
    sdk: openai.AsyncOpenAI, kintsugi: Harness
) -> None:
    await sdk.chat.completions.create(
        model="primary",
        messages=[{"role": "user", "content": "hi"}],
        max_completion_tokens=256,
        reasoning_effort="low",
        user="user-42",
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        service_tier="flex",
        store=False,
        seed=7,
        stop="END",
        extra_body={"top_k": 40, "chat_template_kwargs": {"enable_thinking": False}},
    )

    sent = _sent(kintsugi)
    assert {key: sent[key] for key in ("max_completion_tokens", "reasoning_effort", "user", "seed")} == {
        "max_completion_tokens": 256,
        "reasoning_effort": "low",
        "user": "user-42",
        "seed": 7,
    }
    assert "max_tokens" not in sent  # reasoning models refuse it: never rewritten
    assert (sent["presence_penalty"], sent["frequency_penalty"], sent["logit_bias"]) == (0.5, -0.5, {"50256": -100})
    assert (sent["service_tier"], sent["store"], sent["stop"]) == ("flex", False, ["END"])
    assert (sent["top_k"], sent["chat_template_kwargs"]) == (40, {"enable_thinking": False})


async def test_n_choices_with_logprobs(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="primary", messages=[{"role": "user", "content": "two ways"}], n=2, logprobs=True, top_logprobs=2
    )

    assert [(c.index, c.message.content) for c in completion.choices] == [
        (0, "echo: two ways"),
        (1, "echo: two ways [2]"),
    ]
    for choice in completion.choices:
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert "".join(token.token for token in choice.logprobs.content) == choice.message.content
        assert all(len(token.top_logprobs) == 2 for token in choice.logprobs.content)


async def test_usage_details_fingerprint_and_finish_reason_as_given(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    kintsugi.upstream.configure(
        kintsugi.model("a"), cached_tokens=8, reasoning_tokens=16, system_fingerprint="fp_fake1", finish_reason="length"
    )

    completion = await sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": "think"}])

    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens_details.cached_tokens, usage.completion_tokens_details.reasoning_tokens) == (8, 16)
    assert usage.completion_tokens >= 16 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion.system_fingerprint == "fp_fake1"
    assert completion.choices[0].finish_reason == "length"


async def test_a_refusal_and_annotations_come_back(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    citation = {"type": "url_citation", "url_citation": {"url": "https://x.test", "title": "x", "start_index": 0}}
    kintsugi.upstream.configure(kintsugi.model("a"), refusal="I can't help with that.", annotations=[citation])

    completion = await sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": "no"}])

    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")
    assert [a.model_dump(exclude_none=True) for a in message.annotations or []] == [
        {"type": "url_citation", "url_citation": {"url": "https://x.test", "title": "x", "start_index": 0}}
    ]


async def test_the_job_api_carries_messages_tools_and_response_format(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), tool_arguments={"city": "Oslo"})
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather in Oslo? use get_weather"}]},
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "properties": {"sky": {"type": "string"}}}},
    }

    submitted = await kintsugi.submit(
        {"model": "primary", "messages": messages, "tools": [WEATHER], "response_format": response_format}, wait=20
    )

    assert submitted.status_code == 200, submitted.text
    job = (await kintsugi.http.get(f"/v1/jobs/{submitted.json()['id']}", headers=kintsugi.admin)).json()
    result = job["result"]
    assert (result["content"], result["finish_reason"]) == (None, "tool_calls")
    [call] = result["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert result["choices"][0]["message"]["tool_calls"] == result["tool_calls"]
    sent = _sent(kintsugi)
    assert (sent["messages"], sent["tools"], sent["response_format"]) == (messages, [WEATHER], response_format)

    # The same in `params`, as the OpenAI endpoint carries them; then the tool's answer.
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": result["tool_calls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": "snow"},
    ]
    answered = await kintsugi.submit(
        {"model": "primary", "messages": follow_up, "params": {"tools": [WEATHER]}}, wait=20
    )

    assert answered.json()["result"]["content"] == "tool said: snow"
    assert _sent(kintsugi)["messages"] == follow_up


async def test_tools_given_twice_are_a_422(kintsugi: Harness) -> None:
    body = {
        "model": "primary",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "params": {"tools": [WEATHER]},
    }

    response = await kintsugi.submit(body)

    assert response.status_code == 422
    assert "tools" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/responses"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/files"),
        ("POST", "/v1/audio/speech"),
        ("GET", "/v1/no/such/thing"),
        ("GET", "/v1/models/no-such-route"),
        ("GET", "/v1/chat/completions"),
    ],
)
async def test_openai_paths_answer_in_openai_error_shape(kintsugi: Harness, method: str, path: str) -> None:
    response = await kintsugi.http.request(method, path, headers=kintsugi.admin, json={})

    assert response.status_code in (404, 405)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("not_found_error" if response.status_code == 404 else "invalid_request_error")


@pytest.mark.parametrize("path", ["/v1/jobs/job_nope", "/v1/tenants/nope", "/v1/traces/nope", "/v1/policies/x"])
async def test_kintsugi_resources_keep_kintsugis_error_shape(kintsugi: Harness, path: str) -> None:
    response = await kintsugi.http.get(path, headers=kintsugi.admin)

    assert response.status_code in (404, 405)
    assert set(response.json()["error"]) == {"code", "message", "details"}


async def test_the_sdk_raises_its_not_found_error_on_a_path_not_served(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.completions.create(model="primary", prompt="legacy")

    assert raised.value.code == "not_found"
    assert "POST /v1/completions" in raised.value.message


async def test_a_validation_error_names_its_param(kintsugi: Harness) -> None:
    body = {"model": "primary", "messages": [{"role": "tool", "content": "orphan"}]}

    response = await kintsugi.http.post("/v1/chat/completions", json=body, headers=kintsugi.admin)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["param"].startswith("messages.0")


async def test_an_oversized_body_on_an_openai_path_is_openai_shaped(kintsugi: Harness) -> None:
    big = "x" * (kintsugi.settings.max_body_bytes + 1)
    response = await kintsugi.http.post(
        "/v1/embeddings", content=json.dumps({"model": "primary", "input": big}), headers=kintsugi.admin
    )

    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "body_too_large"


def test_openai_shape_reaches_paths_not_yet_written() -> None:
    # Whatever a route under `/v1/` answers with (`/v1/embeddings` included), the shape is decided here.
    assert set(error_body("/v1/embeddings", 400, "bad", "m")["error"]) == {"message", "type", "param", "code"}
    assert set(error_body("/v1/runbook-runs/x", 404, "nf", "m")["error"]) == {"code", "message", "details"}
    assert set(error_body("/healthz", 503, "down", "m")["error"]) == {"code", "message", "details"}
