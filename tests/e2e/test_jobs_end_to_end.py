"""LLMJobWorkflow end to end: API -> real Temporal dev server -> worker -> real HTTP upstream with faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.common import HELLO
from tests.support.harness import Harness, KintsugiFactory


async def test_job_succeeds_and_is_billed_once(kintsugi: Harness) -> None:
    response = await kintsugi.submit({"model": "priced", "messages": HELLO, "metadata": {"ticket": "42"}}, wait=10)

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["result"]["content"] == "echo: hello"
    assert job["deployment"] == {"provider": "up", "model": "gpt-4o-mini"}
    assert job["attempts"] == 1
    assert job["metadata"] == {"ticket": "42"}
    assert job["finished_at"] is not None
    rows = await kintsugi.cost_rows(job["id"])
    assert len(rows) == 1
    usage = job["usage"]
    # gpt-4o-mini's catalogue price: $0.15 in / $0.60 out per million tokens.
    expected = (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6
    assert rows[0].cost_usd == pytest.approx(expected)
    assert job["cost_usd"] == pytest.approx(expected)
    assert await kintsugi.event_types(job["id"]) == ["job.started", "job.succeeded"]
    succeeded = (await kintsugi.events(job["id"]))[-1].payload
    assert succeeded["model"] == "gpt-4o-mini"
    assert (succeeded["input_tokens"], succeeded["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert succeeded["price_known"] is True
    assert succeeded["upstream_latency_ms"] >= 0


async def test_upstream_key_comes_from_the_environment(kintsugi: Harness) -> None:
    response = await kintsugi.submit({"model": "primary", "messages": HELLO}, wait=10)

    assert response.json()["status"] == "succeeded"
    headers = kintsugi.upstream.last_request(kintsugi.model("a"))["headers"]
    assert headers["authorization"] == "Bearer upstream-secret"


async def test_5xx_is_retried_then_succeeds(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_first=2, status=500)

    job = (await kintsugi.submit({"model": "primary", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "succeeded"
    assert job["attempts"] == 3
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 3
    assert len(await kintsugi.cost_rows(job["id"])) == 1


async def test_429_waits_for_retry_after(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_first=1, status=429, retry_after="1")

    started = time.monotonic()
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    # The routes file's backoff is 50 ms; only Retry-After explains a wait of a second.
    assert time.monotonic() - started >= 1.0


async def test_hung_upstream_times_out_and_is_retried(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_first=1, hang_s=10)

    job = (await kintsugi.submit({"model": "primary", "messages": HELLO}, wait=15)).json()

    assert job["status"] == "succeeded"
    assert job["attempts"] == 2


async def test_exhausted_deployment_reroutes_to_fallback(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=503)

    job = (await kintsugi.submit({"model": "fallback", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "succeeded"
    assert job["deployment"] == {"provider": "up", "model": kintsugi.model("b")}
    assert job["attempts"] == 4
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 3
    assert await kintsugi.event_types(job["id"]) == ["job.started", "job.rerouted", "job.succeeded"]


async def test_all_deployments_failing_fails_with_a_code(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    kintsugi.upstream.configure(kintsugi.model("b"), fail_always=True, status=401)

    job = (await kintsugi.submit({"model": "fallback", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "failed"
    assert job["error"]["code"] == "all_deployments_failed"
    assert "upstream_auth" in job["error"]["message"]
    # 401 is the deployment's fault: rerouted to, never retried.
    assert kintsugi.upstream.calls(kintsugi.model("b")) == 1
    assert await kintsugi.cost_rows(job["id"]) == []


async def test_bad_request_fails_at_once_without_reroute(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=400)

    job = (await kintsugi.submit({"model": "fallback", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "failed"
    assert job["error"]["code"] == "bad_request"
    assert job["attempts"] == 1
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 1
    assert kintsugi.upstream.calls(kintsugi.model("b")) == 0
    assert await kintsugi.event_types(job["id"]) == ["job.started", "job.failed"]


async def test_parked_job_repaired_by_retry(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    parked = await kintsugi.wait_status(job["id"], "parked")
    assert parked["error"]["code"] == "all_deployments_failed"

    kintsugi.upstream.configure(kintsugi.model("a"))  # the provider recovers
    response = await kintsugi.http.post(
        f"/v1/jobs/{job['id']}/repair", json={"action": "retry"}, headers=kintsugi.admin
    )

    assert response.status_code == 202, response.text
    done = await kintsugi.wait_status(job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["attempts"] == 4
    assert done["error"] is None
    assert len(await kintsugi.cost_rows(job["id"])) == 1
    assert await kintsugi.event_types(job["id"]) == [
        "job.started",
        "job.parked",
        "job.repaired",
        "job.succeeded",
    ]


async def test_parked_job_repaired_by_reroute(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    await kintsugi.wait_status(job["id"], "parked")

    response = await kintsugi.http.post(
        f"/v1/jobs/{job['id']}/repair", json={"action": "reroute", "model": "other"}, headers=kintsugi.admin
    )

    assert response.status_code == 202, response.text
    done = await kintsugi.wait_status(job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["model"] == "other"
    assert done["deployment"] == {"provider": "up", "model": kintsugi.model("c")}


async def test_parked_job_aborted(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    await kintsugi.wait_status(job["id"], "parked")

    await kintsugi.http.post(f"/v1/jobs/{job['id']}/repair", json={"action": "abort"}, headers=kintsugi.admin)

    done = await kintsugi.wait_status(job["id"], "failed")
    assert done["error"]["code"] == "aborted"


async def test_repair_of_a_job_that_is_not_parked_is_refused(kintsugi: Harness) -> None:
    job = (await kintsugi.submit({"model": "sim-1", "messages": HELLO}, wait=10)).json()

    response = await kintsugi.http.post(
        f"/v1/jobs/{job['id']}/repair", json={"action": "retry"}, headers=kintsugi.admin
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_parked"


async def test_repair_reroute_to_unknown_model_is_refused(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    await kintsugi.wait_status(job["id"], "parked")

    response = await kintsugi.http.post(
        f"/v1/jobs/{job['id']}/repair", json={"action": "reroute", "model": "nope"}, headers=kintsugi.admin
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_model"
    assert (await kintsugi.wait_status(job["id"], "parked"))["status"] == "parked"


async def test_cancel_a_parked_job(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    await kintsugi.wait_status(job["id"], "parked")

    response = await kintsugi.http.post(f"/v1/jobs/{job['id']}/cancel", headers=kintsugi.admin)

    assert response.status_code == 202
    done = await kintsugi.wait_status(job["id"], "cancelled")
    assert done["finished_at"] is not None
    again = await kintsugi.http.post(f"/v1/jobs/{job['id']}/cancel", headers=kintsugi.admin)
    assert again.status_code == 409


async def test_park_timeout_fails_the_job(make_kintsugi: KintsugiFactory, sqlite_url: str) -> None:
    async with make_kintsugi(sqlite_url, park_timeout_s=0.5) as kintsugi:
        kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
        job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()

        done = await kintsugi.wait_status(job["id"], "failed")

        assert done["error"]["code"] == "park_timeout"
        assert await kintsugi.event_types(job["id"]) == ["job.started", "job.parked", "job.failed"]


async def _cancel_mid_call(kintsugi: Harness, route: str) -> dict[str, Any]:
    """Submit a job whose call takes 1.5 s, cancel it once the call is under way; the job as it ended."""
    kintsugi.upstream.configure(kintsugi.model("a"), latency_ms=1500)
    job = (await kintsugi.submit({"model": route, "messages": HELLO})).json()
    for _ in range(100):
        if kintsugi.upstream.calls(kintsugi.model("a")):
            break
        await asyncio.sleep(0.02)
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 1

    response = await kintsugi.http.post(f"/v1/jobs/{job['id']}/cancel", headers=kintsugi.admin)

    assert response.status_code == 202
    return await kintsugi.wait_status(job["id"], "cancelled", "succeeded", "failed")


async def test_cancel_a_job_mid_call(kintsugi: Harness) -> None:
    done = await _cancel_mid_call(kintsugi, "activity")

    assert done["status"] == "cancelled"
    assert await kintsugi.cost_rows(done["id"]) == []
    assert await kintsugi.event_types(done["id"]) == ["job.started", "job.cancelled"]


async def test_a_cancel_during_a_local_call_lands_once_the_call_is_over_and_the_call_is_billed(
    kintsugi: Harness,
) -> None:
    # A local call holds its workflow task: the cancel reaches the job once the call has answered, and the
    # provider has charged for that answer, so it is billed although the job ends cancelled.
    done = await _cancel_mid_call(kintsugi, "local-fallback")

    assert done["status"] == "cancelled"
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 1
    assert len(await kintsugi.cost_rows(done["id"])) == 1
    assert await kintsugi.event_types(done["id"]) == ["job.started", "job.succeeded", "job.cancelled"]


async def test_local_call_mode_retries_and_reroutes(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=503)
    kintsugi.upstream.configure(kintsugi.model("b"), fail_first=1, status=500)

    job = (await kintsugi.submit({"model": "local-fallback", "messages": HELLO}, wait=10)).json()

    assert job["status"] == "succeeded", job
    assert job["deployment"] == {"provider": "up-local", "model": kintsugi.model("b")}
    assert job["attempts"] == 5
    assert len(await kintsugi.cost_rows(job["id"])) == 1
    trace = (await kintsugi.http.get(f"/v1/jobs/{job['id']}/trace", headers=kintsugi.admin)).json()
    calls = [span for span in trace["root"]["children"] if span["attributes"].get("activity_type") == "call_model"]
    assert [(c["kind"], c["attributes"]["model"], c["attributes"]["attempts"]) for c in calls] == [
        ("local_activity", kintsugi.model("a"), 3),
        ("local_activity", kintsugi.model("b"), 2),
    ]
    assert any(span["kind"] == "reroute" for span in trace["root"]["children"])
    assert calls[1]["attributes"]["input_tokens"] == job["usage"]["input_tokens"]  # the billed call


async def test_local_call_mode_bad_request_fails_at_once(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=400)

    job = (await kintsugi.submit({"model": "local-fallback", "messages": HELLO}, wait=10)).json()

    assert (job["status"], job["error"]["code"], job["attempts"]) == ("failed", "bad_request", 1)
    assert kintsugi.upstream.calls(kintsugi.model("b")) == 0


async def test_anthropic_deployment_with_openai_fallback(kintsugi: Harness) -> None:
    system = {"role": "system", "content": "be brief"}
    job = (await kintsugi.submit({"model": "claude", "messages": [system, *HELLO]}, wait=10)).json()

    assert job["status"] == "succeeded"
    assert job["result"]["content"] == "echo: hello"
    assert job["deployment"] == {"provider": "claude", "model": kintsugi.model("a")}
    sent = kintsugi.upstream.last_request(kintsugi.model("a"))
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "upstream-secret"
    assert sent["body"]["system"] == "be brief"

    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=529)
    rerouted = (await kintsugi.submit({"model": "claude", "messages": HELLO}, wait=10)).json()

    assert rerouted["deployment"] == {"provider": "up", "model": kintsugi.model("b")}


async def test_a_job_terminated_from_temporal_reads_failed_with_a_code(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    body = {"model": "primary", "messages": HELLO, "on_exhausted": "park", "metadata": {"ticket": "7"}}
    job = (await kintsugi.submit(body)).json()
    await kintsugi.wait_status(job["id"], "parked")

    await kintsugi.temporal.get_workflow_handle(job["id"]).terminate("operator gave up")

    done = await kintsugi.wait_status(job["id"], "failed")
    assert done["error"]["code"] == "terminated"
    assert done["metadata"] == {"ticket": "7"}
    assert done["finished_at"] is not None
