"""Requests only some deployments can honour, through the OpenAI SDK and the job API: the route plan skips the
others, a request none can honour is a 400 `unsupported_parameter` naming the field, and an Anthropic
deployment answers tool calls (whole and streamed) in OpenAI's shape."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.support import common
from tests.support.harness import Harness

HELLO: Any = common.HELLO
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_a_request_no_deployment_can_honour_is_refused_naming_the_field(
    sdk: openai.AsyncOpenAI, kintsugi: Harness
) -> None:
    with pytest.raises(openai.BadRequestError) as logprobs:
        await sdk.chat.completions.create(model="claude-only", messages=HELLO, logprobs=True)
    with pytest.raises(openai.BadRequestError) as undeclared:
        await sdk.chat.completions.create(
            model="claude-only",
            messages=HELLO,
            extra_body={"verbosity": "low"},
        )
    job = await kintsugi.submit({"model": "claude-only", "messages": HELLO, "params": {"n": 2}})

    assert logprobs.value.code == "unsupported_parameter"
    assert "'logprobs'" in logprobs.value.message
    assert undeclared.value.code == "unsupported_parameter" and "'verbosity'" in undeclared.value.message
    assert job.status_code == 400
    assert job.json()["error"]["code"] == "unsupported_parameter"
    assert job.json()["error"]["details"] == {"param": "n", "deployments": {f"claude/{kintsugi.model('a')}": ["n"]}}
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 0


async def test_the_plan_skips_the_anthropic_deployment_that_cannot_honour_n(
    sdk: openai.AsyncOpenAI, kintsugi: Harness
) -> None:
    # Route `claude`: Anthropic first, then an OpenAI-compatible deployment.
    two = await sdk.chat.completions.create(model="claude", messages=HELLO, n=2)

    assert [c.message.content for c in two.choices] == ["echo: hello", "echo: hello [2]"]
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 0
    assert kintsugi.upstream.calls(kintsugi.model("b")) == 1
    one = await sdk.chat.completions.create(model="claude", messages=HELLO)
    assert one.choices[0].message.content == "echo: hello"
    assert kintsugi.upstream.last_request(kintsugi.model("a"))["path"] == "/v1/messages"


async def test_anthropic_tool_calls_reach_an_openai_client_whole_and_streamed(
    sdk: openai.AsyncOpenAI, kintsugi: Harness
) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), tool_arguments={"city": "Paris"}, cache_write_tokens=5)
    ask: Any = [{"role": "user", "content": "call get_weather"}]

    whole = await sdk.chat.completions.create(model="claude-only", messages=ask, tools=[WEATHER])
    stream = await sdk.chat.completions.create(
        model="claude-only",
        messages=ask,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    arguments, names, finish, usage = [], [], None, None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                names.append(call.function.name if call.function and call.function.name else "")
                arguments.append(call.function.arguments if call.function and call.function.arguments else "")
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage

    message = whole.model_dump()["choices"][0]["message"]
    assert whole.choices[0].finish_reason == "tool_calls"
    assert message["content"] is None
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]
    ] == [("toolu_fake_0", "get_weather", {"city": "Paris"})]
    assert "get_weather" in names and json.loads("".join(arguments)) == {"city": "Paris"}
    assert finish == "tool_calls"
    assert kintsugi.upstream.last_request(kintsugi.model("a"))["body"]["stream"] is True  # relayed as it came
    assert usage is not None and whole.usage is not None and usage.prompt_tokens == whole.usage.prompt_tokens
    job = (await kintsugi.http.get(f"/v1/jobs/{whole.id}", headers=kintsugi.admin)).json()
    assert job["usage"]["cache_write_input_tokens"] == 5
    (row,) = await kintsugi.cost_rows(whole.id)
    assert row.cache_write_input_tokens == 5
