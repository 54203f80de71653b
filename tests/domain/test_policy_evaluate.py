"""The policy engine's decision, on its own: what a user is refused, what is redacted, what a call may cost."""

from __future__ import annotations

from typing import Any

import pytest

from domain.flags import ABUSE_DETECTION, GUARDRAILS, POLICY_ENGINE
from domain.policy.evaluate import PolicyRequest, PolicyUsage, evaluate, in_regions
from schemas.calls import PlannedDeployment
from schemas.jobs import JobParams
from schemas.messages import ChatMessage
from schemas.policies import BUILT_IN_DEFAULT, PolicyDocument
from schemas.pricing import ResolvedPrice
from schemas.routes import RetryConfig

ALL_ON = frozenset({POLICY_ENGINE, GUARDRAILS, ABUSE_DETECTION})
PRICE = ResolvedPrice(input_per_mtok=1.0, output_per_mtok=10.0, known=True)
"""$1 per million input tokens, $10 per million output tokens."""


def deployment(provider: str = "local", region: str = "eu", price: ResolvedPrice = PRICE) -> PlannedDeployment:
    return PlannedDeployment(
        provider=provider, model=f"{provider}-model", region=region, price=price, timeout_s=30, retry=RetryConfig()
    )


def request(
    text: str = "What is the capital of France?",
    *,
    model: str = "fast",
    plan: list[PlannedDeployment] | None = None,
    **params: Any,
) -> PolicyRequest:
    return PolicyRequest(
        model=model,
        messages=[ChatMessage(role="user", content=text)],
        params=JobParams(**params),
        plan=plan if plan is not None else [deployment()],
    )


def decide(document: dict[str, Any], req: PolicyRequest | None = None, *, flags: frozenset[str] = ALL_ON, **usage: Any):  # type: ignore[no-untyped-def]
    return evaluate(PolicyDocument.model_validate(document), req or request(), PolicyUsage(**usage), flags)


def test_an_empty_policy_allows_everything_and_changes_nothing() -> None:
    decision = decide({})

    assert decision.allowed
    assert decision.redacted_messages is None
    assert decision.guardrails == []


def test_the_policy_engine_flag_off_decides_nothing_and_says_so() -> None:
    decision = decide({"models": {"deny": ["fast"]}}, flags=frozenset())

    assert decision.allowed
    assert decision.skipped == [POLICY_ENGINE]


@pytest.mark.parametrize(
    "models", [{"deny": ["fast"]}, {"allow": ["slow"]}, {"allow": ["fast", "slow"], "deny": ["fast"]}]
)
def test_a_route_the_policy_does_not_allow_is_refused(models: dict[str, Any]) -> None:
    decision = decide({"models": models})

    assert decision.refusal is not None
    assert decision.refusal.code == "model_not_allowed"
    assert decision.refusal.details == {"model": "fast"}


def test_deployments_outside_the_regions_are_skipped_and_none_left_is_refused() -> None:
    plan = [deployment("us-provider", region="us"), deployment("eu-provider", region="eu")]
    policy = PolicyDocument.model_validate({"regions": ["eu"]})

    partly = evaluate(policy, request(plan=plan), PolicyUsage(), ALL_ON)
    nothing = decide({"regions": ["apac"]}, request(plan=plan))

    assert partly.allowed
    assert partly.excluded_deployments == ["us-provider/us-provider-model"]
    assert [d.provider for d in in_regions(policy, plan)] == ["eu-provider"]
    assert nothing.refusal is not None
    assert nothing.refusal.code == "region_not_allowed"


def test_pii_redacted_in_what_goes_on_and_reported_without_the_text() -> None:
    decision = decide(
        {"guardrails": {"input": {"pii": {"action": "redact"}}}},
        request("Mail me at jane.doe@example.com about the invoice"),
    )

    assert decision.allowed
    assert decision.redacted_messages is not None
    assert decision.redacted_messages[0].content == "Mail me at [EMAIL] about the invoice"
    (outcome,) = decision.guardrails
    assert (outcome.guardrail, outcome.stage, outcome.action, outcome.kinds) == ("pii", "input", "redact", ["email"])
    assert "jane.doe" not in decision.model_dump_json()


def test_pii_blocked_is_refused_naming_the_guardrail_and_kind() -> None:
    decision = decide(
        {"guardrails": {"input": {"pii": {"action": "block", "kinds": ["card"]}}}},
        request("my card is 4111 1111 1111 1111"),
    )

    assert decision.refusal is not None
    assert decision.refusal.code == "guardrail_blocked"
    assert decision.refusal.details == {"guardrail": "pii", "stage": "input", "kinds": ["card"]}
    assert "4111" not in decision.model_dump_json()


def test_pii_logged_lets_the_text_through_unchanged() -> None:
    decision = evaluate(BUILT_IN_DEFAULT, request("call +44 20 7946 0958"), PolicyUsage(), ALL_ON)

    assert decision.allowed
    assert decision.redacted_messages is None
    assert [(o.guardrail, o.action) for o in decision.guardrails] == [("pii", "log")]


