"""`evaluate(policy, request, usage, flags) -> PolicyDecision`: pure, so the dry-run endpoint, preflight and the
unit tests all get the same answer from the same inputs.

Checks run in the order a person would explain a refusal: may this key use the route at all (models), where
(regions), with this text (input guardrails and length), at this size (output tokens), at this price (the
per-request cost limit), within this month's money (budgets), and does the key look abusive. The first refusal
wins; every guardrail still reports what it found, so the trace shows all of it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from domain.flags import ABUSE_DETECTION, GUARDRAILS, POLICY_ENGINE
from domain.guardrails.checks import GuardResult, check_input
from domain.tokens import estimate_prompt_tokens
from schemas.calls import PlannedDeployment
from schemas.decisions import AbuseAction, PolicyDecision, Refusal
from schemas.jobs import JobKind, JobParams
from schemas.messages import ChatMessage
from schemas.policies import AbuseThresholds, PolicyDocument

DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""The output a request may produce when neither it, the policy, nor the catalogue says (for the cost estimate)."""
BudgetPeriod = Literal["day", "month"]


@dataclass(frozen=True)
class PolicyRequest:
    model: str
    """The route the request names."""
    messages: list[ChatMessage]
    params: JobParams
    plan: list[PlannedDeployment]
    """The route plan (`domain.routing.plan_route`): the regions and prices the policy judges."""
    kind: JobKind = "chat"


@dataclass(frozen=True)
class PolicyUsage:
    """What the tenant has used so far, read by preflight (or the dry run) before deciding."""

    committed_usd: dict[str, float] = field(default_factory=dict)
    """Budget period (`day`, `month`) -> settled spend plus open reservations."""
    abuse_score: float | None = None
    """The request's abuse score (`activities.abuse.AbuseScorer`), when the policy scores requests."""


def evaluate(
    policy: PolicyDocument,
    request: PolicyRequest,
    usage: PolicyUsage,
    flags: Collection[str],
    *,
    input_check: GuardResult | None = None,
) -> PolicyDecision:
    """The decision on `request` under `policy`, with `flags` the feature flags on for the tenant.

    `input_check`: the input guardrails' result when the caller ran them itself (preflight runs them through
    guardrails-ai); None runs the same validators here.
    """
    if POLICY_ENGINE not in flags:
        return PolicyDecision(skipped=[POLICY_ENGINE])
    decision = PolicyDecision(estimated_tokens=estimate_prompt_tokens(request.messages))
    refusal = _route_refusal(policy, request, decision)
    guard_refusal = _input_guardrails(policy, request, flags, decision, input_check)
    refusal = refusal or guard_refusal or _size_refusal(policy, request, decision)
    decision.estimated_cost_usd = _estimated_cost(request, decision)
    refusal = refusal or _cost_refusal(policy, decision) or _budget_refusal(policy, usage, decision)
    abuse_refusal = _abuse(policy.abuse, usage.abuse_score, flags, decision)
    decision.refusal = refusal or abuse_refusal
    return decision


def in_regions(policy: PolicyDocument, plan: list[PlannedDeployment]) -> list[PlannedDeployment]:
    """The deployments of the plan the policy's regions allow (all of them when it names none)."""
    if policy.regions is None:
        return list(plan)
    return [deployment for deployment in plan if deployment.region in policy.regions]


def _route_refusal(policy: PolicyDocument, request: PolicyRequest, decision: PolicyDecision) -> Refusal | None:
    rules = policy.models
    if rules is not None and (
        request.model in rules.deny or (rules.allow is not None and request.model not in rules.allow)
    ):
        decision.reasons.append(f"models: route {request.model!r} is not allowed")
        return Refusal(
            code="model_not_allowed",
            message=f"the policy does not allow model {request.model!r}",
            details={"model": request.model},
        )
    allowed = in_regions(policy, request.plan)
    decision.excluded_deployments = [f"{d.provider}/{d.model}" for d in request.plan if d not in allowed]
    if decision.excluded_deployments:
        decision.reasons.append(f"regions: skipped {', '.join(decision.excluded_deployments)}")
    if allowed or not request.plan:
        return None
    regions = sorted({deployment.region for deployment in request.plan})
    return Refusal(
        code="region_not_allowed",
        message=f"no deployment of {request.model!r} is in an allowed region ({', '.join(policy.regions or [])})",
        details={"model": request.model, "allowed": policy.regions, "deployments": regions},
    )


