"""The policy document (DESIGN.md, "Policy document") and the policy API's bodies.

Every field is optional: a missing field means "no limit". Unknown fields are refused, so a typo is a 422 that
names its path (`guardrails.input.pii.action`) instead of a rule silently not applied.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from schemas.decisions import GuardrailOutcome
from schemas.messages import ChatMessage

GuardAction = Literal["block", "redact", "log"]
"""`block` refuses the job (`guardrail_blocked`); `redact` replaces what was found (the provider, the history
and the trace see the redacted text); `log` only records a `guardrail.triggered` event."""
PiiKind = Literal["email", "phone", "card", "iban", "ssn", "ip"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "card", "iban", "ssn", "ip")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRules(_Section):
    allow: list[str] | None = None
    """Route names allowed; None: every route."""
    deny: list[str] = []


class Limits(_Section):
    max_input_tokens: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd_per_request: float | None = Field(default=None, ge=0)


class RateRules(_Section):
    """Token buckets: capacity `rpm`, refilled `rpm`/60 per second (TPM alike); per key, and tenant-wide."""

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    tenant_rpm: int | None = Field(default=None, gt=0)
    tenant_tpm: int | None = Field(default=None, gt=0)


class Budgets(_Section):
    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)


class PiiRule(_Section):
    action: GuardAction = "log"
    kinds: list[PiiKind] = list(PII_KINDS)


class SecretsRule(_Section):
    action: GuardAction = "block"


class BannedTermsRule(_Section):
    action: GuardAction = "block"
    terms: list[str] = Field(default=[], max_length=1000)

    @model_validator(mode="after")
    def _terms_not_blank(self) -> BannedTermsRule:
        if any(not term.strip() for term in self.terms):
            raise ValueError("a banned term may not be blank")
        return self


class InjectionRule(_Section):
    action: Literal["block", "log"] = "block"
    threshold: float = Field(default=0.8, ge=0, le=1)
    """A prompt scoring at least this (`domain.guardrails.injection`) is an injection attempt."""


class InputGuardrails(_Section):
    pii: PiiRule | None = None
    secrets: SecretsRule | None = None
    banned_terms: BannedTermsRule | None = None
    injection: InjectionRule | None = None
    max_chars: int | None = Field(default=None, gt=0)


class JsonRule(_Section):
    action: Literal["fail", "log"] = "fail"


class OutputGuardrails(_Section):
    pii: PiiRule | None = None
    secrets: SecretsRule | None = None
    banned_terms: BannedTermsRule | None = None
    json_: JsonRule | None = Field(default=None, alias="json")
    """When the request asked for JSON output (`response_format`): the answer must parse."""
    max_chars: int | None = Field(default=None, gt=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


class Guardrails(_Section):
    input: InputGuardrails = InputGuardrails()
    output: OutputGuardrails = OutputGuardrails()


class AbuseThresholds(_Section):
    """Abuse scores (0..1) at which a request is flagged (an event), throttled (`rate_limited`) or blocked
    (`abuse_blocked`)."""

    flag: float | None = Field(default=None, ge=0, le=1)
    throttle: float | None = Field(default=None, ge=0, le=1)
    block: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> AbuseThresholds:
        set_ = [
            (name, value)
            for name, value in (("flag", self.flag), ("throttle", self.throttle), ("block", self.block))
            if value is not None
        ]
        for (low_name, low), (high_name, high) in itertools.pairwise(set_):
            if low > high:
                raise ValueError(f"{low_name} ({low}) must not be above {high_name} ({high})")
        return self


class CacheRules(_Section):
    enabled: StrictBool = False
    ttl_s: float | None = Field(default=None, gt=0)
    near_duplicate: float | None = Field(default=None, gt=0, le=1)
    allow_temperature_above_zero: StrictBool = False


class SimilarityRules(_Section):
    threshold: float | None = Field(default=None, gt=0, le=1)


class PolicyDocument(_Section):
    models: ModelRules | None = None
    regions: list[str] | None = None
    """Regions a deployment may be in; None: any."""
    limits: Limits = Limits()
    rate: RateRules = RateRules()
    budgets: Budgets = Budgets()
    guardrails: Guardrails = Guardrails()
    abuse: AbuseThresholds | None = None
    """None: requests are not scored."""
    cache: CacheRules | None = None
    """None: the `enable_response_cache` flag and the environment's cache settings decide."""
    similarity: SimilarityRules | None = None


BUILT_IN_DEFAULT = PolicyDocument(
    guardrails=Guardrails(
        input=InputGuardrails(pii=PiiRule(action="log")), output=OutputGuardrails(pii=PiiRule(action="log"))
    )
)
"""What a tenant with no policy runs under: no limits, PII logged (DESIGN.md)."""


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    document: dict[str, Any]
    """Validated as a `PolicyDocument` by the route, so a malformed one is a 422 naming the document's path."""
    default: StrictBool = False
    tenant_id: str | None = Field(default=None, min_length=1, max_length=64)


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any]
    default: StrictBool | None = None
    """None: unchanged."""


class PolicyPublic(BaseModel):
    id: str
    tenant_id: str
    name: str
    default: bool
    version: int
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class PolicyList(BaseModel):
    data: list[PolicyPublic]
    next_cursor: str | None = None


class PolicyVersionPublic(BaseModel):
    version: int
    document: dict[str, Any]
    created_at: datetime
    created_by: str | None
    """The key id of who wrote it; None for the environment's admin key."""


class PolicyVersionList(BaseModel):
    data: list[PolicyVersionPublic]


class EvaluateRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    params: dict[str, Any] = {}
    """`max_tokens`, `response_format`, … as a job takes them (`JobParams`)."""


class PolicyEvaluate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str | None = Field(default=None, min_length=1, max_length=64)
    document: dict[str, Any] | None = None
    request: EvaluateRequestBody

    @model_validator(mode="after")
    def _one_policy(self) -> PolicyEvaluate:
        if (self.policy_id is None) == (self.document is None):
            raise ValueError("give exactly one of policy_id and document")
        return self


class PolicyEvaluation(BaseModel):
    """The dry run's answer: what preflight would decide about the request under the policy, now."""

    allowed: bool
    code: str | None = None
    """The refusal's code (DESIGN.md's error table) when not allowed."""
    message: str | None = None
    reasons: list[str]
    redacted_messages: list[ChatMessage]
    """The messages as the provider would get them: redacted where a `redact` rule found something."""
    estimated_cost_usd: float | None
    guardrails: list[GuardrailOutcome]
    skipped: list[str]
    """Features a flag turned off for the tenant (`enable_policy_engine`, …): the dry run skipped them too."""
