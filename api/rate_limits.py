"""Admission: RPM and TPM per key and tenant, checked by the routes right before a job starts.

The policy (`PolicyDocument.rate`) and the `enable_rate_limiting` flag come from the process's caches, so a
request whose policy sets no rate limit — the built-in default sets none — costs a cached policy lookup (~3 µs
measured) and touches no bucket at all. The buckets themselves are the deployment's (`store.rate_limits`), shared
by every API replica.
"""

from __future__ import annotations

import logging

from fastapi import Request, Response

from api.auth import Principal
from api.errors import ApiError
from domain.flags import RATE_LIMITING
from domain.rate_limits import (
    bucket_checks,
    bucket_rules,
    rate_limit_headers,
    refusal_message,
    tpm_charged,
)
from ops.metrics import JOBS_SUBMITTED, RATE_LIMIT_REFUSALS
from store.policy_cache import PolicyCache
from store.rate_limits import RateLimiter, RateLimiterUnavailable

RATE_LIMITED = "rate_limited"
RATE_LIMITER_UNAVAILABLE = "rate_limiter_unavailable"
ACCEPTED = "accepted"
"""The outcome of an admitted job in `kintsugi_jobs_submitted` (the others: the refusal's error code)."""
log = logging.getLogger("kintsugi.api")


async def admit(request: Request, response: Response, principal: Principal, *, route: str, tokens: int) -> int:
    """Charge the request to its key's and tenant's buckets, or refuse it; either way counted in
    `kintsugi_jobs_submitted` (jobs and chat and embeddings all pass here).

    Call it after the request is validated (a 4xx must not consume quota) and right before the job starts.

    Args:
        route: the model alias asked for, already checked to be one (`require_route`): a metric label.
        tokens: the request's estimated TPM cost (`domain.rate_limits.chat_tokens` or `embedding_tokens`).

    Returns:
        The tokens charged to the TPM buckets (0 when no TPM limit applies): the job settles them against its
        real usage (`RateLimiter.settle`).

    Raises:
        ApiError: 429 `rate_limited` with `Retry-After` and `X-RateLimit-*` of the bucket that refused; its details
            name it (`{"limit": "rpm", "scope": "key"}`). 503 `rate_limiter_unavailable` while Redis is down.
    """
    state = request.app.state
    policies: PolicyCache = state.policies
    policy = await policies.for_key(principal.tenant_id, principal.key_id)
    rules = bucket_rules(policy.document.rate, tenant_id=principal.tenant_id, key_id=principal.key_id)
    if not rules or RATE_LIMITING not in await state.flags.enabled(principal.tenant_id):
        JOBS_SUBMITTED.labels(route, ACCEPTED).inc()
        return 0
    limiter: RateLimiter = state.rate_limiter
    checks = bucket_checks(rules, tokens)
    try:
        admission = await limiter.acquire(checks, limiter.now())
    except RateLimiterUnavailable as err:
        # Closed, not open: admitting without limits while the store is down would let any key flood the
        # providers; a 503 tells the caller to come back, as a database outage does.
        log.warning("rate limiter unavailable: %s", err)
        JOBS_SUBMITTED.labels(route, RATE_LIMITER_UNAVAILABLE).inc()
        raise ApiError(503, RATE_LIMITER_UNAVAILABLE, "the rate limiter is unavailable") from err
    headers = rate_limit_headers(admission)
    refused = admission.refused
    if refused is not None:
        rule = refused.check.rule
        JOBS_SUBMITTED.labels(route, RATE_LIMITED).inc()
        RATE_LIMIT_REFUSALS.labels(rule.kind, rule.scope).inc()
        raise ApiError(
            429, RATE_LIMITED, refusal_message(refused), {"limit": rule.kind, "scope": rule.scope}, headers=headers
        )
    response.headers.update(headers)
    JOBS_SUBMITTED.labels(route, ACCEPTED).inc()
    return tpm_charged(checks)