def test_guardrails_flag_off_runs_no_guardrail_and_says_so() -> None:
    decision = decide(
        {"guardrails": {"input": {"pii": {"action": "block"}}}},
        request("jane@example.com"),
        flags=frozenset({POLICY_ENGINE}),
    )

    assert decision.allowed
    assert GUARDRAILS in decision.skipped
    assert decision.checked == []


def test_a_prompt_over_the_input_token_limit_is_refused() -> None:
    decision = decide({"limits": {"max_input_tokens": 10}}, request("word " * 40))

    assert decision.refusal is not None
    assert decision.refusal.code == "guardrail_blocked"
    assert decision.refusal.details["guardrail"] == "max_input_tokens"


def test_output_limit_refuses_a_larger_max_tokens_and_caps_a_request_without_one() -> None:
    over = decide({"limits": {"max_output_tokens": 100}}, request(max_tokens=500))
    capped = decide({"limits": {"max_output_tokens": 100}}, request())

    assert over.refusal is not None
    assert over.refusal.details["guardrail"] == "max_output_tokens"
    assert capped.allowed
    assert capped.max_tokens == 100


def test_estimated_cost_is_input_estimate_plus_max_output_at_the_dearest_deployment() -> None:
    dear = ResolvedPrice(input_per_mtok=2.0, output_per_mtok=20.0, known=True)
    req = request("x" * 400, plan=[deployment(), deployment("other", price=dear)], max_tokens=1000)

    decision = decide({}, req)

    # 400 characters: 100 tokens of text and 4 of framing.
    assert decision.estimated_tokens == 104
    assert decision.estimated_cost_usd == pytest.approx((104 * 2.0 + 1000 * 20.0) / 1e6)


def test_without_max_tokens_the_estimate_takes_the_models_output_limit() -> None:
    limited = ResolvedPrice(input_per_mtok=1.0, output_per_mtok=10.0, known=True, max_output_tokens=2000)

    decision = decide({}, request("hi", plan=[deployment(price=limited)]))

    assert decision.estimated_cost_usd == pytest.approx((decision.estimated_tokens * 1.0 + 2000 * 10.0) / 1e6)


def test_a_call_that_may_cost_more_than_the_limit_is_refused_before_it_is_made() -> None:
    allowed = decide({"limits": {"max_cost_usd_per_request": 0.02}}, request(max_tokens=1000))
    refused = decide({"limits": {"max_cost_usd_per_request": 0.005}}, request(max_tokens=1000))

    assert allowed.allowed
    assert refused.refusal is not None
    assert refused.refusal.code == "cost_limit_exceeded"
    assert refused.refusal.details["limit_usd"] == 0.005


def test_a_cost_limit_with_no_known_price_is_refused_not_taken_as_free() -> None:
    unknown = ResolvedPrice(input_per_mtok=0.0, output_per_mtok=0.0, known=False)

    decision = decide({"limits": {"max_cost_usd_per_request": 1}}, request(plan=[deployment(price=unknown)]))

    assert decision.estimated_cost_usd is None
    assert decision.refusal is not None
    assert decision.refusal.code == "cost_limit_exceeded"


def test_a_budget_that_cannot_cover_the_estimate_refuses_naming_the_period() -> None:
    policy = {"budgets": {"daily_usd": 1.0, "monthly_usd": 100.0}}

    fits = decide(policy, request(max_tokens=1000), committed_usd={"day": 0.98})
    over = decide(policy, request(max_tokens=1000), committed_usd={"day": 0.995})

    assert fits.allowed
    assert over.refusal is not None
    assert over.refusal.code == "budget_exceeded"
    assert over.refusal.details["period"] == "day"


@pytest.mark.parametrize(
    ("score", "action", "code"),
    [(0.5, None, None), (0.75, "flag", None), (0.9, "throttle", "rate_limited"), (0.97, "block", "abuse_blocked")],
)
def test_abuse_thresholds_flag_throttle_or_block(score: float, action: str | None, code: str | None) -> None:
    decision = decide({"abuse": {"flag": 0.7, "throttle": 0.85, "block": 0.95}}, abuse_score=score)

    assert decision.abuse_action == action
    assert (decision.refusal.code if decision.refusal else None) == code


def test_abuse_detection_flag_off_scores_nothing() -> None:
    decision = decide({"abuse": {"block": 0.5}}, flags=frozenset({POLICY_ENGINE, GUARDRAILS}), abuse_score=0.99)

    assert decision.allowed
    assert ABUSE_DETECTION in decision.skipped


def test_the_first_refusal_wins_but_every_guardrail_still_reports() -> None:
    decision = decide(
        {"models": {"deny": ["fast"]}, "guardrails": {"input": {"pii": {"action": "log"}}}},
        request("jane@example.com"),
    )

    assert decision.refusal is not None
    assert decision.refusal.code == "model_not_allowed"
    assert [o.guardrail for o in decision.guardrails] == ["pii"]