def _input_guardrails(
    policy: PolicyDocument,
    request: PolicyRequest,
    flags: Collection[str],
    decision: PolicyDecision,
    input_check: GuardResult | None,
) -> Refusal | None:
    if GUARDRAILS not in flags:
        decision.skipped.append(GUARDRAILS)
        return None
    result = input_check if input_check is not None else check_input(request.messages, policy.guardrails.input)
    decision.checked.extend(result.checked)
    decision.guardrails.extend(result.outcomes)
    decision.redacted_messages = result.messages
    for outcome in result.outcomes:
        verb = {"block": "blocked", "redact": "redacted", "log": "logged", "fail": "failed"}[outcome.action]
        found = ", ".join(outcome.kinds)
        score = f" (score {outcome.score:.2f})" if outcome.score is not None else ""
        decision.reasons.append(f"{outcome.stage}.{outcome.guardrail}: {verb} {found}{score}".rstrip())
    if result.blocked is None:
        return None
    blocked = result.blocked
    return Refusal(
        code="guardrail_blocked",
        message=f"the input guardrail {blocked.guardrail!r} blocked the request ({', '.join(blocked.kinds)})",
        details={"guardrail": blocked.guardrail, "stage": blocked.stage, "kinds": blocked.kinds},
    )


def _requested_output(params: JobParams) -> int | None:
    return params.max_completion_tokens or params.max_tokens


def _size_refusal(policy: PolicyDocument, request: PolicyRequest, decision: PolicyDecision) -> Refusal | None:
    limits = policy.limits
    if limits.max_input_tokens is not None and decision.estimated_tokens > limits.max_input_tokens:
        decision.reasons.append(
            f"limits.max_input_tokens: about {decision.estimated_tokens} tokens, over {limits.max_input_tokens}"
        )
        return Refusal(
            code="guardrail_blocked",
            message=f"the prompt is about {decision.estimated_tokens} tokens, over the policy's "
            f"{limits.max_input_tokens}",
            details={"guardrail": "max_input_tokens", "stage": "input", "kinds": ["max_input_tokens"]},
        )
    asked = _requested_output(request.params)
    if limits.max_output_tokens is None:
        return None
    if asked is None:
        decision.max_tokens = limits.max_output_tokens
        return None
    if asked > limits.max_output_tokens:
        decision.reasons.append(f"limits.max_output_tokens: {asked} asked, over {limits.max_output_tokens}")
        return Refusal(
            code="guardrail_blocked",
            message=f"max_tokens {asked} is over the policy's {limits.max_output_tokens}",
            details={"guardrail": "max_output_tokens", "stage": "input", "kinds": ["max_output_tokens"]},
        )
    return None


def _estimated_cost(request: PolicyRequest, decision: PolicyDecision) -> float | None:
    """The dearest priced deployment the plan may call, at the request's full output: a fallback may answer
    instead of the first, and a limit or budget must hold whichever does."""
    costs = []
    for deployment in request.plan:
        price = deployment.price
        if not price.known or f"{deployment.provider}/{deployment.model}" in decision.excluded_deployments:
            continue
        output = 0
        if request.kind == "chat":
            output = (
                decision.max_tokens
                or _requested_output(request.params)
                or price.max_output_tokens
                or DEFAULT_MAX_OUTPUT_TOKENS
            )
        costs.append((decision.estimated_tokens * price.input_per_mtok + output * price.output_per_mtok) / 1e6)
    return max(costs) if costs else None


