"""The official OpenAI Python SDK against Kintsugi served over real HTTP by uvicorn."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.harness import Harness


async def test_plain_completion(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    completion = await sdk.chat.completions.create(
        model="primary", messages=[{"role": "user", "content": "hi there"}], temperature=0.2, max_tokens=50
    )

    assert completion.choices[0].message.content == "echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = kintsugi.upstream.last_request(kintsugi.model("a"))["body"]
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 50)
    job = (await kintsugi.http.get(f"/v1/jobs/{completion.id}", headers=kintsugi.admin)).json()
    assert job["status"] == "succeeded"


async def test_streamed_completion(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="primary",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage

    assert "".join(parts) == "echo: stream me"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_models_lists_route_aliases(sdk: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in sdk.models.list()]

    assert {"primary", "fallback", "sim-1"} <= set(models)


async def test_errors_arrive_as_typed_sdk_exceptions(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        await sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "unknown_model"

    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=400)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "bad_request"

    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    with pytest.raises(openai.APIStatusError) as exhausted:
        await sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": "x"}])
    assert exhausted.value.status_code == 502
    assert exhausted.value.code == "all_deployments_failed"

    bad_key = openai.AsyncOpenAI(base_url=str(sdk.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad_key.chat.completions.create(model="primary", messages=[{"role": "user", "content": "x"}])
    await bad_key.close()


async def test_input_a_job_cannot_take_is_a_422_not_a_500(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        await sdk.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "x", "name": "n" * 80}]
        )

    assert err.value.code == "validation_error"


async def test_a_completion_whose_job_is_cancelled_is_a_409(sdk: openai.AsyncOpenAI, kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), latency_ms=3000)
    request = asyncio.create_task(
        sdk.chat.completions.create(model="primary", messages=[{"role": "user", "content": "slow"}])
    )
    job_id = ""
    for _ in range(100):
        listed = (await kintsugi.http.get("/v1/jobs", params={"status": "running"}, headers=kintsugi.admin)).json()
        mine = [job["id"] for job in listed["data"] if job["model"] == "primary"]
        if mine and kintsugi.upstream.calls(kintsugi.model("a")):
            job_id = mine[0]
            break
        await asyncio.sleep(0.05)
    assert job_id, "the completion's job never showed up as running"

    await kintsugi.http.post(f"/v1/jobs/{job_id}/cancel", headers=kintsugi.admin)

    with pytest.raises(openai.ConflictError) as err:
        await request
    assert err.value.code == "cancelled"
