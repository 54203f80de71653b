"""The Langfuse sink against a local OTLP receiver: real jobs run through Kintsugi (dev server, API and worker,
the fake upstream), then their terminal outbox events are delivered, and what arrives is decoded from
protobuf the way Langfuse's OTLP endpoint reads it."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from langfuse import Langfuse

from activities.exports.langfuse import OTLP_PATH, LangfuseConfig, LangfuseRejected, LangfuseSink
from schemas.exports import TERMINAL_JOB_EVENTS, OutboxEvent
from store.queries import DEFAULT_TENANT_ID
from tests.support.harness import Harness, KintsugiFactory
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

PUBLIC_KEY, SECRET_KEY = "pk-lf-test", "sk-lf-test"
PII_PROMPT = [{"role": "user", "content": "Write to jane.doe@example.com and say the invoice is paid."}]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
async def sink(kintsugi: Harness, receiver: OtlpReceiver) -> AsyncIterator[LangfuseSink]:
    async with httpx.AsyncClient() as http:
        built = LangfuseSink(
            LangfuseConfig(base_url=receiver.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY),
            temporal=kintsugi.temporal,
            http=http,
        )
        try:
            yield built
        finally:
            built.close()  # the SDK keeps one client per key per process: the next test builds its own


async def _terminal_events(kintsugi: Harness, job_id: str) -> list[OutboxEvent]:
    """The job's terminal outbox rows, as the export activity hands them to a sink."""
    rows = [row for row in await kintsugi.events(job_id) if row.type in TERMINAL_JOB_EVENTS]
    assert rows, f"job {job_id} has no terminal event"
    return [OutboxEvent.model_validate(row, from_attributes=True) for row in rows]


async def _run(kintsugi: Harness, body: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = (await kintsugi.submit(body, wait=20)).json()
    assert job["status"] in ("succeeded", "failed"), job
    return job


def _one(spans: list[ReceivedSpan], observation_type: str) -> ReceivedSpan:
    [found] = [span for span in spans if span.attributes.get("langfuse.observation.type") == observation_type]
    return found


def _payload_bytes(node: Any) -> Iterator[bytes]:
    """The raw bytes of every payload in a history as Temporal stores it."""
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node.get("data"), str):
            yield base64.b64decode(node["data"])
        for value in node.values():
            yield from _payload_bytes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payload_bytes(item)


@contextmanager
def _connections() -> Iterator[list[tuple[str, int]]]:
    """Every TCP connection this process opens while the block runs."""
    opened: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            opened.append((address[0], address[1]))
        return real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    try:
        yield opened
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]


async def test_a_finished_job_arrives_as_a_trace_with_its_generation_redacted(
    kintsugi: Harness, receiver: OtlpReceiver, sink: LangfuseSink
) -> None:
    policy = {"name": "redact", "document": {"guardrails": {"input": {"pii": {"action": "redact"}}}}, "default": True}
    response = await kintsugi.http.post("/v1/policies", json=policy, headers=kintsugi.admin)
    assert response.status_code == 201, response.text
    kintsugi.upstream.configure("gpt-4o-mini")
    job = await _run(kintsugi, {"model": "priced", "messages": PII_PROMPT, "params": {"temperature": 0.2}})
    [cost] = await kintsugi.cost_rows(job["id"])

    await sink.deliver(await _terminal_events(kintsugi, job["id"]))

    spans = receiver.spans()
    assert len(spans) == 2
    root, generation = _one(spans, "span"), _one(spans, "generation")
    assert root.trace_id == generation.trace_id == Langfuse.create_trace_id(seed=job["id"])
    assert generation.parent_span_id == root.span_id and root.parent_span_id == ""
    attributes = generation.attributes
    assert attributes["langfuse.observation.model.name"] == "gpt-4o-mini"
    assert json.loads(attributes["langfuse.observation.model.parameters"]) == {"temperature": 0.2}
    usage = json.loads(attributes["langfuse.observation.usage_details"])
    assert (usage["input"], usage["output"]) == (cost.input_tokens, cost.output_tokens)
    assert json.loads(attributes["langfuse.observation.cost_details"]) == {"total": pytest.approx(cost.cost_usd)}
    sent = json.loads(attributes["langfuse.observation.input"])
    assert sent == [{"role": "user", "content": "Write to [EMAIL] and say the invoice is paid."}]
    assert "jane.doe" not in json.dumps([span.attributes for span in spans])
    assert json.loads(attributes["langfuse.observation.output"])["content"] == job["result"]["content"]
    assert attributes["user.id"] == DEFAULT_TENANT_ID
    assert json.loads(attributes["langfuse.trace.metadata.job_id"]) == job["id"]
    assert attributes["langfuse.trace.name"] == "job priced"
    # Times from history: the call lies within the job, and neither is the moment of export.
    assert root.start_ns <= generation.start_ns < generation.end_ns <= root.end_ns
    assert root.end_ns - root.start_ns < 20 * 10**9