def _cost_refusal(policy: PolicyDocument, decision: PolicyDecision) -> Refusal | None:
    limit = policy.limits.max_cost_usd_per_request
    if limit is None:
        return None
    estimate = decision.estimated_cost_usd
    if estimate is None:
        decision.reasons.append("limits.max_cost_usd_per_request: no deployment has a known price")
        return Refusal(
            code="cost_limit_exceeded",
            message="no deployment of the route has a known price to hold to the policy's cost limit",
            details={"limit_usd": limit, "estimated_usd": None},
        )
    if estimate <= limit:
        return None
    decision.reasons.append(f"limits.max_cost_usd_per_request: estimated ${estimate:.6f}, over ${limit}")
    return Refusal(
        code="cost_limit_exceeded",
        message=f"the call may cost up to ${estimate:.6f}, over the policy's ${limit} per request",
        details={"limit_usd": limit, "estimated_usd": round(estimate, 8)},
    )


def budget_limits(policy: PolicyDocument) -> dict[BudgetPeriod, float]:
    """The policy's budgets by period; empty when it sets none."""
    limits: dict[BudgetPeriod, float] = {}
    if policy.budgets.daily_usd is not None:
        limits["day"] = policy.budgets.daily_usd
    if policy.budgets.monthly_usd is not None:
        limits["month"] = policy.budgets.monthly_usd
    return limits


def budget_refusal(period: str, limit: float, committed: float, amount: float) -> Refusal:
    return Refusal(
        code="budget_exceeded",
        message=f"the {'daily' if period == 'day' else 'monthly'} budget of ${limit} cannot cover this call "
        f"(${committed:.6f} committed, up to ${amount:.6f} more)",
        details={
            "period": period,
            "limit_usd": limit,
            "committed_usd": round(committed, 8),
            "estimated_usd": round(amount, 8),
        },
    )


def _budget_refusal(policy: PolicyDocument, usage: PolicyUsage, decision: PolicyDecision) -> Refusal | None:
    """A first look with the usage read before deciding; preflight's reservation is what holds under
    concurrency (it re-checks atomically)."""
    amount = decision.estimated_cost_usd
    if amount is None:
        if budget_limits(policy):
            decision.reasons.append("budgets: no deployment has a known price; the call is not counted")
        return None
    for period, limit in budget_limits(policy).items():
        committed = usage.committed_usd.get(period, 0.0)
        if committed + amount > limit:
            decision.reasons.append(f"budgets.{period}: ${committed:.6f} committed + ${amount:.6f} over ${limit}")
            return budget_refusal(period, limit, committed, amount)
    return None


def abuse_action(thresholds: AbuseThresholds, score: float) -> AbuseAction | None:
    for action, threshold in (
        ("block", thresholds.block),
        ("throttle", thresholds.throttle),
        ("flag", thresholds.flag),
    ):
        if threshold is not None and score >= threshold:
            return action  # type: ignore[return-value]
    return None


def _abuse(
    thresholds: AbuseThresholds | None, score: float | None, flags: Collection[str], decision: PolicyDecision
) -> Refusal | None:
    if thresholds is None:
        return None
    if ABUSE_DETECTION not in flags:
        decision.skipped.append(ABUSE_DETECTION)
        return None
    if score is None:
        return None
    decision.abuse_score = round(score, 4)
    action = decision.abuse_action = abuse_action(thresholds, score)
    if action is None:
        return None
    decision.reasons.append(f"abuse: score {score:.2f}, {action}")
    if action == "block":
        return Refusal(
            code="abuse_blocked",
            message="requests from this key look abusive and are blocked",
            details={"score": round(score, 4), "threshold": thresholds.block},
        )
    if action == "throttle":
        return Refusal(
            code="rate_limited",
            message="requests from this key look abusive and are throttled: slow down",
            details={"reason": "abuse", "score": round(score, 4), "threshold": thresholds.throttle},
        )
    return None
