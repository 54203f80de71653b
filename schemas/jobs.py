"""The job: what the API accepts, what the workflow carries and reports, and the repair Update."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from schemas.messages import AssistantMessage, ChatMessage, ResponseFormat, Tool, ToolCall

JobStatus = Literal["queued", "running", "parked", "succeeded", "failed", "cancelled"]
OnExhausted = Literal["fail", "park"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobParams(BaseModel):
    """What the upstream model is asked to do besides the messages: OpenAI's Chat Completions parameters.

    Parameters Kintsugi does not declare are kept (`extra="allow"`) and forwarded to OpenAI-kind providers
    unchanged; a provider that cannot honour a parameter is skipped by the route plan (and the request is
    refused with a 400 naming it when no deployment of the route can).
    """

    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    """Kept apart from `max_tokens`: reasoning models refuse `max_tokens`."""
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    reasoning_effort: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    service_tier: str | None = None
    prediction: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    """OpenAI's own `metadata` (for stored completions); the job's metadata is `JobCreate.metadata`."""

    def declared(self) -> dict[str, Any]:
        """The parameters set, declared or not, as the provider's JSON (None left out)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class Usage(BaseModel):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    """Input tokens served from the provider's prompt cache (OpenAI `cached_tokens`, Anthropic cache reads)."""
    cache_write_input_tokens: int = Field(default=0, ge=0)
    """Input tokens written to the provider's prompt cache (Anthropic `cache_creation_input_tokens`)."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Output tokens spent on reasoning (OpenAI `completion_tokens_details.reasoning_tokens`)."""


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    """As the provider gave it (`stop`, `length`, `tool_calls`, `content_filter`, ...)."""
    logprobs: dict[str, Any] | None = None


class JobResult(BaseModel):
    """The answer, whole: every choice (`n`), with tool calls, refusals, annotations and logprobs."""

    choices: list[Choice]
    system_fingerprint: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text_answer(cls, value: Any) -> Any:
        # Jobs finished before answers were carried whole recorded `{content, finish_reason}`.
        if isinstance(value, dict) and "choices" not in value and "content" in value:
            message = {"role": "assistant", "content": value["content"]}
            return {"choices": [{"message": message, "finish_reason": value.get("finish_reason") or "stop"}]}
        return value

    @classmethod
    def from_text(cls, content: str, finish_reason: str = "stop") -> JobResult:
        """A one-choice answer of plain text."""
        return cls(choices=[Choice(message=AssistantMessage(content=content), finish_reason=finish_reason)])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def content(self) -> str | None:
        """The first choice's text, for readers of the job API that want just the answer."""
        return self.choices[0].message.content if self.choices else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tool_calls(self) -> list[ToolCall] | None:
        return self.choices[0].message.tool_calls if self.choices else None


class JobError(BaseModel):
    code: str
    message: str


class DeploymentRef(BaseModel):
    provider: str
    model: str


class JobInput(BaseModel):
    """The workflow input. Recorded in history, so it holds no secrets."""

    tenant_id: str
    model: str
    messages: list[ChatMessage]
    params: JobParams = JobParams()
    metadata: dict[str, str] = {}
    on_exhausted: OnExhausted = "fail"
    park_timeout_s: float = Field(gt=0)


class JobState(BaseModel):
    """What the workflow knows of its job: the answer of its `state` query and its result."""

    status: JobStatus
    model: str
    deployment: DeploymentRef | None = None
    attempts: int = 0
    """Upstream calls made, over every deployment and every repair."""
    result: JobResult | None = None
    error: JobError | None = None
    usage: Usage | None = None
    cost_usd: float = 0.0
    metadata: dict[str, str] = {}
    finished_at: datetime | None = None


class RepairInput(BaseModel):
    """The `repair` Update of a parked job."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["retry", "reroute", "abort"]
    model: str | None = Field(default=None, min_length=1, max_length=200)
    """The route to move to; required for `reroute`."""


class RepairOutput(BaseModel):
    action: str
    status: JobStatus


class JobCreate(BaseModel):
    """`POST /v1/jobs`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    params: JobParams = JobParams()
    metadata: dict[str, str] = Field(default={}, max_length=50)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    on_exhausted: OnExhausted = "fail"


class Job(JobState):
    """The job resource the API returns: the workflow's state, with its id and the server's start time."""

    id: str
    created_at: datetime


class JobSummary(BaseModel):
    """One row of `GET /v1/jobs`, read from the visibility store alone."""

    id: str
    status: JobStatus
    model: str
    created_at: datetime
    finished_at: datetime | None = None


class JobList(BaseModel):
    data: list[JobSummary]
    next_cursor: str | None = None
