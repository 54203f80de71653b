"""Inputs and outputs of the job activities (preflight, call_model, postflight, record_events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, model_validator

from schemas.contracts import EventType
from schemas.embeddings import EmbeddingInput
from schemas.jobs import JobKind, JobParams, JobResult, Usage
from schemas.messages import ChatMessage
from schemas.routes import CallMode, DeploymentType, RetryConfig


class ResolvedPrice(BaseModel):
    input_per_mtok: float
    output_per_mtok: float
    known: bool
    """False when neither the routes file nor the catalogue has a price: the call is logged at 0."""


class PlannedDeployment(BaseModel):
    """One step of a route plan. Names a provider; its URL and key stay in the worker's settings."""

    provider: str
    model: str
    region: str
    price: ResolvedPrice
    timeout_s: float
    retry: RetryConfig
    call: CallMode = "activity"
    type: DeploymentType = "chat"


class JobEvent(BaseModel):
    """A lifecycle event; `key` makes writing it idempotent across activity retries and replays."""

    key: str
    """`schemas.contracts.event_key(...)`."""
    type: EventType
    at: datetime
    data: dict[str, Any] = {}


class PreflightInput(BaseModel):
    job_id: str
    tenant_id: str
    model: str
    kind: JobKind = "chat"
    params: JobParams = JobParams()
    messages: list[ChatMessage] = []
    """With `params`, what the plan's deployments must be able to honour (`domain.capabilities`)."""
    synchronous: bool = False
    """`JobInput.synchronous`: decides `call: auto` (`domain.routing.call_mode`)."""


class PreflightOutput(BaseModel):
    deployments: list[PlannedDeployment]


class CallModelInput(BaseModel):
    job_id: str
    call_seq: int
    """Counts upstream deployments tried by this job, derived by the workflow (never the attempt number)."""
    deployment: PlannedDeployment
    messages: list[ChatMessage]
    params: JobParams
    embedding: EmbeddingInput | None = None
    """Set for an embedding job (`JobInput.embedding`): the call embeds it instead of chatting."""
    relay_url: str | None = None
    """Stream the answer's chunks to this API replica as they arrive (`JobInput.relay_url`)."""


class CallModelOutput(BaseModel):
    """One upstream call's answer, whole (`JobResult`), with what it used and took."""

    answer: JobResult
    usage: Usage
    latency_ms: float
    attempt: int = 1
    """The activity attempt that succeeded, so the job can report how many calls it took."""

    @model_validator(mode="before")
    @classmethod
    def _from_text_answer(cls, value: Any) -> Any:
        # Histories recorded before answers were carried whole hold `{content, finish_reason, ...}`.
        if isinstance(value, dict) and "answer" not in value and "content" in value:
            answer = {"content": value["content"], "finish_reason": value.get("finish_reason")}
            return {**value, "answer": answer}
        return value


class PostflightInput(BaseModel):
    job_id: str
    tenant_id: str
    call_seq: int
    deployment: PlannedDeployment
    usage: Usage
    events: list[JobEvent] = []


class PostflightOutput(BaseModel):
    cost_usd: float


class RecordEventsInput(BaseModel):
    job_id: str
    tenant_id: str
    events: list[JobEvent]
