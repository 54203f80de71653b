"""The job: what the API accepts, what the workflow carries and reports, and the repair Update."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "parked", "succeeded", "failed", "cancelled"]
OnExhausted = Literal["fail", "park"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str = Field(max_length=400_000)
    name: str | None = Field(default=None, max_length=64)


class JobParams(BaseModel):
    """Sampling parameters passed to the upstream model."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None


class Usage(BaseModel):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)


class JobResult(BaseModel):
    content: str
    finish_reason: str


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
