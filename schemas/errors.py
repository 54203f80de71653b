"""Error codes a job can end with; shared by providers, the workflow and the API."""

from __future__ import annotations

UPSTREAM_TIMEOUT = "upstream_timeout"
UPSTREAM_UNREACHABLE = "upstream_unreachable"
RATE_LIMITED = "rate_limited"
UPSTREAM_ERROR = "upstream_error"
UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
BAD_REQUEST = "bad_request"
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
UPSTREAM_AUTH = "upstream_auth"
MODEL_NOT_FOUND = "model_not_found"

UNKNOWN_MODEL = "unknown_model"
UNSUPPORTED_PARAMETER = "unsupported_parameter"
"""No deployment of the route can honour a parameter of the request (`domain.capabilities`)."""
MODEL_TYPE_MISMATCH = "model_type_mismatch"
"""A chat request for an embedding route, or the reverse."""
ALL_DEPLOYMENTS_FAILED = "all_deployments_failed"
PARK_TIMEOUT = "park_timeout"
ABORTED = "aborted"
CANCELLED = "cancelled"
TERMINATED = "terminated"
"""Ended from outside (the Temporal UI or CLI), not by the job itself."""
JOB_FAILED = "job_failed"

GUARDRAIL_BLOCKED = "guardrail_blocked"
BUDGET_EXCEEDED = "budget_exceeded"
MODEL_NOT_ALLOWED = "model_not_allowed"
REGION_NOT_ALLOWED = "region_not_allowed"
COST_LIMIT_EXCEEDED = "cost_limit_exceeded"
ABUSE_BLOCKED = "abuse_blocked"
POLICY_REFUSALS: dict[str, int] = {
    RATE_LIMITED: 429,
    BUDGET_EXCEEDED: 429,
    GUARDRAIL_BLOCKED: 400,
    MODEL_NOT_ALLOWED: 403,
    REGION_NOT_ALLOWED: 403,
    COST_LIMIT_EXCEEDED: 400,
    ABUSE_BLOCKED: 403,
}
"""The policy's refusals (DESIGN.md, Error codes) and the status each answers with."""

REQUEST_ERRORS: frozenset[str] = frozenset({BAD_REQUEST, CONTEXT_LENGTH_EXCEEDED})
"""The request itself is wrong: another deployment of the same route cannot help."""
DEPLOYMENT_ERRORS: frozenset[str] = frozenset({UPSTREAM_AUTH, MODEL_NOT_FOUND})
"""This deployment is misconfigured: move to the next one without retrying."""