async def test_it_posts_to_langfuses_otlp_route_with_basic_auth_and_nowhere_else(
    kintsugi: Harness, receiver: OtlpReceiver
) -> None:
    job = await _run(kintsugi, {"model": "primary", "messages": [{"role": "user", "content": "hi"}]})
    events = await _terminal_events(kintsugi, job["id"])
    port = int(receiver.url.rsplit(":", 1)[1])

    async with httpx.AsyncClient() as http:
        with _connections() as opened:
            built = LangfuseSink(
                LangfuseConfig(base_url=receiver.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY),
                temporal=kintsugi.temporal,
                http=http,
            )
            try:
                await built.deliver(events)
            finally:
                built.close()

    assert {address[1] for address in opened} == {port}
    [span, *_] = receiver.spans()
    assert span.path == OTLP_PATH
    assert span.content_type == "application/x-protobuf"
    assert span.headers["authorization"] == "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()


async def test_a_failed_job_and_its_failed_call_are_errors(
    kintsugi: Harness, receiver: OtlpReceiver, sink: LangfuseSink
) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=400)
    job = await _run(kintsugi, {"model": "primary", "messages": [{"role": "user", "content": "hi"}]})
    assert job["status"] == "failed"

    await sink.deliver(await _terminal_events(kintsugi, job["id"]))

    spans = receiver.spans()
    root, generation = _one(spans, "span"), _one(spans, "generation")
    assert root.attributes["langfuse.observation.level"] == "ERROR"
    assert root.attributes["langfuse.observation.status_message"]
    assert generation.attributes["langfuse.observation.level"] == "ERROR"
    assert "langfuse.observation.output" not in generation.attributes


async def test_a_refused_delivery_raises_and_a_retry_sends_the_same_trace_again(
    kintsugi: Harness, receiver: OtlpReceiver, sink: LangfuseSink
) -> None:
    job = await _run(kintsugi, {"model": "primary", "messages": [{"role": "user", "content": "hi"}]})
    events = await _terminal_events(kintsugi, job["id"])
    receiver.fail(503)

    with pytest.raises(LangfuseRejected):
        await sink.deliver(events)

    receiver.recover()
    await sink.deliver(events)
    await sink.deliver(events)
    first, again = receiver.spans()[:2], receiver.spans()[2:]
    # The same ids each time: Langfuse updates the trace rather than adding another.
    assert {(s.trace_id, s.span_id) for s in first} == {(s.trace_id, s.span_id) for s in again}
    assert len(first) == 2


async def test_a_job_temporal_no_longer_has_is_skipped(
    kintsugi: Harness, receiver: OtlpReceiver, sink: LangfuseSink
) -> None:
    job = await _run(kintsugi, {"model": "primary", "messages": [{"role": "user", "content": "hi"}]})
    [event] = await _terminal_events(kintsugi, job["id"])
    gone = event.model_copy(update={"job_id": "job_gone_past_retention"})

    await sink.deliver([gone])

    assert receiver.requests == 0


async def test_with_the_codec_on_history_is_encrypted_yet_the_generation_arrives_readable(
    make_kintsugi: KintsugiFactory, sqlite_url: str, receiver: OtlpReceiver
) -> None:
    async with make_kintsugi(sqlite_url, codec_key=base64.b64encode(os.urandom(32)).decode()) as kintsugi:
        job = await _run(kintsugi, {"model": "primary", "messages": [{"role": "user", "content": "a secret plan"}]})
        raw = await kintsugi.temporal.get_workflow_handle(job["id"]).fetch_history()
        assert b"secret plan" not in b"".join(_payload_bytes(raw.to_json_dict()))
        async with httpx.AsyncClient() as http:
            built = LangfuseSink(
                LangfuseConfig(base_url=receiver.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY),
                temporal=kintsugi.temporal,
                http=http,
            )
            try:
                await built.deliver(await _terminal_events(kintsugi, job["id"]))
            finally:
                built.close()

    generation = _one(receiver.spans(), "generation")
    assert json.loads(generation.attributes["langfuse.observation.input"]) == [
        {"role": "user", "content": "a secret plan"}
    ]
    assert json.loads(generation.attributes["langfuse.observation.output"])["content"] == job["result"]["content"]
