"""Inputs and outputs of the job activities (preflight, call_model, postflight, record_events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from schemas.contracts import EventType
from schemas.decisions import OutputVerdict, PolicyDecision
from schemas.embeddings import EmbeddingInput
from schemas.jobs import JobKind, JobParams, JobResult, Usage
from schemas.messages import ChatMessage
from schemas.policies import OutputGuardrails
from schemas.pricing import ResolvedPrice
from schemas.routes import CallMode, DeploymentType, RetryConfig


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
    key_id: str | None = None
    """Whose policy applies (the key's own, else its tenant's default)."""
    preflight_seq: int = 1
    """Counts the job's preflights (a reroute plans again): names its budget reservation."""


SimilarityMethod = Literal["exact", "minhash"]
"""How a prompt matched an earlier one: the same normalised text, or a MinHash estimate over the threshold."""


class CachedAnswer(BaseModel):
    """An earlier answer of the tenant's response cache that serves this job instead of a provider."""

    job_id: str
    """The job whose answer it is."""
    answer: JobResult
    usage: Usage
    """What the answer cost in tokens when it was made (no tokens are spent now)."""
    provider: str
    model: str
    saved_usd: float | None
    """What the call would have cost (the cached job's cost); None when its price was unknown."""
    score: float
    method: SimilarityMethod
    """`minhash`: a near-identical prompt, `score` its estimated similarity."""


class PreflightOutput(BaseModel):
    deployments: list[PlannedDeployment]
    flags: dict[str, bool] = {}
    """The flags this job's bookkeeping follows, as preflight read them (the workflow reads no database);
    absent in histories recorded before flags, where everything ran as on."""
    cached: CachedAnswer | None = None
    """A response-cache hit: the job answers with it and calls no provider."""
    decision: PolicyDecision | None = None
    """The policy's verdict (revision 4); None in older histories and when the policy engine is off."""
    output_rules: OutputGuardrails | None = None
    """The policy's output guardrails, for the call to apply where the answer arrives; None: none apply."""
    similarity_threshold: float | None = None
    cache_ttl_s: float | None = None
    """The policy's `similarity` and `cache` settings for postflight; None: the environment's."""
    budget_key: str | None = None
    """The budget reservation preflight made (`{job_id}:{preflight_seq}`); postflight settles it."""


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
    output_rules: OutputGuardrails | None = None
    """Checked on the answer before it leaves the activity, so a redacted answer never enters history."""


class CallModelOutput(BaseModel):
    """One upstream call's answer, whole (`JobResult`), with what it used and took."""

    answer: JobResult
    usage: Usage
    latency_ms: float
    attempt: int = 1
    """The activity attempt that succeeded, so the job can report how many calls it took."""
    verdict: OutputVerdict | None = None
    """The output guardrails' verdict (the answer is already redacted); a refusal fails the job, billed."""

    @model_validator(mode="before")
    @classmethod
    def _from_text_answer(cls, value: Any) -> Any:
        # Histories recorded before answers were carried whole hold `{content, finish_reason, ...}`.
        if isinstance(value, dict) and "answer" not in value and "content" in value:
            answer = {"content": value["content"], "finish_reason": value.get("finish_reason")}
            return {**value, "answer": answer}
        return value


PostflightOutcome = Literal["success", "cache_hit", "failed_billed"]
"""`failed_billed`: the provider answered (and billed) but an output guardrail refused the answer."""


class PostflightInput(BaseModel):
    """Not recorded in history (a local activity's marker holds its result only), so it may carry the prompt
    and the answer that similarity and the response cache need."""

    job_id: str
    tenant_id: str
    key_id: str | None = None
    route: str | None = None
    """The model alias the job ran on."""
    call_seq: int
    deployment: PlannedDeployment
    usage: Usage
    latency_ms: float | None = None
    outcome: PostflightOutcome = "success"
    cached: CachedAnswer | None = None
    """Set for a cache hit: the answer reused (`outcome="cache_hit"`)."""
    flags: dict[str, bool] = {}
    """`PreflightOutput.flags`; a flag absent (a job recorded before flags) keeps its default."""
    kind: JobKind = "chat"
    messages: list[ChatMessage] = []
    params: JobParams = JobParams()
    answer: JobResult | None = None
    """The answer to keep in the response cache (when the tenant has it on and the request is cacheable)."""
    events: list[JobEvent] = []
    policy_version: int | None = None
    similarity_threshold: float | None = None
    cache_ttl_s: float | None = None
    budget_key: str | None = None
    """Settle this reservation with the call's cost."""
    admitted_tokens: int | None = None
    """`JobInput.admitted_tokens`: settle the TPM buckets with the real usage."""


class PostflightOutput(BaseModel):
    cost_usd: float | None
    """None: the deployment's price is unknown (the call is recorded as unpriced, never as free)."""


class RecordEventsInput(BaseModel):
    job_id: str
    tenant_id: str
    events: list[JobEvent]
    key_id: str | None = None
    release_budget: bool = False
    """The job ends without an answer: give back what it reserved of its tenant's budgets."""
