"""Token buckets: refill, all-or-nothing admission, the headers a refused or admitted caller reads, estimates."""

from __future__ import annotations

import pytest

from domain.rate_limits import (
    BucketCheck,
    BucketLevel,
    BucketRule,
    LimitKind,
    Scope,
    bucket_checks,
    bucket_rules,
    chat_tokens,
    decide,
    embedding_tokens,
    job_tokens,
    rate_limit_headers,
    refill,
    refusal_message,
    retry_after_s,
    settled,
    tpm_charged,
)
from schemas.embeddings import EmbeddingInput
from schemas.jobs import JobCreate
from schemas.messages import ChatMessage
from schemas.policies import RateRules

RATE = RateRules(rpm=60, tpm=1200, tenant_rpm=600, tenant_tpm=6000)


def rule(kind: LimitKind = "rpm", capacity: int = 60, scope: Scope = "key") -> BucketRule:
    return BucketRule(kind, scope, "k1" if scope == "key" else "t1", "t1", capacity)


def test_a_policy_asks_for_one_bucket_per_limit_it_sets() -> None:
    keys = [r.key for r in bucket_rules(RATE, tenant_id="t1", key_id="k1")]

    assert keys == ["rpm:key:k1", "tpm:key:k1", "rpm:tenant:t1", "tpm:tenant:t1"]
    assert bucket_rules(RateRules(), tenant_id="t1", key_id="k1") == ()


def test_the_admin_key_only_meets_the_tenant_limits() -> None:
    keys = [r.key for r in bucket_rules(RATE, tenant_id="t1", key_id=None)]

    assert keys == ["rpm:tenant:t1", "tpm:tenant:t1"]


def test_a_request_costs_one_request_and_its_tokens() -> None:
    checks = bucket_checks(bucket_rules(RATE, tenant_id="t1", key_id="k1"), 250)

    assert [(c.rule.key, c.cost) for c in checks] == [
        ("rpm:key:k1", 1.0),
        ("tpm:key:k1", 250.0),
        ("rpm:tenant:t1", 1.0),
        ("tpm:tenant:t1", 250.0),
    ]
    assert tpm_charged(checks) == 250
    assert tpm_charged(bucket_checks(bucket_rules(RateRules(rpm=5), tenant_id="t1", key_id="k1"), 250)) == 0


def test_a_bucket_refills_capacity_per_minute_continuously_and_never_overflows() -> None:
    rpm = rule("rpm", 60)  # one a second

    assert refill(0.0, 100.0, 100.5, rpm) == (0.5, 100.5)
    assert refill(10.0, 100.0, 130.0, rpm) == (40.0, 130.0)
    assert refill(10.0, 100.0, 1000.0, rpm) == (60.0, 1000.0)
    assert refill(-30.0, 100.0, 110.0, rpm) == (-20.0, 110.0)  # a debt is paid back by waiting


def test_a_clock_behind_the_stored_time_refills_nothing_and_keeps_the_later_time() -> None:
    assert refill(5.0, 100.0, 99.0, rule("rpm", 60)) == (5.0, 100.0)


def test_a_lowered_capacity_caps_the_stored_level() -> None:
    assert refill(500.0, 100.0, 100.0, rule("rpm", 10)) == (10.0, 100.0)


def test_admission_charges_every_bucket_when_all_can_pay() -> None:
    rpm, tpm = rule("rpm", 10), rule("tpm", 1000)
    checks = [BucketCheck(rpm, 1), BucketCheck(tpm, 300)]

    admission = decide(checks, [5.0, 300.0])

    assert admission.admitted
    assert [b.level for b in admission.levels] == [4.0, 0.0]
    assert admission.refused is None


