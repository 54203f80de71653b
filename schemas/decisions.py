"""What the policy engine decides about a job (`domain.policy.evaluate`): carried from preflight to the
workflow as data, shown in the trace, and answered by `POST /v1/policies/evaluate`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from schemas.messages import ChatMessage

GuardStage = Literal["input", "output"]
AbuseAction = Literal["flag", "throttle", "block"]


class Finding(BaseModel):
    """Where a guardrail found something: never the matched text, only its kind and offsets."""

    kind: str
    """`email`, `card`, `api_key`, `banned_term`, `instruction_override`, …"""
    message: int | None = None
    """The index of the message (input), or None for the answer (output)."""
    part: int | None = None
    """The index of the text part within a message whose content is a list of parts; None for a string."""
    start: int
    end: int


class GuardrailOutcome(BaseModel):
    """One guardrail that fired (a guardrail that passed is listed in `PolicyDecision.checked` only)."""

    guardrail: str
    """`pii`, `secrets`, `banned_terms`, `injection`, `max_chars`, `json`."""
    stage: GuardStage
    action: Literal["block", "redact", "log", "fail"]
    kinds: list[str]
    findings: list[Finding] = []
    score: float | None = None
    """The injection detector's score (0..1)."""


class Refusal(BaseModel):
    """Why the job may not run (or its answer may not be returned): a code of DESIGN.md's error table."""

    code: str
    message: str
    details: dict[str, Any] = {}


class PolicyDecision(BaseModel):
    """Preflight's verdict on a request under its tenant's policy."""

    policy_id: str | None = None
    """None: the built-in default policy."""
    policy_version: int | None = None
    refusal: Refusal | None = None
    reasons: list[str] = []
    """Human-readable, one per rule that refused, redacted, logged or flagged."""
    guardrails: list[GuardrailOutcome] = []
    checked: list[str] = []
    """The guardrails that ran (`input.pii`, …), whether they fired or not."""
    skipped: list[str] = []
    """Features a flag turned off for this job (`enable_guardrails_ai`, …), so the trace can say so."""
    redacted_messages: list[ChatMessage] | None = None
    """The messages with what `redact` rules found replaced; None when nothing was redacted."""
    estimated_cost_usd: float | None = None
    """Input tokens (estimated from the text) * input price + max output tokens * output price, at the dearest
    deployment of the plan; None when no deployment's price is known."""
    estimated_tokens: int = 0
    """Estimated input tokens of the request (`domain.tokens`)."""
    max_tokens: int | None = None
    """The output cap the call runs with when the policy sets one (`limits.max_output_tokens`) and the request
    does not."""
    excluded_deployments: list[str] = []
    """`provider/model` of the plan's deployments outside the policy's regions (the route plan skips them)."""
    abuse_score: float | None = None
    abuse_action: AbuseAction | None = None
    budget_reserved_usd: float | None = None
    """What preflight reserved of the tenant's budgets (settled by postflight, released if the job fails)."""

    @property
    def allowed(self) -> bool:
        return self.refusal is None


class OutputVerdict(BaseModel):
    """The output guardrails' verdict on an answer (run where the answer arrives, before it enters history)."""

    guardrails: list[GuardrailOutcome] = []
    checked: list[str] = []
    refusal: Refusal | None = None
    redacted: bool = False
