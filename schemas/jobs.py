"""The job: what the API accepts, what the workflow carries and reports, and the repair Update."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from schemas.embeddings import Embedding, EmbeddingInput
from schemas.messages import AsSent, AssistantMessage, ChatMessage, ResponseFormat, Tool, ToolCall
from schemas.routes import DeploymentType

JobStatus = Literal["queued", "running", "parked", "succeeded", "failed", "cancelled"]
OnExhausted = Literal["fail", "park"]
JOB_REVISION = 4
"""The job workflow's current revision (`JobInput.revision`). 2: statuses that visibility already knows
(every final one, and `running` for a job started as running) are not upserted. 3: a response-cache hit
found by preflight skips the upstream call. 4: the tenant's policy decides (refusals, redaction, budgets)."""
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
JobKind = DeploymentType
"""What a job asks for: a chat completion or embeddings; only a route of deployments of that type serves it."""


class JobParams(AsSent):
    """What the upstream model is asked to do besides the messages: OpenAI's Chat Completions parameters.

    Parameters Kintsugi does not declare are kept (`extra="allow"`) and forwarded to OpenAI-kind providers
    unchanged; a provider that cannot honour a parameter is skipped by the route plan (and the request is
    refused with a 400 naming it when no deployment of the route can).
    """

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
    """Every input token, cached or not, as OpenAI counts them (Anthropic's three counts summed)."""
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

    @field_validator("finish_reason", mode="before")
    @classmethod
    def _finished(cls, value: Any) -> Any:
        # Some OpenAI-compatible servers leave it null on a complete answer: that answer did stop.
        return "stop" if value is None else value


class JobResult(BaseModel):
    """The answer, whole: every choice (`n`), with tool calls, refusals, annotations and logprobs."""

    choices: list[Choice] = []
    """Empty for an embedding job."""
    system_fingerprint: str | None = None
    service_tier: str | None = None
    """The tier that served the answer, as the provider reported it (OpenAI's `service_tier`)."""
    embeddings: list[Embedding] | None = None
    """An embedding job's vectors, one per input in order."""

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

    @property
    def content(self) -> str | None:
        """The first choice's text."""
        return self.choices[0].message.content if self.choices else None

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    @property
    def tool_calls(self) -> list[ToolCall] | None:
        return self.choices[0].message.tool_calls if self.choices else None


class JobResultView(JobResult):
    """A job's answer as the job API shows it: the first choice's text, finish reason and tool calls at the
    top too, for readers that want just the answer (kept out of workflow payloads, where they are copies)."""

    model_config = ConfigDict(serialize_by_alias=True)

    @computed_field(alias="content")  # type: ignore[prop-decorator]
    @property
    def content_(self) -> str | None:
        return self.content

    @computed_field(alias="finish_reason")  # type: ignore[prop-decorator]
    @property
    def finish_reason_(self) -> str | None:
        return self.finish_reason

    @computed_field(alias="tool_calls")  # type: ignore[prop-decorator]
    @property
    def tool_calls_(self) -> list[ToolCall] | None:
        return self.tool_calls


class JobError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default={}, exclude_if=lambda details: not details)
    """Left out when empty (most errors have none). What a refusal names (`details.guardrail`, `details.kinds`, a
    budget's period, …), never prompt text."""


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
    kind: JobKind = "chat"
    embedding: EmbeddingInput | None = None
    """What an embedding job embeds (`kind: embedding`; its `messages` are empty)."""
    relay_url: str | None = None
    """Where the worker streams the answer's chunks as they arrive: the API replica holding the client's
    connection (`POST {relay_url}/internal/relay/{job_id}`). None when nobody is listening live."""
    synchronous: bool = False
    """Someone waits for the answer (a chat completion, an embedding, `Prefer: wait`): `call: auto` makes its
    calls local activities, in the workflow task, rather than activities on the shared workers."""
    key_id: str | None = None
    """The API key that submitted the job (cost rows and similarity are per key); None for the environment's
    admin key."""
    admitted_tokens: int | None = None
    """What the API's rate limiter charged the TPM buckets for this job (an estimate); postflight settles the
    difference with the real usage. None: no TPM limit applied."""
    revision: int = 1
    """Which commands the workflow issues for this job (`JOB_REVISION` for every new one). A change to them
    takes a new revision and keeps the old path, so a deploy never breaks a job in flight and no patch marker
    is spent; absent (1) in histories recorded before revisions."""


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
    cost_usd: float | None = 0.0
    """None when the deployment that answered has no known price (the call is recorded as unpriced)."""
    cache_hit: bool = False
    """The answer came from the tenant's response cache: no provider was called, the cost is 0."""
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
    messages: list[ChatMessage] = Field(default=[], max_length=1000)
    params: JobParams = JobParams()
    metadata: dict[str, str] = Field(default={}, max_length=50)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    on_exhausted: OnExhausted = "fail"
    kind: JobKind = "chat"
    embedding: EmbeddingInput | None = None
    """What to embed, for `kind: embedding` (OpenAI's embeddings request without `model`)."""
    tools: list[Tool] | None = Field(default=None, max_length=128)
    """Shorthand for `params.tools`: the job carries them there; give them in one place or the other."""
    response_format: ResponseFormat | None = None
    """Shorthand for `params.response_format`, like `tools`."""

    @model_validator(mode="after")
    def _lift_into_params(self) -> JobCreate:
        lifted = {name: getattr(self, name) for name in ("tools", "response_format") if getattr(self, name) is not None}
        for name in lifted:
            if getattr(self.params, name) is not None:
                raise ValueError(f"{name}: give it at the top level or in params, not both")
        if lifted:
            self.params = self.params.model_copy(update=lifted)
        return self

    @model_validator(mode="after")
    def _asks_for_one_thing(self) -> JobCreate:
        if self.kind == "chat":
            if not self.messages:
                raise ValueError("messages: a chat job needs at least one message")
            if self.embedding is not None:
                raise ValueError("embedding: only for kind embedding")
        else:
            if self.embedding is None:
                raise ValueError("embedding: required for kind embedding")
            if self.messages:
                raise ValueError("messages: an embedding job takes `embedding.input`, not messages")
        return self


class Job(JobState):
    """The job resource the API returns: the workflow's state, with its id and the server's start time."""

    id: str
    created_at: datetime
    result: JobResultView | None = None  # type: ignore[assignment]  # the same answer, with its summary


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
