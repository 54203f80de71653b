"""Rate limits as token buckets that refill continuously (DESIGN.md, "Policy document"): the pure arithmetic.

A bucket holds at most `capacity` (the policy's per-minute number) and refills `capacity / 60` every second. A
request costs 1 from each RPM bucket and its estimated tokens from each TPM bucket; it is admitted only when
every bucket it touches can pay (all or nothing). The backends (`store.rate_limits`) keep each bucket's level and
when it was last touched; everything they decide is decided here, from numbers they pass in, so the database
backend and the arithmetic the Redis script mirrors can be tested without either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from domain.tokens import estimate_prompt_tokens, estimate_text_tokens
from schemas.embeddings import EmbeddingInput
from schemas.jobs import JobCreate
from schemas.messages import ChatMessage
from schemas.policies import RateRules

LimitKind = Literal["rpm", "tpm"]
Scope = Literal["key", "tenant"]

SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class BucketRule:
    """One bucket a policy asks for: which limit, whose, and its size."""

    kind: LimitKind
    scope: Scope
    owner: str
    """The key id (scope `key`) or the tenant id (scope `tenant`)."""
    tenant_id: str
    """The tenant every bucket of a request belongs to (a key's too): Redis keeps them on one shard by it."""
    capacity: int
    """The policy's per-minute number: the most the bucket holds, and what it refills in a minute."""

    @property
    def key(self) -> str:
        """Where the bucket is stored: `{rpm|tpm}:{key|tenant}:{id}` (`store.models.RateLimitBucket.key`)."""
        return f"{self.kind}:{self.scope}:{self.owner}"

    @property
    def refill_per_s(self) -> float:
        return self.capacity / SECONDS_PER_MINUTE


@dataclass(frozen=True)
class BucketCheck:
    """What one request asks of one bucket."""

    rule: BucketRule
    cost: float


@dataclass(frozen=True)
class BucketLevel:
    """A bucket as a decision left it: its level after refill, and after the charge when admitted."""

    check: BucketCheck
    level: float

    @property
    def wait_s(self) -> float:
        """Seconds until the bucket can pay for its check (0 when it can now)."""
        return seconds_until(self.level, need(self.check), self.check.rule)


@dataclass(frozen=True)
class Admission:
    """The verdict on one request across every bucket it touches."""

    admitted: bool
    levels: tuple[BucketLevel, ...]
    """Each bucket's level: after the charge when admitted, untouched (but refilled) when refused."""
    refused: BucketLevel | None = None
    """The bucket that refused (the one that takes longest to recover when several did)."""

    @property
    def tightest(self) -> BucketLevel | None:
        """The bucket whose values go on the response: the refusing one, else the one with the least of its
        capacity left."""
        if self.refused is not None:
            return self.refused
        return min(self.levels, key=lambda b: b.level / b.check.rule.capacity, default=None)


NOTHING_TO_CHECK = Admission(admitted=True, levels=())


def bucket_rules(rate: RateRules, *, tenant_id: str, key_id: str | None) -> tuple[BucketRule, ...]:
    """The buckets a policy's `rate` section asks for. A key id of None (the environment's admin key) has no
    key buckets: only the tenant-wide limits apply to it."""
    wanted: list[tuple[LimitKind, Scope, str | None, int | None]] = [
        ("rpm", "key", key_id, rate.rpm),
        ("tpm", "key", key_id, rate.tpm),
        ("rpm", "tenant", tenant_id, rate.tenant_rpm),
        ("tpm", "tenant", tenant_id, rate.tenant_tpm),
    ]
    return tuple(
        BucketRule(kind, scope, owner, tenant_id, capacity)
        for kind, scope, owner, capacity in wanted
        if owner is not None and capacity is not None
    )


def tpm_rules(rate: RateRules, *, tenant_id: str, key_id: str | None) -> list[BucketRule]:
    """The TPM buckets of a policy, in key order: the ones settling with the real usage corrects."""
    rules = bucket_rules(rate, tenant_id=tenant_id, key_id=key_id)
    return sorted((r for r in rules if r.kind == "tpm"), key=lambda r: r.key)


def bucket_checks(rules: Iterable[BucketRule], tokens: int) -> tuple[BucketCheck, ...]:
    """What one request costs each bucket: 1 request from an RPM bucket, `tokens` from a TPM bucket."""
    return tuple(BucketCheck(rule, 1.0 if rule.kind == "rpm" else float(tokens)) for rule in rules)


def tpm_charged(checks: Iterable[BucketCheck]) -> int:
    """The tokens an admitted request took from its TPM buckets (0 when no TPM limit applies): what settling
    with the real usage corrects."""
    return max((int(c.cost) for c in checks if c.rule.kind == "tpm"), default=0)


def chat_tokens(messages: Sequence[ChatMessage], max_tokens: int | None) -> int:
    """A chat request's TPM cost before any provider has counted: its prompt's estimate plus the output it
    allows (`max_tokens`, or `max_completion_tokens`).

    A request that sets no output limit is charged its prompt only, not the model's output limit: charging, say,
    16k tokens for every such request would make a small TPM refuse what it could well serve. Settling with the
    real usage (`RateLimiter.settle`) charges the output once it is known, so the rate still holds over time.
    """
    return estimate_prompt_tokens(messages) + (max_tokens or 0)


def embedding_tokens(embedding: EmbeddingInput) -> int:
    """An embedding request's TPM cost: its texts' estimate; a pre-tokenised input counts its tokens exactly."""
    value = embedding.input
    if isinstance(value, list) and value and isinstance(value[0], int):
        return len(value)
    if isinstance(value, list) and value and isinstance(value[0], list):
        return sum(len(tokens) for tokens in value if isinstance(tokens, list))
    return sum(estimate_text_tokens(text) for text in embedding.texts())


def job_tokens(job: JobCreate) -> int:
    """A job's TPM cost: `embedding_tokens` for an embedding job, `chat_tokens` for a chat one."""
    if job.embedding is not None:
        return embedding_tokens(job.embedding)
    return chat_tokens(job.messages, job.params.max_tokens or job.params.max_completion_tokens)


def refill(level: float, updated_at: float, now: float, rule: BucketRule) -> tuple[float, float]:
    """A stored bucket's (level, time) at `now`: refilled for the time since it was touched, never above
    capacity (also after the policy lowered it).

    A `now` earlier than the stored time (another replica's clock runs ahead) refills nothing and keeps the later
    time, so the same interval is never refilled twice.
    """
    elapsed = max(0.0, now - updated_at)
    return min(float(rule.capacity), level + elapsed * rule.refill_per_s), max(updated_at, now)


def need(check: BucketCheck) -> float:
    """The level a bucket must hold to pay for `check`.

    A cost above capacity (a request asking for more tokens than the TPM) would never fit; it is admitted from a
    full bucket instead, which it drives below zero, so later requests wait until the average rate is back
    within the limit rather than the request being refused forever.
    """
    return min(check.cost, float(check.rule.capacity))


def seconds_until(level: float, wanted: float, rule: BucketRule) -> float:
    """Seconds of refill until a bucket at `level` holds `wanted`."""
    return max(0.0, wanted - level) / rule.refill_per_s


def decide(checks: Sequence[BucketCheck], levels: Sequence[float]) -> Admission:
    """All or nothing: charge every bucket when each can pay, else none.

    Args:
        checks: what the request asks of each bucket.
        levels: each bucket's level now, refilled (`refill`), in the order of `checks`.
    """
    refusing = [BucketLevel(c, level) for c, level in zip(checks, levels, strict=True) if level < need(c)]
    if refusing:
        untouched = tuple(BucketLevel(c, level) for c, level in zip(checks, levels, strict=True))
        return Admission(admitted=False, levels=untouched, refused=max(refusing, key=lambda b: b.wait_s))
    charged = tuple(BucketLevel(c, level - c.cost) for c, level in zip(checks, levels, strict=True))
    return Admission(admitted=True, levels=charged)


def settled(level: float, delta: float, rule: BucketRule) -> float:
    """A bucket's level after settling: `delta` more tokens taken (or, negative, given back), never above
    capacity; below zero is allowed, which delays later requests."""
    return min(float(rule.capacity), level - delta)


def retry_after_s(bucket: BucketLevel) -> int:
    """`Retry-After`: whole seconds (at least 1) until the refusing bucket can pay."""
    return max(1, math.ceil(bucket.wait_s))


def reset_s(bucket: BucketLevel) -> int:
    """`X-RateLimit-Reset`: whole seconds until the bucket is full again."""
    return math.ceil(seconds_until(bucket.level, float(bucket.check.rule.capacity), bucket.check.rule))


def rate_limit_headers(admission: Admission) -> dict[str, str]:
    """The `X-RateLimit-*` headers of the bucket that refused (with `Retry-After`), else of the tightest one;
    none when no bucket applies."""
    bucket = admission.tightest
    if bucket is None:
        return {}
    headers = {
        "X-RateLimit-Limit": str(bucket.check.rule.capacity),
        "X-RateLimit-Remaining": str(max(0, math.floor(bucket.level))),
        "X-RateLimit-Reset": str(reset_s(bucket)),
    }
    if not admission.admitted:
        headers["Retry-After"] = str(retry_after_s(bucket))
    return headers


def refusal_message(bucket: BucketLevel) -> str:
    rule = bucket.check.rule
    unit = "requests" if rule.kind == "rpm" else "tokens"
    whose = "this key" if rule.scope == "key" else "this tenant"
    return f"rate limit reached: {rule.capacity} {unit} per minute for {whose}; retry in {retry_after_s(bucket)} s"
