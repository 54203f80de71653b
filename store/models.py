"""SQLModel tables of the app database. Temporal owns job state; these hold what Temporal does not."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, Index, LargeBinary, UniqueConstraint, true
from sqlalchemy.types import TypeDecorator
from sqlmodel import AutoString, Field, SQLModel

from schemas.tenants import Role

DEFAULT_TENANT_ID = "default"
"""The built-in tenant the admin key acts as; the initial migration creates it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random, URL-safe id with a type prefix (`ten_…`, `key_…`) so ids are recognisable in logs."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that always hands back aware UTC datetimes, on both dialects.

    PostgreSQL stores TIMESTAMPTZ; SQLite has no time zones, so values are stored as UTC and UTC is
    attached again on read. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tz_column(*, nullable: bool = False) -> Any:
    return Column(UTCDateTime(), nullable=nullable)


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(default_factory=lambda: new_id("ten"), primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    role: Role = Field(sa_type=AutoString(16))
    name: str | None = Field(default=None, max_length=200)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    """sha256 hex of the key; the plaintext is shown once and never stored."""
    prefix: str = Field(max_length=8)
    """The key's first 8 characters, to tell keys apart in listings."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    revoked_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))
    policy_id: str | None = Field(default=None, max_length=64)
    """The policy this key runs under; None: its tenant's default policy (or the built-in one)."""


class ModelCostLog(SQLModel, table=True):
    """One row per billed model call; `idempotency_key` keeps a retried postflight from billing twice."""

    __tablename__ = "model_cost_logs"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, index=True, max_length=255)
    job_id: str = Field(index=True, max_length=255)
    tenant_id: str = Field(index=True, max_length=64)
    provider: str = Field(max_length=100)
    model: str = Field(max_length=200)
    input_tokens: int
    """Every input token, cached or not."""
    output_tokens: int
    cached_input_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `input_tokens`, those read from the provider's prompt cache."""
    cache_write_input_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `input_tokens`, those written to the provider's prompt cache (Anthropic bills them apart)."""
    reasoning_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `output_tokens`, those spent on reasoning."""
    cost_usd: float | None = None
    """None when the price is unknown (`price_known` false): an unpriced call is never recorded as free."""
    key_id: str | None = Field(default=None, max_length=64)
    """The API key that submitted the job; None for the environment's admin key and rows billed before keys
    were recorded."""
    call_seq: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    """The job's call number this row bills (`cost_key`)."""
    route: str | None = Field(default=None, max_length=200)
    """The model alias the app sent (the route); `provider`/`model` are the deployment that answered."""
    price_known: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    price_source: str | None = Field(default=None, max_length=32)
    """`override` (routes file), `catalogue` (litellm's file, with the entry's name in `price_name`) or `unknown`."""
    price_name: str | None = Field(default=None, max_length=200)
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    reasoning_per_mtok: float | None = None
    """The unit prices (USD per million tokens) this row was billed at; tiered prices as applied."""
    upstream_latency_ms: float | None = None
    outcome: str = Field(default="success", max_length=16, sa_column_kwargs={"server_default": "success"})
    """`success`, `cache_hit` (no provider call: cost 0, `saved_usd` what the call would have cost),
    `refused` or `failed_billed`."""
    saved_usd: float | None = None
    policy_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (Index("ix_model_cost_logs_tenant_created", "tenant_id", "created_at"),)


class EventLog(SQLModel, table=True):
    """The outbox: every lifecycle event, once. Each sink (`schemas.exports.SinkName`) has its own delivery
    column, set by the export workflow once that sink accepted the row (or the row was not for it)."""

    __tablename__ = "event_logs"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True, index=True, max_length=255)
    tenant_id: str = Field(index=True, max_length=64)
    job_id: str = Field(index=True, max_length=255)
    key_id: str | None = Field(default=None, max_length=64)
    """The API key whose job wrote it (abuse features are per key); None for the admin key and older rows."""
    type: str = Field(index=True, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    warehouse_exported_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))
    langfuse_exported_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))
    otlp_exported_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))

    __table_args__ = (
        Index("ix_event_logs_tenant_key_created", "tenant_id", "key_id", "created_at"),
        Index("ix_event_logs_tenant_created", "tenant_id", "created_at"),
        # The export workflow's query: a sink's pending rows, oldest first.
        Index("ix_event_logs_pending_warehouse", "warehouse_exported_at", "id"),
        Index("ix_event_logs_pending_langfuse", "langfuse_exported_at", "id"),
        Index("ix_event_logs_pending_otlp", "otlp_exported_at", "id"),
    )


class PromptSignature(SQLModel, table=True):
    """One job's prompt, as similarity sees it: its exact hash and MinHash signature (`domain.similarity`)."""

    __tablename__ = "prompt_signatures"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(unique=True, max_length=255)
    tenant_id: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)
    exact_hash: str = Field(max_length=64)
    signature: list[int] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (Index("ix_prompt_signatures_tenant_hash", "tenant_id", "exact_hash"),)


class PromptBand(SQLModel, table=True):
    """One LSH band of a prompt's signature: prompts sharing a band hash are near-duplicate candidates."""

    __tablename__ = "prompt_bands"

    id: int | None = Field(default=None, primary_key=True)
    band_key: str = Field(unique=True, max_length=300)
    """`{job_id}:{band}`: a retried postflight writes each band once."""
    tenant_id: str = Field(max_length=64)
    band_hash: str = Field(max_length=64)
    """The band's index and hash, hashed together (`domain.similarity`)."""
    job_id: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (Index("ix_prompt_bands_tenant_band", "tenant_id", "band_hash"),)


