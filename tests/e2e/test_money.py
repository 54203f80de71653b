"""Money end to end (dev server, the API with its worker, the fake upstream; SQLite and PostgreSQL): a tenant's
flags change what its jobs record, a repeated request is answered from the response cache without the SDK
noticing, and what a hit saved shows in `/v1/costs` and the job's trace."""

from __future__ import annotations

from typing import Any

import openai

from store.queries import DEFAULT_TENANT_ID
from tests.support.harness import Harness
from tests.support.sdk import openai_sdk

QUESTION = [{"role": "user", "content": "Name the three primary colours of light, comma separated, nothing else."}]


async def _set_flag(kintsugi: Harness, key: str, enabled: bool) -> None:
    response = await kintsugi.http.put(
        f"/v1/flags/{key}", json={"enabled": enabled, "tenant_id": DEFAULT_TENANT_ID}, headers=kintsugi.admin
    )
    assert response.status_code == 200, response.text


async def _job(kintsugi: Harness, job_id: str) -> dict[str, Any]:
    response = await kintsugi.http.get(f"/v1/jobs/{job_id}", headers=kintsugi.admin)
    assert response.status_code == 200, response.text
    return response.json()


async def _trace(kintsugi: Harness, job_id: str) -> dict[str, Any]:
    response = await kintsugi.http.get(f"/v1/jobs/{job_id}/trace", headers=kintsugi.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _preflight(trace: dict[str, Any]) -> dict[str, Any]:
    [span] = [child for child in trace["root"]["children"] if child["name"] == "preflight"]
    return span


async def test_a_repeated_chat_comes_from_the_cache_and_the_sdk_cannot_tell(kintsugi_db: Harness) -> None:
    async with openai_sdk(kintsugi_db) as sdk:
        await _answered_from_the_cache(kintsugi_db, sdk)


async def _answered_from_the_cache(kintsugi: Harness, sdk: openai.AsyncOpenAI) -> None:
    await _set_flag(kintsugi, "enable_response_cache", True)
    kintsugi.upstream.configure("gpt-4o-mini")  # restarts its request count

    first = await sdk.chat.completions.with_raw_response.create(model="priced", messages=QUESTION)  # type: ignore[arg-type]
    second = await sdk.chat.completions.with_raw_response.create(model="priced", messages=QUESTION)  # type: ignore[arg-type]
    streamed = await sdk.chat.completions.create(model="priced", messages=QUESTION, stream=True)  # type: ignore[arg-type]
    assert isinstance(streamed, openai.AsyncStream)
    chunks = [chunk async for chunk in streamed]

    answer, repeat = first.parse(), second.parse()
    assert kintsugi.upstream.calls("gpt-4o-mini") == 1
    assert repeat.choices[0].message.content == answer.choices[0].message.content
    assert repeat.choices[0].finish_reason == answer.choices[0].finish_reason == "stop"
    assert repeat.usage is not None and repeat.usage.total_tokens == answer.usage.total_tokens  # type: ignore[union-attr]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.choices[0].message.content

    hit_id = second.headers["x-kintsugi-job-id"]
    job = await _job(kintsugi, hit_id)
    assert (job["status"], job["cache_hit"], job["cost_usd"]) == ("succeeded", True, 0.0)
    [row] = await kintsugi.cost_rows(hit_id)
    assert (row.outcome, row.cost_usd, row.input_tokens) == ("cache_hit", 0.0, 0)
    [billed] = await kintsugi.cost_rows(first.headers["x-kintsugi-job-id"])
    assert billed.cost_usd is not None and billed.cost_usd > 0
    assert row.saved_usd == billed.cost_usd
    assert await kintsugi.event_types(hit_id) == ["job.started", "job.cache_hit"]
    assert (
        _preflight(await _trace(kintsugi, hit_id))["attributes"]["cache_hit"]["job_id"]
        == first.headers["x-kintsugi-job-id"]
    )

    costs = (await kintsugi.http.get("/v1/costs?group_by=route", headers=kintsugi.admin)).json()
    [priced] = [group for group in costs["data"] if group["group"] == "priced"]
    assert (priced["calls"], priced["cache_hits"]) == (3, 2)
    assert priced["spend_usd"] == billed.cost_usd
    assert abs(priced["saved_usd"] - 2 * billed.cost_usd) < 1e-12


async def test_without_the_cache_flag_every_repeat_calls_the_provider(
    kintsugi: Harness, sdk: openai.AsyncOpenAI
) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"))

    for _ in range(2):
        await sdk.chat.completions.create(model="primary", messages=QUESTION)  # type: ignore[arg-type]

    assert kintsugi.upstream.calls(kintsugi.model("a")) == 2


async def test_with_cost_tracking_off_a_job_runs_and_its_trace_says_what_was_skipped(kintsugi_db: Harness) -> None:
    kintsugi = kintsugi_db
    await _set_flag(kintsugi, "track_model_costs", False)

    response = await kintsugi.submit({"model": "priced", "messages": QUESTION}, wait=10)

    job = response.json()
    assert response.status_code == 200 and job["status"] == "succeeded", response.text
    assert await kintsugi.cost_rows(job["id"]) == []
    assert "track_model_costs" in _preflight(await _trace(kintsugi, job["id"]))["attributes"]["skipped"]

    await _set_flag(kintsugi, "track_model_costs", True)
    again = (await kintsugi.submit({"model": "priced", "messages": QUESTION}, wait=10)).json()
    assert len(await kintsugi.cost_rows(again["id"])) == 1
