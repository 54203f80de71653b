"""`call_provider` against a real HTTP server (the fake upstream): answers, and how failures are sorted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.providers import call_provider
from ops.waits import free_port
from schemas.errors import (
    BAD_REQUEST,
    CONTEXT_LENGTH_EXCEEDED,
    DEPLOYMENT_ERRORS,
    MODEL_NOT_FOUND,
    RATE_LIMITED,
    REQUEST_ERRORS,
    UPSTREAM_AUTH,
    UPSTREAM_BAD_RESPONSE,
    UPSTREAM_ERROR,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
)
from schemas.jobs import JobParams
from schemas.routes import AnthropicProvider, OpenAIProvider, SimulatorProvider
from tests.support.calls import call_input, unique_model
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def _openai(upstream: FakeUpstream, *, stream: bool = False, timeout_s: float = 5) -> OpenAIProvider:
    return OpenAIProvider(kind="openai", base_url=upstream.url + "/v1", stream=stream, timeout_s=timeout_s)


async def _failure(http: httpx.AsyncClient, upstream: FakeUpstream, **behavior: object) -> ApplicationError:
    model = unique_model()
    upstream.configure(model, fail_always=True, **behavior)
    with pytest.raises(ApplicationError) as caught:
        await call_provider(http, _openai(upstream), call_input(model), api_key="k")
    return caught.value


async def test_openai_success_forwards_params_and_key(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    params = JobParams(temperature=0.2, max_tokens=50, stop=["\n\n"], seed=7)

    out = await call_provider(http, _openai(upstream), call_input(model, params=params), api_key="sk-test")

    assert out.answer.content == "echo: hello there"
    assert out.answer.finish_reason == "stop"
    assert out.usage.input_tokens > 0 and out.usage.output_tokens > 0
    assert out.latency_ms > 0
    sent = upstream.last_request(model)
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    assert sent["body"]["model"] == model
    assert sent["body"]["messages"] == [{"role": "user", "content": "hello there"}]
    assert {k: sent["body"][k] for k in ("temperature", "max_tokens", "stop", "seed")} == {
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 7,
    }
    assert "top_p" not in sent["body"] and "stream" not in sent["body"]


async def test_openai_without_key_sends_no_authorization(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    await call_provider(http, _openai(upstream), call_input(model), api_key=None)
    assert "authorization" not in upstream.last_request(model)["headers"]


async def test_openai_stream_assembles_content_and_heartbeats(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    upstream.configure(model, content="the quick brown fox jumps")
    beats: list[int] = []

    out = await call_provider(
        http, _openai(upstream, stream=True), call_input(model), api_key="k", heartbeat=lambda: beats.append(1)
    )

    assert out.answer.content == "the quick brown fox jumps"
    assert out.answer.finish_reason == "stop"
    assert out.usage.input_tokens > 0 and out.usage.output_tokens == len("the quick brown fox jumps") // 4
    assert len(beats) >= 5  # role chunk, three pieces, finish chunk, usage chunk
    body = upstream.last_request(model)["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_anthropic_lifts_system_and_sends_key(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    provider = AnthropicProvider(kind="anthropic", base_url=upstream.url, timeout_s=5)
    messages = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi claude"}]

    out = await call_provider(http, provider, call_input(model, messages), api_key="ak-test")

    assert out.answer.content == "echo: hi claude"
    assert out.answer.finish_reason == "stop"
    assert out.usage.input_tokens > 0 and out.usage.output_tokens > 0
    sent = upstream.last_request(model)
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "ak-test"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"]["system"] == "be terse"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi claude"}]
    assert sent["body"]["max_tokens"] == 1024


async def test_server_error_is_retryable(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    err = await _failure(http, upstream, status=500)
    assert err.type == UPSTREAM_ERROR
    assert not err.non_retryable
    assert "500" in err.message and "injected failure" in err.message


async def test_fail_first_then_success(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    upstream.configure(model, fail_first=1, status=503)
    with pytest.raises(ApplicationError):
        await call_provider(http, _openai(upstream), call_input(model), api_key=None)
    out = await call_provider(http, _openai(upstream), call_input(model), api_key=None)
    assert out.answer.content == "echo: hello there"
    assert upstream.calls(model) == 2


async def test_rate_limit_honours_retry_after(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    err = await _failure(http, upstream, status=429, retry_after="7")
    assert err.type == RATE_LIMITED
    assert not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7)


async def test_rate_limit_caps_and_ignores_bad_retry_after(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    assert (await _failure(http, upstream, status=429, retry_after="86400")).next_retry_delay == timedelta(seconds=300)
    assert (await _failure(http, upstream, status=429, retry_after="soon")).next_retry_delay is None
    assert (await _failure(http, upstream, status=429)).next_retry_delay is None


async def test_bad_request_is_final(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    err = await _failure(http, upstream, status=400)
    assert err.type == BAD_REQUEST and err.type in REQUEST_ERRORS
    assert err.non_retryable


async def test_context_length_is_final(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    err = await _failure(http, upstream, status=400, error_code="context_length_exceeded")
    assert err.type == CONTEXT_LENGTH_EXCEEDED and err.type in REQUEST_ERRORS
    assert err.non_retryable
    assert "maximum context length" in err.message


@pytest.mark.parametrize(("status", "code"), [(401, UPSTREAM_AUTH), (403, UPSTREAM_AUTH), (404, MODEL_NOT_FOUND)])
async def test_deployment_errors_are_final(
    http: httpx.AsyncClient, upstream: FakeUpstream, status: int, code: str
) -> None:
    err = await _failure(http, upstream, status=status)
    assert err.type == code and err.type in DEPLOYMENT_ERRORS
    assert err.non_retryable


async def test_hang_past_timeout_is_retryable_timeout(http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    model = unique_model()
    upstream.configure(model, hang_s=2)
    with pytest.raises(ApplicationError) as caught:
        await call_provider(http, _openai(upstream, timeout_s=0.3), call_input(model), api_key=None)
    assert caught.value.type == UPSTREAM_TIMEOUT
    assert not caught.value.non_retryable


async def test_closed_port_is_unreachable(http: httpx.AsyncClient) -> None:
    provider = OpenAIProvider(kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2)
    with pytest.raises(ApplicationError) as caught:
        await call_provider(http, provider, call_input(unique_model()), api_key=None)
    assert caught.value.type == UPSTREAM_UNREACHABLE
    assert not caught.value.non_retryable


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_success_body_is_retryable(
    http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool
) -> None:
    model = unique_model()
    upstream.configure(model, malformed=True)
    with pytest.raises(ApplicationError) as caught:
        await call_provider(http, _openai(upstream, stream=stream), call_input(model), api_key=None)
    assert caught.value.type == UPSTREAM_BAD_RESPONSE
    assert not caught.value.non_retryable


async def test_simulator_echoes_last_user_message(http: httpx.AsyncClient) -> None:
    provider = SimulatorProvider(kind="simulator", latency_ms=20)
    messages = [{"role": "user", "content": "first"}, {"role": "user", "content": "x" * 500}]

    out = await call_provider(http, provider, call_input("sim-1", messages), api_key=None)

    assert out.answer.content == "[simulated] " + "x" * 200
    assert out.answer.finish_reason == "stop"
    assert out.usage.input_tokens == len("first" + "x" * 500) // 4
    assert out.usage.output_tokens == len(out.answer.content) // 4
    assert out.latency_ms >= 20


async def test_simulator_failure_is_retryable(http: httpx.AsyncClient) -> None:
    provider = SimulatorProvider(kind="simulator", latency_ms=0, fail_rate=1)
    with pytest.raises(ApplicationError) as caught:
        await call_provider(http, provider, call_input("sim-1"), api_key=None)
    assert caught.value.type == UPSTREAM_ERROR
    assert not caught.value.non_retryable
    assert "simulated failure" in caught.value.message


async def test_simulator_answers_every_choice_asked_for(http: httpx.AsyncClient) -> None:
    provider = SimulatorProvider(kind="simulator", latency_ms=0)

    one = await call_provider(http, provider, call_input("sim-1"), api_key=None)
    three = await call_provider(http, provider, call_input("sim-1", params=JobParams(n=3)), api_key=None)

    assert [c.index for c in three.answer.choices] == [0, 1, 2]
    assert {c.message.content for c in three.answer.choices} == {"[simulated] hello there"}
    assert three.usage.output_tokens == 3 * one.usage.output_tokens


async def test_simulator_streams_its_answer_word_by_word(http: httpx.AsyncClient) -> None:
    provider = SimulatorProvider(kind="simulator", latency_ms=5)
    chunks: list[dict[str, Any]] = []

    async def keep(chunk: dict[str, Any]) -> None:
        chunks.append(chunk)

    out = await call_provider(
        http, provider, call_input("sim-1", [{"role": "user", "content": "one two"}]), api_key=None, on_chunk=keep
    )

    pieces = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert pieces == ["", "[simulated]", " one", " two"]
    assert "".join(p or "" for p in pieces) == out.answer.content