class PromptSimilarityLog(SQLModel, table=True):
    """A job whose prompt matched an earlier one of its tenant (exactly or nearly)."""

    __tablename__ = "prompt_similarity_logs"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(unique=True, max_length=255)
    matched_job_id: str = Field(max_length=255)
    score: float
    method: str = Field(max_length=16)
    """`exact` or `minhash`."""
    tenant_id: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (Index("ix_prompt_similarity_logs_tenant_key_created", "tenant_id", "key_id", "created_at"),)


class ResponseCacheEntry(SQLModel, table=True):
    """A successful answer kept for identical or near-identical requests of the same tenant and route."""

    __tablename__ = "response_cache"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(unique=True, max_length=255)
    """The job whose answer this is; its prompt's signature and bands are in `prompt_signatures`/`prompt_bands`."""
    tenant_id: str = Field(max_length=64)
    route: str = Field(max_length=200)
    fingerprint: str = Field(max_length=64)
    """Everything but the prompt that must match: route, tools, response format, parameters (`domain.cache_keys`)."""
    exact_hash: str = Field(max_length=64)
    """The prompt's (`PromptPrint.exact_hash`); a near-identical prompt is found through `prompt_signatures`."""
    answer: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """The `JobResult`, as JSON."""
    usage: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    provider: str = Field(max_length=100)
    model: str = Field(max_length=200)
    cost_usd: float | None = None
    """What the answer cost when it was made: a hit saves it again."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    expires_at: datetime = Field(sa_column=_tz_column())

    __table_args__ = (Index("ix_response_cache_lookup", "tenant_id", "route", "fingerprint", "exact_hash"),)


GLOBAL_SCOPE = ""
"""`feature_flags.tenant_id` of a flag's global value (a tenant's row overrides it)."""


class FeatureFlag(SQLModel, table=True):
    """A flag's global value (`tenant_id` = GLOBAL_SCOPE) or one tenant's override; absent: the default."""

    __tablename__ = "feature_flags"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    tenant_id: str = Field(default=GLOBAL_SCOPE, max_length=64)
    enabled: bool
    rollout_percent: int = Field(default=100, sa_column_kwargs={"server_default": "100"})
    """Of the tenants this row covers, the share it is enabled for, stable per tenant (`domain.flags`)."""
    updated_by: str | None = Field(default=None, max_length=64)
    """The key id of who set it; None for the environment's admin key."""
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (UniqueConstraint("key", "tenant_id", name="uq_feature_flags_key_tenant"),)


class AuditLog(SQLModel, table=True):
    """Who changed what: flags now; policies, keys and the rest as they come."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    """The tenant the change applies to (GLOBAL_SCOPE for a platform-wide change)."""
    actor_tenant_id: str = Field(max_length=64)
    actor_key_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)
    """`flag.set`, …"""
    target: str = Field(max_length=200)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())


class Policy(SQLModel, table=True):
    """A tenant's policy: its current document and version (every version is in `policy_versions`)."""

    __tablename__ = "policies"

    id: str = Field(default_factory=lambda: new_id("pol"), primary_key=True, max_length=64)
    tenant_id: str = Field(index=True, max_length=64)
    name: str = Field(max_length=200)
    is_default: bool = False
    """Applies to every key of the tenant that names no other policy; at most one per tenant."""
    version: int = 1
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_policies_tenant_name"),)


class PolicyVersion(SQLModel, table=True):
    """One version of a policy's document, as written; never changed afterwards."""

    __tablename__ = "policy_versions"

    id: int | None = Field(default=None, primary_key=True)
    policy_id: str = Field(max_length=64)
    version: int
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_by: str | None = Field(default=None, max_length=64)
    """The key id of who wrote it; None for the environment's admin key."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())

    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_versions_policy_version"),)


class RateLimitBucket(SQLModel, table=True):
    """A token bucket's level when it was last touched (`domain.rate_limits`); the capacity comes from the policy."""

    __tablename__ = "rate_limit_buckets"

    key: str = Field(primary_key=True, max_length=255)
    """`{rpm|tpm}:{key|tenant}:{id}`."""
    tokens: float
    updated_at: float
    """Unix seconds: bucket arithmetic runs inside one SQL statement on both dialects."""


class BudgetCounter(SQLModel, table=True):
    """A tenant's spend in one UTC day or month: `committed_usd` is settled spend plus open reservations."""

    __tablename__ = "budget_counters"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    period: str = Field(max_length=8)
    """`day` or `month`."""
    period_start: str = Field(max_length=10)
    """`2026-11-26` or `2026-11` (UTC)."""
    committed_usd: float = 0.0
    spent_usd: float = 0.0

    __table_args__ = (UniqueConstraint("tenant_id", "period", "period_start", name="uq_budget_counters_period"),)


class BudgetReservation(SQLModel, table=True):
    """What one job reserved of its tenant's budgets; settled with the real cost or released, once."""

    __tablename__ = "budget_reservations"

    key: str = Field(primary_key=True, max_length=300)
    """`{job_id}:{preflight number}`, derived by the workflow: a retried preflight reserves once."""
    job_id: str = Field(index=True, max_length=255)
    tenant_id: str = Field(max_length=64)
    day: str = Field(max_length=10)
    month: str = Field(max_length=10)
    amount_usd: float
    state: str = Field(default="reserved", max_length=16)
    """`reserved`, `settled` or `released`."""
    settled_usd: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())


class AbuseModel(SQLModel, table=True):
    """A tenant's trained abuse model (`domain.abuse`), replaced by each training run."""

    __tablename__ = "abuse_models"

    tenant_id: str = Field(primary_key=True, max_length=64)
    trained_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    samples: int
    model: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The serialised model (`domain.abuse.model`)."""
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Feature names and the training scores' spread, to map a raw score to 0..1."""
