"""What each provider kind cannot honour, and the route checks built on it (`domain.capabilities`, `domain.routing`)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.capabilities import unsupported
from domain.errors import ModelTypeMismatch, UnknownModel, UnsupportedParameter
from domain.routing import require_route, serving
from schemas.jobs import ChatMessage, JobParams
from schemas.openai import ChatCompletionRequest
from schemas.routes import RoutesConfig

TOOL = {"type": "function", "function": {"name": "f"}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
EVERYTHING: dict[str, Any] = {
    "n": 2,
    "logprobs": True,
    "top_logprobs": 3,
    "logit_bias": {"50256": -100},
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "temperature": 1.5,
    "response_format": JSON_SCHEMA,
    "reasoning_effort": "high",
    "service_tier": "flex",
    "store": True,
    "prediction": {"type": "content", "content": "x"},
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
    "tools": [TOOL],
    "tool_choice": "required",
    "verbosity": "low",
}
NEUTRAL: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "logit_bias": {},
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "temperature": 1,
    "top_p": 0.9,
    "response_format": {"type": "text"},
    "service_tier": "auto",
    "store": False,
    "modalities": ["text"],
    "seed": 7,
    "stop": ["END"],
    "max_completion_tokens": 10,
    "user": "u1",
    "metadata": {"k": "v"},
    "tools": [TOOL],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "parallel_tool_calls": False,
}


def params(**values: Any) -> JobParams:
    return JobParams.model_validate(values)


def test_openai_kind_honours_everything_even_undeclared_parameters() -> None:
    assert unsupported("openai", params(**EVERYTHING)) == []


def test_anthropic_names_each_parameter_it_cannot_honour() -> None:
    assert unsupported("anthropic", params(**EVERYTHING)) == [
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "temperature",
        "response_format",
        "reasoning_effort",
        "service_tier",
        "store",
        "prediction",
        "audio",
        "modalities",
        "verbosity",
    ]


@pytest.mark.parametrize("kind", ["anthropic", "simulator", "openai"])
def test_neutral_values_ask_for_nothing(kind: str) -> None:
    honoured = dict(NEUTRAL)
    if kind == "simulator":  # it cannot make a tool call, so it cannot be made to
        honoured.pop("tool_choice")
    assert unsupported(kind, params(**honoured)) == []


def test_anthropic_refuses_json_output_but_not_text() -> None:
    assert unsupported("anthropic", params(response_format={"type": "json_object"})) == ["response_format"]
    assert unsupported("anthropic", params(response_format={"type": "text"})) == []


def test_an_undeclared_parameter_set_to_null_asks_for_nothing() -> None:
    assert unsupported("anthropic", params(verbosity=None)) == []


def test_anthropic_names_message_content_it_cannot_hold() -> None:
    messages = [
        ChatMessage.model_validate(m)
        for m in [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "listen"},
                    {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
                ],
            },
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]},
            {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,AA=="}}]},
            {"role": "function", "name": "f", "content": "42"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        ]
    ]

    assert unsupported("anthropic", JobParams(), messages) == [
        "messages[0].content[1].input_audio",
        "messages[1].content[0].file.file_id",
        "messages[3].role",
    ]
    assert unsupported("openai", JobParams(), messages) == []


def test_the_simulator_refuses_only_answers_it_cannot_make() -> None:
    assert unsupported("simulator", params(**EVERYTHING)) == [
        "logprobs",
        "top_logprobs",
        "tool_choice",
        "response_format",
        "audio",
        "modalities",
    ]
    assert unsupported("simulator", params(tool_choice="auto", tools=[TOOL], n=3, verbosity="low")) == []


def test_a_chat_completion_request_is_read_for_its_parameters_only() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stop": "END",
            "verbosity": "low",
        }
    )
    assert unsupported("anthropic", request, request.messages) == ["verbosity"]


ROUTES = RoutesConfig.model_validate(
    {
        "providers": {
            "claude": {"kind": "anthropic"},
            "sim": {"kind": "simulator"},
            "up": {"kind": "openai", "base_url": "http://up/v1"},
        },
        "routes": {
            "mixed": [
                {"provider": "claude", "model": "c"},
                {"provider": "sim", "model": "s"},
                {"provider": "up", "model": "o"},
            ],
            "claude": [{"provider": "claude", "model": "c"}, {"provider": "sim", "model": "s"}],
            "embed": [{"provider": "up", "model": "e", "type": "embedding"}],
        },
    }
)


def _planned(model: str, **values: Any) -> list[str]:
    return [d.model for d in serving(ROUTES, model, kind="chat", params=params(**values), messages=[])]


def test_the_plan_skips_deployments_that_cannot_honour_the_request() -> None:
    assert _planned("mixed") == ["c", "s", "o"]
    assert _planned("mixed", n=2) == ["s", "o"]
    assert _planned("mixed", logprobs=True) == ["o"]


def test_a_route_no_deployment_can_serve_is_refused_naming_the_field() -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        require_route(ROUTES, "claude", kind="chat", params=params(logprobs=True, n=2))

    assert refused.value.code == "unsupported_parameter"
    assert refused.value.details == {
        "param": "n",
        "deployments": {"claude/c": ["n", "logprobs"], "sim/s": ["logprobs"]},
    }
    assert "'n'" in refused.value.message and "sim/s: logprobs" in refused.value.message


def test_a_request_of_the_other_kind_is_refused() -> None:
    with pytest.raises(ModelTypeMismatch) as chat_to_embed:
        require_route(ROUTES, "embed", kind="chat")
    with pytest.raises(ModelTypeMismatch):
        require_route(ROUTES, "mixed", kind="embedding")

    assert chat_to_embed.value.code == "model_type_mismatch"
    assert chat_to_embed.value.details == {"model": "embed", "serves": "embedding"}
    require_route(ROUTES, "embed", kind="embedding")
    require_route(ROUTES, "embed")  # no kind: a route of either type will do


def test_an_unknown_route_is_unknown_whatever_is_asked() -> None:
    with pytest.raises(UnknownModel):
        require_route(ROUTES, "nope", kind="chat", params=params(n=2))
    with pytest.raises(UnknownModel):
        require_route(ROUTES, "nope")
