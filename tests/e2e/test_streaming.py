"""Token streaming that stays durable: relayed live from the worker, resumable, surviving a killed worker."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.harness import ADMIN_KEY, Harness, KintsugiFactory
from tests.support.sse import Event, events

ANSWER = "one two three four five six"
CHUNKS = 6
DELAY_MS = 200
"""Between the upstream's chunks; the whole answer (1 s) stays inside the test routes' 2 s call timeout."""


def chat(model: str = "primary", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "count"}], "stream": True, **extra}


async def test_tokens_reach_the_client_as_the_upstream_sends_them(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), content=ANSWER, chunks=CHUNKS, chunk_delay_ms=DELAY_MS)
    async with kintsugi.serve_http() as url:
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0)
        arrivals: list[tuple[float, str]] = []
        stream = await sdk.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "count"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        job_id = ""
        usage = None
        async for part in stream:
            job_id = part.id
            usage = part.usage or usage
            if part.choices and part.choices[0].delta.content:
                arrivals.append((time.monotonic(), part.choices[0].delta.content))
        await sdk.close()

    assert "".join(text for _, text in arrivals) == ANSWER
    # Relayed, not buffered: the pieces arrive spread over the upstream's own pauses (5 of 200 ms).
    assert len(arrivals) >= CHUNKS - 1
    assert arrivals[-1][0] - arrivals[0][0] > 0.5
    assert usage is not None and usage.completion_tokens > 0
    job = (await kintsugi.http.get(f"/v1/jobs/{job_id}", headers=kintsugi.admin)).json()
    assert (job["status"], job["result"]["content"]) == ("succeeded", ANSWER)
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 1
    assert len(await kintsugi.cost_rows(job_id)) == 1


async def test_a_dropped_client_resumes_where_it_left_without_a_second_call(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), content=ANSWER, chunks=CHUNKS, chunk_delay_ms=DELAY_MS)
    async with kintsugi.serve_http() as url, httpx.AsyncClient(base_url=url, headers=kintsugi.admin) as http:
        seen: list[Event] = []
        async with http.stream("POST", "/v1/chat/completions", json=chat()) as response:
            job_id = response.headers["x-kintsugi-job-id"]
            async for event in events(response):
                seen.append(event)
                if sum(1 for e in seen if e.text) == 2:
                    break  # the client goes away mid-answer
        last_id = seen[-1].id
        assert last_id is not None

        async with http.stream("GET", f"/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": last_id}) as resumed:
            rest = [event async for event in events(resumed)]
        async with http.stream("GET", f"/v1/jobs/{job_id}/stream") as whole:
            replayed = [event async for event in events(whole)]

    assert "".join(e.text for e in seen + rest) == ANSWER
    assert rest[-1].data == "[DONE]"
    assert "".join(e.text for e in replayed) == ANSWER  # after the job finished: from the record
    job = (await kintsugi.http.get(f"/v1/jobs/{job_id}", headers=kintsugi.admin)).json()
    assert job["status"] == "succeeded"  # leaving did not cancel it
    assert kintsugi.upstream.calls(kintsugi.model("a")) == 1
    assert len(await kintsugi.cost_rows(job_id)) == 1


async def test_a_killed_worker_ends_the_live_stream_with_the_job_id_and_the_job_finishes(
    make_kintsugi: KintsugiFactory, sqlite_url: str, tmp_path: Path
) -> None:
    # No API worker: the job streams from the worker process that is killed.
    async with make_kintsugi(sqlite_url, run_worker=False, api_worker=False) as kintsugi:
        kintsugi.upstream.configure(kintsugi.model("a"), content=ANSWER, chunks=CHUNKS, chunk_delay_ms=DELAY_MS)
        log = tmp_path / "worker.log"
        async with kintsugi.serve_http() as url, httpx.AsyncClient(base_url=url, headers=kintsugi.admin) as http:
            live: list[Event] = []
            with kintsugi.worker_process(log) as worker:
                async with http.stream("POST", "/v1/chat/completions", json=chat()) as response:
                    job_id = response.headers["x-kintsugi-job-id"]
                    async for event in events(response):
                        live.append(event)
                        if event.text and worker.poll() is None:
                            worker.send_signal(signal.SIGKILL)  # mid-stream
            assert any(e.text for e in live), log.read_text()
            error = live[-1].json()["error"]
            assert job_id in error["message"]

            with kintsugi.worker_process(log):
                job = await kintsugi.wait_status(job_id, "succeeded", "failed", timeout_s=60)
                async with http.stream("GET", f"/v1/jobs/{job_id}/stream") as resumed:
                    answer = "".join([e.text async for e in events(resumed)])

        assert job["status"] == "succeeded", log.read_text()
        assert answer == ANSWER
        assert kintsugi.upstream.calls(kintsugi.model("a")) == 2  # the killed call, made again elsewhere
        assert len(await kintsugi.cost_rows(job_id)) == 1


async def test_with_the_relay_off_a_stream_arrives_once_the_job_has_finished(
    make_kintsugi: KintsugiFactory, sqlite_url: str
) -> None:
    async with make_kintsugi(sqlite_url, stream_relay=False) as kintsugi:
        kintsugi.upstream.configure(kintsugi.model("a"), content=ANSWER)
        async with kintsugi.serve_http() as url, httpx.AsyncClient(base_url=url, headers=kintsugi.admin) as http:
            async with http.stream("POST", "/v1/chat/completions", json=chat()) as response:
                received = [event async for event in events(response)]

        assert "".join(e.text for e in received) == ANSWER
        assert received[-1].data == "[DONE]"
        # Nobody relays: the worker made a plain call and the answer was streamed from the record.
        assert "stream" not in kintsugi.upstream.last_request(kintsugi.model("a"))["body"]


async def test_resuming_another_tenants_job_is_404_and_a_bad_event_id_is_400(kintsugi: Harness) -> None:
    job = (await kintsugi.submit({"model": "sim-1", "messages": [{"role": "user", "content": "x"}]}, wait=10)).json()
    tenant = (await kintsugi.http.post("/v1/tenants", json={"name": "t2"}, headers=kintsugi.admin)).json()
    key = (
        await kintsugi.http.post("/v1/keys", json={"tenant_id": tenant["id"], "role": "viewer"}, headers=kintsugi.admin)
    ).json()["key"]

    foreign = await kintsugi.http.get(f"/v1/jobs/{job['id']}/stream", headers={"Authorization": f"Bearer {key}"})
    bad_id = await kintsugi.http.get(
        f"/v1/jobs/{job['id']}/stream", headers={**kintsugi.admin, "Last-Event-ID": "twelve"}
    )

    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "job_not_found")
    assert (bad_id.status_code, bad_id.json()["error"]["code"]) == (400, "invalid_last_event_id")


async def test_a_relay_without_the_jobs_token_is_refused(kintsugi: Harness) -> None:
    response = await kintsugi.http.post(
        "/internal/relay/job_x", content=b"{}\n", headers={"X-Kintsugi-Relay-Token": "guess"}
    )

    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_relay_token")


async def test_a_relayed_call_that_times_out_ends_the_stream_and_holds_no_connection(
    make_kintsugi: KintsugiFactory, sqlite_url: str
) -> None:
    async with make_kintsugi(sqlite_url) as kintsugi:
        # 8 pieces 400 ms apart outlast the test routes' 2 s call timeout, on every attempt.
        kintsugi.upstream.configure(kintsugi.model("a"), content=ANSWER, chunks=8, chunk_delay_ms=400)
        async with asyncio.timeout(60):  # a relay left open would keep the server from shutting down
            async with kintsugi.serve_http() as url, httpx.AsyncClient(base_url=url, headers=kintsugi.admin) as http:
                async with http.stream("POST", "/v1/chat/completions", json=chat()) as response:
                    received = [event async for event in events(response)]

        error = received[-1].json()["error"]
        assert response.headers["x-kintsugi-job-id"] in error["message"]
        assert await kintsugi.cost_rows(response.headers["x-kintsugi-job-id"]) == []


async def test_an_event_id_that_is_not_an_offset_is_400(kintsugi: Harness) -> None:
    job = (await kintsugi.submit({"model": "sim-1", "messages": [{"role": "user", "content": "x"}]}, wait=10)).json()

    for bad in ("²".encode("latin-1"), b"9" * 5000, b"-1"):  # `isdigit` is true of the first two
        headers = {b"Authorization": kintsugi.admin["Authorization"].encode(), b"Last-Event-ID": bad}
        response = await kintsugi.http.get(f"/v1/jobs/{job['id']}/stream", headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_last_event_id"), bad