def test_admission_is_all_or_nothing() -> None:
    rpm, tpm = rule("rpm", 10), rule("tpm", 1000)
    checks = [BucketCheck(rpm, 1), BucketCheck(tpm, 300)]

    admission = decide(checks, [5.0, 299.0])

    assert not admission.admitted
    assert [b.level for b in admission.levels] == [5.0, 299.0]  # the RPM bucket was not charged either
    assert admission.refused is not None and admission.refused.check.rule is tpm


def test_the_refusal_names_the_bucket_that_takes_longest_to_recover() -> None:
    key_rpm, tenant_rpm = rule("rpm", 60), rule("rpm", 6, scope="tenant")
    checks = [BucketCheck(key_rpm, 1), BucketCheck(tenant_rpm, 1)]

    admission = decide(checks, [0.5, 0.5])  # 0.5 s to wait for the key's, 5 s for the tenant's

    assert admission.refused is not None and admission.refused.check.rule is tenant_rpm
    assert retry_after_s(admission.refused) == 5


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_then_runs_it_into_debt() -> None:
    tpm = rule("tpm", 1000)
    big = [BucketCheck(tpm, 5000)]

    assert not decide(big, [999.0]).admitted
    admission = decide(big, [1000.0])

    assert admission.admitted and admission.levels[0].level == -4000.0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    rpm = rule("rpm", 10)  # one every 6 s

    assert retry_after_s(BucketLevel(BucketCheck(rpm, 1), 0.0)) == 6
    assert retry_after_s(BucketLevel(BucketCheck(rpm, 1), 0.99)) == 1
    assert retry_after_s(BucketLevel(BucketCheck(rpm, 1), -2.0)) == 18


def test_a_refusal_carries_retry_after_and_the_refusing_buckets_numbers() -> None:
    rpm = rule("rpm", 10)

    headers = rate_limit_headers(decide([BucketCheck(rpm, 1)], [0.4]))

    assert headers == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "58",  # 9.6 requests to refill at one per 6 s
        "Retry-After": "4",
    }


def test_an_admission_reports_the_bucket_with_the_least_of_its_capacity_left() -> None:
    rpm, tpm = rule("rpm", 10), rule("tpm", 1000)

    headers = rate_limit_headers(decide([BucketCheck(rpm, 1), BucketCheck(tpm, 100)], [10.0, 200.0]))

    assert headers == {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "100", "X-RateLimit-Reset": "54"}
    assert rate_limit_headers(decide([], [])) == {}


def test_the_refusal_message_says_which_limit_and_when_to_retry() -> None:
    refused = decide([BucketCheck(rule("tpm", 600, scope="tenant"), 50)], [0.0]).refused
    assert refused is not None

    assert refusal_message(refused) == "rate limit reached: 600 tokens per minute for this tenant; retry in 5 s"


def test_settling_takes_the_extra_tokens_or_gives_the_unused_back_up_to_capacity() -> None:
    tpm = rule("tpm", 1000)

    assert settled(100.0, 300, tpm) == -200.0
    assert settled(100.0, -300, tpm) == 400.0
    assert settled(900.0, -300, tpm) == 1000.0


def test_a_chat_request_costs_its_prompt_and_the_output_it_allows() -> None:
    messages = [ChatMessage.model_validate({"role": "user", "content": "x" * 40})]

    assert chat_tokens(messages, None) == 14  # 10 for the text, 4 for the message's framing
    assert chat_tokens(messages, 100) == 114
    job = JobCreate.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x" * 40}], "params": {"max_completion_tokens": 50}}
    )
    assert job_tokens(job) == 64


@pytest.mark.parametrize(
    ("value", "tokens"),
    [("x" * 41, 11), (["abcd", "abcdefgh"], 3), ([1, 2, 3], 3), ([[1, 2], [3, 4, 5]], 5)],
)
def test_an_embedding_request_costs_its_inputs(value: object, tokens: int) -> None:
    embedding = EmbeddingInput.model_validate({"input": value})

    assert embedding_tokens(embedding) == tokens
    assert job_tokens(JobCreate(model="e", kind="embedding", embedding=embedding)) == tokens
