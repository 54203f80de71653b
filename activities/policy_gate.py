"""The policy's part of a job's activities: preflight's decision (guardrails through guardrails-ai, the abuse
score, the budget reservation) and the output guardrails run where an answer arrives."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.abuse import AbuseScorer
from activities.guardrails_ai import check_input_ai, check_output_ai
from domain.flags import ABUSE_DETECTION, GUARDRAILS
from domain.guardrails.checks import has_rules, wants_json
from domain.policy.evaluate import (
    PolicyRequest,
    PolicyUsage,
    budget_limits,
    budget_refusal,
    evaluate,
)
from schemas.calls import PlannedDeployment, PreflightInput
from schemas.decisions import GuardrailOutcome, OutputVerdict, PolicyDecision, Refusal
from schemas.jobs import JobParams, JobResult
from schemas.policies import OutputGuardrails
from store.policy_cache import ActivePolicy
from store.queries import budgets


@dataclass(frozen=True)
class Gated:
    decision: PolicyDecision
    budget_key: str | None
    """The reservation made for this job, to settle or release; None when nothing was reserved."""


class PolicyGate:
    """Decides a job under its policy; holds what that needs beyond the pure `evaluate`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        abuse: AbuseScorer,
        writes: contextlib.AbstractAsyncContextManager[object],
    ) -> None:
        self._sessions = sessions
        self._abuse = abuse
        self._writes = writes
        """The holder's write queue (SQLite takes one writer at a time)."""

    async def decide(
        self,
        input: PreflightInput,
        policy: ActivePolicy,
        plan: list[PlannedDeployment],
        flags: frozenset[str],
        now: datetime,
    ) -> Gated:
        document = policy.document
        input_check = None
        if GUARDRAILS in flags and has_rules(document.guardrails.input):
            input_check = await check_input_ai(input.messages, document.guardrails.input)
        score = None
        if document.abuse is not None and ABUSE_DETECTION in flags:
            score = (await self._abuse.score(input.tenant_id, input.key_id, now)).score
        request = PolicyRequest(
            model=input.model, messages=input.messages, params=input.params, plan=plan, kind=input.kind
        )
        # Budget usage is not read first: the reservation below checks it atomically, which is what holds when
        # many jobs of the tenant arrive at once.
        decision = evaluate(document, request, PolicyUsage(abuse_score=score), flags, input_check=input_check)
        decision.policy_id, decision.policy_version = policy.id, policy.version
        limits = budget_limits(document)
        amount = decision.estimated_cost_usd
        if not decision.allowed or not limits or amount is None:
            return Gated(decision, None)
        key = f"{input.job_id}:{input.preflight_seq}"
        async with self._writes, self._sessions() as session, session.begin():
            refused = await budgets.reserve(
                session,
                key=key,
                job_id=input.job_id,
                tenant_id=input.tenant_id,
                amount_usd=amount,
                daily_usd=limits.get("day"),
                monthly_usd=limits.get("month"),
                now=now,
            )
        if refused is not None:
            decision.refusal = budget_refusal(refused.period, refused.limit_usd, refused.committed_usd, amount)
            decision.reasons.append(f"budgets.{refused.period}: the reservation of ${amount:.6f} was refused")
            return Gated(decision, None)
        decision.budget_reserved_usd = amount
        return Gated(decision, key)


async def check_answer(
    answer: JobResult, rules: OutputGuardrails, params: JobParams
) -> tuple[JobResult, OutputVerdict]:
    """The output guardrails on each choice's text: the answer with what `redact` rules found replaced, and
    the verdict (a `block`, or invalid JSON under `json: fail`, refuses the answer)."""
    json_asked = wants_json(params.response_format)
    verdict = OutputVerdict()
    choices = list(answer.choices)
    for index, choice in enumerate(choices):
        content = choice.message.content
        if not isinstance(content, str):
            continue
        result = await check_output_ai(content, rules, wants_json=json_asked)
        verdict.checked = sorted({*verdict.checked, *result.checked})
        verdict.guardrails.extend(result.outcomes)
        if result.text is not None:
            message = choice.message.model_copy(update={"content": result.text})
            choices[index] = choice.model_copy(update={"message": message})
            verdict.redacted = True
        if result.blocked is not None and verdict.refusal is None:
            verdict.refusal = _output_refusal(result.blocked)
    if verdict.redacted:
        answer = answer.model_copy(update={"choices": choices})
    return answer, verdict


def _output_refusal(outcome: GuardrailOutcome) -> Refusal:
    return Refusal(
        code="guardrail_blocked",
        message=f"the output guardrail {outcome.guardrail!r} refused the answer ({', '.join(outcome.kinds)})",
        details={"guardrail": outcome.guardrail, "stage": "output", "kinds": outcome.kinds},
    )
