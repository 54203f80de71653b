"""The policy document: DESIGN.md's example parses, and a malformed one names the offending path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from schemas.policies import PolicyDocument
from schemas.validation import describe

DESIGN_EXAMPLE = """
models: {allow: [fast, sim-1], deny: []}
regions: [eu, local]
limits: {max_input_tokens: 8000, max_output_tokens: 2000, max_cost_usd_per_request: 0.50}
rate: {rpm: 600, tpm: 200000}
budgets: {daily_usd: 50, monthly_usd: 1000}
guardrails:
  input:
    pii: {action: redact, kinds: [email, phone, card, iban, ssn, ip]}
    secrets: {action: block}
    banned_terms: {action: block, terms: ["project x"]}
    injection: {action: block, threshold: 0.8}
    max_chars: 200000
  output:
    pii: {action: redact}
    json: {action: fail}
abuse: {flag: 0.7, throttle: 0.85, block: 0.95}
cache: {enabled: false, ttl_s: 3600, near_duplicate: 0.95, allow_temperature_above_zero: false}
similarity: {threshold: 0.9}
"""


def test_the_design_example_parses_and_round_trips() -> None:
    document = PolicyDocument.model_validate(yaml.safe_load(DESIGN_EXAMPLE))

    assert document.guardrails.output.json_ is not None
    assert document.guardrails.output.json_.action == "fail"
    dumped = document.model_dump(mode="json", exclude_unset=True)
    assert dumped["guardrails"]["output"]["json"] == {"action": "fail"}
    assert PolicyDocument.model_validate(dumped) == document


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"guardrails": {"input": {"pii": {"action": "shout"}}}}, "guardrails.input.pii.action"),
        ({"guardrails": {"input": {"pii": {"kinds": ["email", "dna"]}}}}, "guardrails.input.pii.kinds[1]"),
        ({"limits": {"max_cost_usd_per_request": -1}}, "limits.max_cost_usd_per_request"),
        ({"rate": {"rpm": 0}}, "rate.rpm"),
        ({"budgets": {"daily_usd": "lots"}}, "budgets.daily_usd"),
        ({"regoins": ["eu"]}, "regoins"),
        ({"abuse": {"flag": 0.9, "block": 0.5}}, "abuse"),
        ({"guardrails": {"input": {"injection": {"action": "redact"}}}}, "guardrails.input.injection.action"),
        ({"cache": {"enabled": "yes"}}, "cache.enabled"),
    ],
)
def test_a_malformed_document_names_the_offending_path(document: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as raised:
        PolicyDocument.model_validate(document)

    assert describe(raised.value.errors()[0]).startswith(f"{path}: ")
