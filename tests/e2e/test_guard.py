"""The guard end to end (dev server, the API with its worker, the fake upstream; SQLite and PostgreSQL): a
tenant's policy redacts what reaches the provider, refuses what it must with the code DESIGN.md names, checks
answers, and holds a budget under 50 concurrent jobs."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from sqlmodel import select

from store.models import BudgetReservation, ModelCostLog, RateLimitBucket
from store.queries import DEFAULT_TENANT_ID
from tests.support.harness import Harness
from tests.support.sdk import openai_sdk

EMAIL_PROMPT = [{"role": "user", "content": "Write to jane.doe@example.com and say the invoice is paid."}]


async def _policy(kintsugi: Harness, document: dict[str, Any], *, name: str = "guard") -> dict[str, Any]:
    """Make `document` the default tenant's default policy."""
    response = await kintsugi.http.post(
        "/v1/policies", json={"name": name, "document": document, "default": True}, headers=kintsugi.admin
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _set_flag(kintsugi: Harness, key: str, enabled: bool) -> None:
    response = await kintsugi.http.put(
        f"/v1/flags/{key}", json={"enabled": enabled, "tenant_id": DEFAULT_TENANT_ID}, headers=kintsugi.admin
    )
    assert response.status_code == 200, response.text


async def _trace(kintsugi: Harness, job_id: str) -> dict[str, Any]:
    response = await kintsugi.http.get(f"/v1/jobs/{job_id}/trace", headers=kintsugi.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _spans(trace: dict[str, Any], activity_type: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(span: dict[str, Any]) -> None:
        if span["attributes"].get("activity_type") == activity_type:
            found.append(span)
        for child in span.get("children", []):
            walk(child)

    walk(trace["root"])
    return found


async def _history_text(kintsugi: Harness, job_id: str) -> str:
    """Every payload of the job's history, decoded, one per line."""
    history = await kintsugi.temporal.get_workflow_handle(job_id).fetch_history()
    decoded: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "metadata" in value and isinstance(value.get("data"), str):
                decoded.append(base64.b64decode(value["data"]).decode(errors="replace"))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(history.to_json_dict())
    return "\n".join(decoded)


@contextmanager
def _outbound_connections() -> Iterator[list[object]]:
    """Every connection the process attempts to a non-loopback address while the block runs."""
    attempted: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempted.append(address)
            raise OSError("outbound connection refused by the test")
        return real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    try:
        yield attempted
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]


async def test_redacted_pii_never_reaches_the_provider_and_the_trace_says_which_rule_fired(
    kintsugi_db: Harness,
) -> None:
    kintsugi = kintsugi_db
    policy = await _policy(kintsugi, {"guardrails": {"input": {"pii": {"action": "redact"}}}})
    kintsugi.upstream.configure(kintsugi.model("a"))

    with _outbound_connections() as attempted:
        response = await kintsugi.submit({"model": "primary", "messages": EMAIL_PROMPT}, wait=20)
    job = response.json()

    assert job["status"] == "succeeded", job
    assert attempted == []
    sent = kintsugi.upstream.last_request(kintsugi.model("a"))["body"]["messages"][0]["content"]
    assert sent == "Write to [EMAIL] and say the invoice is paid."
    [row] = await kintsugi.cost_rows(job["id"])
    assert row.policy_version == policy["version"] == 1
    events = [event for event in await kintsugi.events(job["id"]) if event.type == "guardrail.triggered"]
    assert [(e.payload["guardrail"], e.payload["action"], e.payload["kinds"]) for e in events] == [
        ("pii", "redact", ["email"])
    ]
    assert "jane.doe" not in str(events[0].payload)
    [preflight] = _spans(await _trace(kintsugi, job["id"]), "preflight")
    assert preflight["attributes"]["policy"]["version"] == 1
    assert preflight["attributes"]["guardrails"][0]["kinds"] == ["email"]
    # The raw prompt is only in the start event; everything after preflight holds the redacted text.
    history = await _history_text(kintsugi, job["id"])
    assert history.count("jane.doe@example.com") == 1


async def test_a_blocked_prompt_is_refused_with_its_code_and_nothing_is_called_or_billed(
    kintsugi_db: Harness,
) -> None:
    kintsugi = kintsugi_db
    await _policy(kintsugi, {"guardrails": {"input": {"secrets": {"action": "block"}}}})
    kintsugi.upstream.configure(kintsugi.model("a"))
    secret = [{"role": "user", "content": "Why does sk-proj-4f9aT3kLmQ8rX2vB7nW1yZ5cD0eF6gH9jK fail?"}]

    async with openai_sdk(kintsugi) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.chat.completions.create(model="primary", messages=secret)  # type: ignore[arg-type]

    assert raised.value.code == "guardrail_blocked"
    body = raised.value.body
    assert isinstance(body, dict)
    assert "sk-proj" not in str(body)
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 0
    job_id = raised.value.response.headers["x-kintsugi-job-id"]
    assert await kintsugi.cost_rows(job_id) == []
    assert "policy.refused" in await kintsugi.event_types(job_id)


async def test_a_route_the_policy_denies_is_a_403_for_the_sdk(kintsugi: Harness) -> None:
    await _policy(kintsugi, {"models": {"deny": ["primary"]}})

    async with openai_sdk(kintsugi) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            await sdk.chat.completions.create(model="primary", messages=EMAIL_PROMPT)  # type: ignore[arg-type]

    assert raised.value.code == "model_not_allowed"


async def test_an_answer_leaking_pii_is_redacted_before_it_is_kept(kintsugi: Harness) -> None:
    await _policy(kintsugi, {"guardrails": {"output": {"pii": {"action": "redact"}}}})
    kintsugi.upstream.configure(kintsugi.model("a"), content="Sure: call me on +1 415 555 0132 or mail bob@example.org")

    job = (await kintsugi.submit({"model": "primary", "messages": [{"role": "user", "content": "hi"}]}, wait=20)).json()

    assert job["status"] == "succeeded", job
    assert job["result"]["content"] == "Sure: call me on [PHONE] or mail [EMAIL]"
    assert "bob@example.org" not in await _history_text(kintsugi, job["id"])
    [call] = _spans(await _trace(kintsugi, job["id"]), "call_model")
    assert {g["guardrail"] for g in call["attributes"]["output_guardrails"]} == {"pii"}


async def test_an_answer_that_is_not_the_json_asked_for_fails_billed(kintsugi: Harness) -> None:
    await _policy(kintsugi, {"guardrails": {"output": {"json": {"action": "fail"}}}})
    kintsugi.upstream.configure("gpt-4o-mini", content="certainly! {not json")
    body = {
        "model": "priced",
        "messages": [{"role": "user", "content": "give me JSON"}],
        "params": {"response_format": {"type": "json_object"}},
    }

    job = (await kintsugi.submit(body, wait=20)).json()

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "guardrail_blocked"
    [row] = await kintsugi.cost_rows(job["id"])
    assert row.outcome == "failed_billed"
    assert row.cost_usd is not None


async def test_with_the_policy_engine_off_the_job_runs_unguarded(kintsugi: Harness) -> None:
    await _policy(kintsugi, {"guardrails": {"input": {"pii": {"action": "block"}}}})
    await _set_flag(kintsugi, "enable_policy_engine", False)
    kintsugi.upstream.configure(kintsugi.model("a"))

    job = (await kintsugi.submit({"model": "primary", "messages": EMAIL_PROMPT}, wait=20)).json()

    assert job["status"] == "succeeded", job
    [preflight] = _spans(await _trace(kintsugi, job["id"]), "preflight")
    assert "enable_policy_engine" in preflight["attributes"]["skipped"]


async def test_fifty_concurrent_jobs_on_a_budget_that_covers_ten(kintsugi_db: Harness) -> None:
    kintsugi = kintsugi_db
    messages = [{"role": "user", "content": "Summarise the quarterly report in one paragraph."}]
    max_tokens = 1000
    dry_run = await kintsugi.http.post(
        "/v1/policies/evaluate",
        json={"document": {}, "request": {"model": "priced", "messages": messages, "params": {"max_tokens": 1000}}},
        headers=kintsugi.admin,
    )
    estimate = dry_run.json()["estimated_cost_usd"]
    budget = round(estimate * 10.5, 9)
    await _policy(kintsugi, {"budgets": {"daily_usd": budget}})
    # Each answer uses nearly all of max_tokens, so a settled job frees almost nothing for an eleventh.
    kintsugi.upstream.configure("gpt-4o-mini", reasoning_tokens=max_tokens - 40, latency_ms=50)

    body = {"model": "priced", "messages": messages, "params": {"max_tokens": max_tokens}}
    responses = await asyncio.gather(*(kintsugi.submit(body, wait=30) for _ in range(50)))
    jobs = [response.json() for response in responses]

    succeeded = [job for job in jobs if job["status"] == "succeeded"]
    refused = [job for job in jobs if job["status"] == "failed"]
    assert len(succeeded) == 10, [job.get("error") for job in jobs]
    assert len(refused) == 40
    assert {job["error"]["code"] for job in refused} == {"budget_exceeded"}
    async with kintsugi.app.state.sessions() as session:
        tenant_rows = select(ModelCostLog.cost_usd).where(ModelCostLog.tenant_id == DEFAULT_TENANT_ID)
        costs = (await session.exec(tenant_rows)).all()
        open_ = (await session.exec(select(BudgetReservation).where(BudgetReservation.state == "reserved"))).all()
    assert sum(cost or 0 for cost in costs) <= budget
    assert open_ == []
    assert kintsugi.upstream.calls("gpt-4o-mini") == 10


async def test_an_abuse_score_over_the_flag_threshold_is_an_event_and_in_the_trace(kintsugi: Harness) -> None:
    await _policy(kintsugi, {"abuse": {"flag": 0.0, "block": 1.0}})
    kintsugi.upstream.configure(kintsugi.model("a"))

    job = (await kintsugi.submit({"model": "primary", "messages": EMAIL_PROMPT}, wait=20)).json()
    await _set_flag(kintsugi, "enable_abuse_detection", False)
    unscored = (await kintsugi.submit({"model": "primary", "messages": EMAIL_PROMPT}, wait=20)).json()

    assert job["status"] == unscored["status"] == "succeeded"
    [flagged] = [event for event in await kintsugi.events(job["id"]) if event.type == "abuse.flagged"]
    assert flagged.payload["action"] == "flag"
    [preflight] = _spans(await _trace(kintsugi, job["id"]), "preflight")
    assert preflight["attributes"]["policy"]["abuse_score"] == flagged.payload["score"]
    assert "abuse.flagged" not in await kintsugi.event_types(unscored["id"])
    [unscored_preflight] = _spans(await _trace(kintsugi, unscored["id"]), "preflight")
    assert "enable_abuse_detection" in unscored_preflight["attributes"]["skipped"]


async def test_tpm_charged_at_admission_is_settled_with_the_real_usage(kintsugi_db: Harness) -> None:
    kintsugi = kintsugi_db
    await _policy(kintsugi, {"rate": {"tenant_tpm": 100_000}})
    kintsugi.upstream.configure(kintsugi.model("a"))
    body = {"model": "primary", "messages": [{"role": "user", "content": "hi"}], "params": {"max_tokens": 20_000}}

    response = await kintsugi.submit(body, wait=20)
    job = response.json()

    assert job["status"] == "succeeded", job
    # Admission charged the prompt and all 20,000 tokens it may write; postflight gave back what it did not use.
    charged_remaining = int(response.headers["x-ratelimit-remaining"])
    assert charged_remaining < 100_000 - 20_000
    async with kintsugi.app.state.sessions() as session:
        bucket = await session.get(RateLimitBucket, f"tpm:tenant:{DEFAULT_TENANT_ID}")
    assert bucket is not None
    used = job["usage"]["input_tokens"] + job["usage"]["output_tokens"]
    assert bucket.tokens == pytest.approx(100_000 - used, abs=60)  # plus what refilled meanwhile, capped
