"""What each provider kind cannot honour of a chat request.

A gateway that drops a parameter it cannot pass on answers a different question from the one asked: an app
asking for `logprobs` gets none, one asking for `n: 3` gets one answer, and nothing says so. Instead each
provider kind names what it cannot do; the route plan skips such deployments, and a request that no
deployment of its route can honour is refused with `unsupported_parameter` naming the field.

- `openai`: everything; the request is forwarded as sent, undeclared parameters included.
- `anthropic`: what the Messages API has no equivalent for (below); parameters Kintsugi does not declare
  (`JobParams.model_extra`), since nothing says what they would mean there; `input_audio` parts, `file` parts
  given by `file_id`, and legacy `function` messages. `seed` (best effort at OpenAI too) is dropped; tools'
  `strict` flag is dropped (Anthropic follows the schema without that guarantee).
- `simulator`: it echoes, so sampling parameters change nothing and are accepted; what asks for an answer of
  a shape it cannot make (logprobs, a forced tool call, JSON, audio) is refused.

A parameter set to its neutral value (`n: 1`, `logprobs: false`, a penalty of 0) asks for nothing and passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.jobs import JobParams
from schemas.messages import AudioPart, ChatMessage, FilePart

Check = Callable[[Any], bool]
"""True when a parameter's (non-None) value asks for something the provider cannot do."""


def _always(_: Any) -> bool:
    return True


def _not_text(value: Any) -> bool:
    # A response format asking for JSON (`json_object`, `json_schema`) rather than free text.
    return getattr(value, "type", None) != "text"


def _audio_out(modalities: Any) -> bool:
    return any(modality != "text" for modality in modalities)


_ANTHROPIC: Mapping[str, Check] = {
    "n": lambda n: n > 1,
    "logprobs": bool,
    "top_logprobs": lambda top: top > 0,
    "logit_bias": bool,
    "presence_penalty": lambda penalty: penalty != 0,
    "frequency_penalty": lambda penalty: penalty != 0,
    "temperature": lambda temperature: temperature > 1,  # Anthropic's range is 0-1, OpenAI's 0-2
    "response_format": _not_text,
    "reasoning_effort": _always,  # extended thinking answers with blocks an OpenAI message cannot carry back
    "service_tier": lambda tier: tier not in ("auto", "default"),
    "store": bool,
    "prediction": _always,
    "audio": _always,
    "modalities": _audio_out,
}

_SIMULATOR: Mapping[str, Check] = {
    "logprobs": bool,
    "top_logprobs": lambda top: top > 0,
    "tool_choice": lambda choice: choice == "required" or isinstance(choice, dict),
    "response_format": _not_text,
    "audio": _always,
    "modalities": _audio_out,
}


def unsupported(kind: str, params: JobParams, messages: Sequence[ChatMessage] = ()) -> list[str]:
    """The fields of a chat request that a provider of `kind` cannot honour, in request order; empty if none.

    Args:
        kind: The provider's `kind` in the routes file.
        params: The request's parameters (a `ChatCompletionRequest` will do: only parameters are read).
        messages: The request's messages, for content an Anthropic turn cannot hold.

    Returns:
        Field names as a caller would spell them: `logprobs`, `verbosity`, `messages[2].content[0].input_audio`.
    """
    if kind == "anthropic":
        return [*_refused(params, _ANTHROPIC, undeclared=True), *_anthropic_messages(messages)]
    if kind == "simulator":
        return _refused(params, _SIMULATOR, undeclared=False)
    return []


def _refused(params: JobParams, checks: Mapping[str, Check], *, undeclared: bool) -> list[str]:
    fields = [name for name, check in checks.items() if (value := getattr(params, name)) is not None and check(value)]
    if undeclared:
        fields += [name for name, value in (params.model_extra or {}).items() if value is not None]
    return fields


def _anthropic_messages(messages: Sequence[ChatMessage]) -> list[str]:
    fields = []
    for i, message in enumerate(messages):
        if message.role == "function":
            fields.append(f"messages[{i}].role")
        if not isinstance(message.content, list):
            continue
        for j, part in enumerate(message.content):
            if isinstance(part, AudioPart):
                fields.append(f"messages[{i}].content[{j}].input_audio")
            elif isinstance(part, FilePart) and not part.file.file_data:
                fields.append(f"messages[{i}].content[{j}].file.file_id")
    return fields
