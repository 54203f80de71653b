"""OpenAI's Chat Completions protocol as Kintsugi serves it: the request is the job's messages and
parameters plus the streaming switches; the answer is the job's result in OpenAI's envelope."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, field_serializer

from schemas.jobs import Choice, JobParams, JobResult, Usage
from schemas.messages import AssistantMessage, ChatMessage


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(JobParams):
    """OpenAI's request body. Parameters Kintsugi does not declare are kept and forwarded (see JobParams)."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None  # type: ignore[assignment]  # OpenAI also takes one string

    def job_params(self) -> JobParams:
        """The parameters the job carries: all of them but the envelope (model, messages, streaming)."""
        params = self.model_dump(exclude={"model", "messages", "stream", "stream_options"}, exclude_none=True)
        if isinstance(self.stop, str):
            params["stop"] = [self.stop]
        return JobParams.model_validate(params)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails

    @classmethod
    def of(cls, usage: Usage | None) -> CompletionUsage:
        usage = usage or Usage(input_tokens=0, output_tokens=0)
        return cls(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_input_tokens),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        )


class CompletionChoice(BaseModel):
    """One choice as OpenAI writes it: `logprobs`, and the message's `content` and `refusal`, always present
    (null when there are none); the message's other fields (`tool_calls`, `annotations`...) only when set."""

    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None
    finish_reason: str

    @classmethod
    def of(cls, choice: Choice) -> CompletionChoice:
        return cls(
            index=choice.index, message=choice.message, logprobs=choice.logprobs, finish_reason=choice.finish_reason
        )

    # No return annotation: with one, pydantic would describe the message by it (an opaque dict).
    @field_serializer("message", mode="wrap")
    def _openai_message(self, message: AssistantMessage, handler: SerializerFunctionWrapHandler):
        fields = {key: value for key, value in handler(message).items() if value is not None}
        return {"role": "assistant", "content": message.content, "refusal": message.refusal, **fields}


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    service_tier: str | None = None

    @classmethod
    def of(cls, job_id: str, created: int, model: str, result: JobResult, usage: Usage | None) -> ChatCompletion:
        return cls(
            id=job_id,
            created=created,
            model=model,
            choices=[CompletionChoice.of(choice) for choice in result.choices],
            usage=CompletionUsage.of(usage),
            system_fingerprint=result.system_fingerprint,
            service_tier=result.service_tier,
        )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kintsugi"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def chunk(
    completion_id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    *,
    usage: CompletionUsage | None = None,
    system_fingerprint: str | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed answer."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if system_fingerprint:
        body["system_fingerprint"] = system_fingerprint
    if usage is not None:
        body["usage"] = usage.model_dump()
    return body
