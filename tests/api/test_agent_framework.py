"""A real agent framework nobody here wrote — the `openai-agents` SDK with its Chat Completions model — runs a
tool-using turn through Kintsugi against the fake upstream, and reaches nothing but the local servers."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

from tests.support.harness import Harness
from tests.support.sdk import openai_sdk

FORECASTS = {"Paris": "sunny, 21 °C"}


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return FORECASTS.get(city, "unknown")


@pytest.fixture
def refused_egress(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Refuse (and record) every Python socket connection to anything but this machine."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def local_only(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                attempts.append(address)
                raise ConnectionRefusedError(f"test refuses outbound connections: {address}")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    yield attempts


@pytest.fixture
async def agent_client(kintsugi: Harness) -> AsyncIterator[openai.AsyncOpenAI]:
    set_tracing_disabled(True)  # the SDK would otherwise send traces to api.openai.com
    async with openai_sdk(kintsugi) as client:
        yield client


async def test_an_openai_agents_tool_turn_runs_through_kintsugi(
    agent_client: openai.AsyncOpenAI, kintsugi: Harness, refused_egress: list[Any]
) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), tool_arguments={"city": "Paris"})
    agent = Agent(
        name="forecaster",
        instructions="Answer weather questions with the get_weather tool.",
        model=OpenAIChatCompletionsModel(model="primary", openai_client=agent_client),
        tools=[get_weather],
    )

    result = await Runner.run(agent, "What is the weather in Paris? Use get_weather.")

    assert result.final_output == "tool said: sunny, 21 °C"
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 2
    # The framework's second request carried the tool call and its result, as the upstream needs them.
    sent = kintsugi.upstream.last_request(kintsugi.model("a"))["body"]
    [call] = sent["messages"][-2]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 °C"}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert refused_egress == []


async def test_the_egress_guard_refuses_a_connection_elsewhere(refused_egress: list[Any]) -> None:
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("192.0.2.1", 443)  # TEST-NET-1: never routed

    assert refused_egress == [("192.0.2.1", 443)]


async def test_a_streamed_agent_turn_runs_through_kintsugi(
    agent_client: openai.AsyncOpenAI, kintsugi: Harness, refused_egress: list[Any]
) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), tool_arguments={"city": "Paris"}, chunks=4)
    agent = Agent(
        name="forecaster",
        instructions="Answer weather questions with the get_weather tool.",
        model=OpenAIChatCompletionsModel(model="primary", openai_client=agent_client),
        tools=[get_weather],
    )

    run = Runner.run_streamed(agent, "What is the weather in Paris? Use get_weather.")
    async for _ in run.stream_events():
        pass

    assert run.final_output == "tool said: sunny, 21 °C"
    assert refused_egress == []
