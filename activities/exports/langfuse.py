"""The Langfuse sink: each finished job becomes a Langfuse trace, with a generation per model call.

The langfuse SDK makes the observations (its attribute names, its span processor) on a TracerProvider of the
sink's own, never the global one: live OpenTelemetry spans never reach Langfuse, nor Langfuse's the collector.
The SDK's OTLP exporter logs a failed export and drops it, and the outbox must know: so the sink's exporter
only collects what the processor hands over, and the sink posts it itself — OTLP protobuf to Langfuse's
`/api/public/otel/v1/traces`, with the SDK's headers, through the worker's HTTP client — raising on anything
but a 2xx, so the batch is retried and nothing is marked exported that Langfuse did not take.

Ids come from the job id: the trace id is `Langfuse.create_trace_id(seed=job_id)` (the OTLP job trace's id
too), and each span's id is derived from the job and the call, so a batch sent again updates the same trace.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from langfuse import Langfuse, LangfuseGeneration, LangfuseSpan, propagate_attributes
from langfuse import __version__ as langfuse_version
from langfuse._client.constants import LANGFUSE_TRACER_NAME
from langfuse._client.resource_manager import LangfuseResourceManager
from langfuse.types import SpanLevel
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from temporalio.client import Client

from activities.exports.finished_jobs import closed_job
from client import job_client
from domain.errors import JobNotFound
from domain.exports.generation import JobCalls, ModelCall, job_calls
from domain.traces.otlp import span_id_of, trace_id_of
from schemas.exports import TERMINAL_JOB_EVENTS, OutboxEvent, SinkName
from settings import Settings

OTLP_PATH = "/api/public/otel/v1/traces"
"""Where Langfuse takes OTLP traces, under its base URL (what the SDK's own exporter posts to)."""
REQUEST_TIMEOUT_S = 30.0
MAX_REQUEST_BYTES = 4_000_000
"""A batch's traces go in requests of at most this size (a job larger on its own still goes, alone)."""
FLUSH_EVERY_JOBS = 200
"""Jobs recorded between flushes: the SDK's processor queues at most 2048 spans and drops any more."""
HISTORY_READS = 16
"""Job histories read from Temporal at once while a batch is prepared."""

log = logging.getLogger("kintsugi.exports.langfuse")


@dataclass(frozen=True)
class LangfuseConfig:
    base_url: str
    public_key: str
    secret_key: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LangfuseConfig | None:
        """`LANGFUSE_BASE_URL` and its keys; None when the base URL is not set (Langfuse export is off)."""
        base_url = environ.get("LANGFUSE_BASE_URL", "").strip().rstrip("/")
        if not base_url:
            return None
        public_key = environ.get("LANGFUSE_PUBLIC_KEY", "").strip()
        secret_key = environ.get("LANGFUSE_SECRET_KEY", "").strip()
        if not public_key or not secret_key:
            raise ValueError("LANGFUSE_BASE_URL is set: LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must be set too")
        return cls(base_url=base_url, public_key=public_key, secret_key=secret_key)


class LangfuseRejected(Exception):
    """Langfuse answered with a non-2xx status: nothing of that request counts as delivered."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Langfuse answered {status}: {body[:200]}")
        self.status = status


class _Collected(SpanExporter):
    """Keeps the spans the SDK's processor exports (from its thread), for the sink to post and check."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def take(self, trace_ids: set[int]) -> list[ReadableSpan]:
        """The spans of these traces, removed; those of any other stay (a concurrent delivery's)."""
        with self._lock:
            taken: list[ReadableSpan] = []
            kept: list[ReadableSpan] = []
            for span in self._spans:
                (taken if span.context is not None and span.context.trace_id in trace_ids else kept).append(span)
            self._spans = kept
        return taken

    def shutdown(self) -> None:
        with self._lock:
            self._spans.clear()


class _JobIds(IdGenerator):
    """The ids of the span about to start, set by the sink just before it starts it; random otherwise.

    Set and read within one synchronous stretch of the event loop's thread (`LangfuseSink._record`), under
    the sink's lock, so no other span can take them.
    """

    def __init__(self) -> None:
        self.next_trace_id: int | None = None
        self.next_span_id: int | None = None
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        trace_id, self.next_trace_id = self.next_trace_id, None
        return trace_id if trace_id is not None else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        span_id, self.next_span_id = self.next_span_id, None
        return span_id if span_id is not None else self._random.generate_span_id()


class LangfuseSink:
    """One Langfuse trace per finished job (its terminal event): the job as a span, each call a generation."""

    name: SinkName = "langfuse"

    def __init__(self, config: LangfuseConfig, *, temporal: Client, http: httpx.AsyncClient) -> None:
        self._temporal = temporal
        self._http = http
        """Without retries of its own: the export activity's retry policy is the only one."""
        self._url = config.base_url + OTLP_PATH
        self._auth = httpx.BasicAuth(config.public_key, config.secret_key)
        # The headers the SDK's own exporter sends, so Langfuse reads these spans as the SDK's.
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "x-langfuse-sdk-name": "python",
            "x-langfuse-sdk-version": langfuse_version,
            "x-langfuse-public-key": config.public_key,
            "x-langfuse-ingestion-version": "4",
        }
        self._lock = threading.Lock()
        self._ids = _JobIds()
        self._collected = _Collected()
        self._provider = TracerProvider(resource=Resource({"service.name": "kintsugi"}), id_generator=self._ids)
        self._client = Langfuse(
            public_key=config.public_key,
            secret_key=config.secret_key,
            base_url=config.base_url,
            tracer_provider=self._provider,
            span_exporter=self._collected,
        )
        # Spans start here rather than through `start_observation`, which cannot be given a start time; the
        # SDK's scope name and key attribute make its processor take them as its own.
        self._tracer = self._provider.get_tracer(
            LANGFUSE_TRACER_NAME, langfuse_version, attributes={"public_key": config.public_key}
        )

    def wants(self, event: OutboxEvent) -> bool:
        return event.type in TERMINAL_JOB_EVENTS

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Read each job's history (once it has closed), record its trace, and post the batch's traces."""
        jobs = [job for job in await self._read_jobs(events) if job is not None]
        if not jobs:
            return
        # The SDK takes ~3 ms of CPU per job to make its observations, encoding ~0.6 ms: in a thread, the worker's
        # event loop (its jobs' workflow tasks and local activities) goes on meanwhile.
        for body in await asyncio.to_thread(self._request_bodies, jobs):
            response = await self._http.post(
                self._url, content=body, auth=self._auth, headers=self._headers, timeout=REQUEST_TIMEOUT_S
            )
            if not response.is_success:
                raise LangfuseRejected(response.status_code, response.text)

    def _request_bodies(self, jobs: Sequence[JobCalls]) -> list[bytes]:
        """Every job's observations, out of the SDK's processor, as requests; raises if the processor lost any."""
        with self._lock:
            for start in range(0, len(jobs), FLUSH_EVERY_JOBS):
                for job in jobs[start : start + FLUSH_EVERY_JOBS]:
                    self._record(job)
                if not self._provider.force_flush():
                    raise RuntimeError("the Langfuse span processor did not flush in time")
            spans = self._collected.take({int(trace_id_of(job.job_id), 16) for job in jobs})
        # The processor drops spans when its queue is full, and says nothing. (More than expected is harmless: a
        # recording cut short earlier left spans with the same ids.)
        expected = sum(1 + len(job.calls) for job in jobs)
        if len(spans) < expected:
            raise RuntimeError(f"{expected} Langfuse observations were recorded but {len(spans)} reached the sink")
        return _request_bodies(spans)

    def close(self) -> None:
        """Stop the SDK's threads and forget its per-key client, so a sink built later gets a provider of its
        own (the SDK keeps one per public key per process, whatever `tracer_provider` a later client asks for)."""
        self._client.shutdown()
        LangfuseResourceManager.reset()

    async def _read_jobs(self, events: Sequence[OutboxEvent]) -> list[JobCalls | None]:
        reads = asyncio.Semaphore(HISTORY_READS)
        jobs = {event.job_id: event.tenant_id for event in events}  # one trace per job, whatever the events

        async def read(job_id: str, tenant_id: str) -> JobCalls | None:
            async with reads:
                try:
                    handle = await closed_job(self._temporal, tenant_id, job_id)
                    history = await job_client.job_history(handle)
                except JobNotFound:
                    # Past Temporal's retention (or deleted): there is nothing left to send, ever.
                    log.warning("job %s of tenant %s is gone from Temporal: no Langfuse trace", job_id, tenant_id)
                    return None
            return job_calls(job_id, history)

        return await asyncio.gather(*(read(job_id, tenant_id) for job_id, tenant_id in jobs.items()))

    def _start(self, job_id: str, key: str, name: str, at: datetime, parent: Context | None) -> otel_trace.Span:
        self._ids.next_trace_id = int(trace_id_of(job_id), 16) if parent is None else None
        self._ids.next_span_id = int(span_id_of(job_id, f"langfuse/{key}"), 16)
        return self._tracer.start_span(name, context=parent, start_time=_nanos(at))

    def _record(self, job: JobCalls) -> None:
        """The job's observations, ended, in the provider's processor (not sent yet)."""
        sent = job.calls[-1].messages if job.calls else None
        level: SpanLevel | None = (
            "ERROR" if job.status == "failed" else "WARNING" if job.status == "cancelled" else None
        )
        # Trace attributes go on every span started inside, which is how Langfuse reads them.
        with propagate_attributes(
            user_id=job.tenant_id,
            trace_name=f"job {job.route}",
            metadata={"job_id": job.job_id, "route": job.route, "status": job.status},
            tags=[job.status],
        ):
            root_span = self._start(job.job_id, "job", f"job {job.route}", job.started_at, None)
            root = LangfuseSpan(
                otel_span=root_span,
                langfuse_client=self._client,
                input=sent,
                output=job.output,
                metadata=_job_metadata(job),
                level=level,
                status_message=job.error_message,
            )
            parent = otel_trace.set_span_in_context(root_span)
            for call in job.calls:
                self._generation(job, call, parent)
            root.end(end_time=_nanos(job.ended_at or job.started_at))

    def _generation(self, job: JobCalls, call: ModelCall, parent: Context) -> None:
        span = self._start(
            job.job_id, f"call-{call.call_seq}", f"call {call.provider}/{call.model}", call.started_at, parent
        )
        LangfuseGeneration(
            otel_span=span,
            langfuse_client=self._client,
            model=call.model,
            model_parameters=dict(call.parameters),
            usage_details=call.usage,
            cost_details={"total": call.cost_usd} if call.cost_usd is not None else None,
            input=call.messages,
            output=call.output,
            metadata={"provider": call.provider, "call_seq": call.call_seq, "attempts": call.attempts},
            level="ERROR" if call.error else None,
            status_message=call.error,
        ).end(end_time=_nanos(call.ended_at or job.ended_at or call.started_at))


def langfuse_sink(
    settings: Settings, http: httpx.AsyncClient, environ: Mapping[str, str], *, temporal: Client
) -> LangfuseSink | None:
    """The Langfuse sink when `LANGFUSE_BASE_URL` is set (with its keys); None otherwise."""
    config = LangfuseConfig.from_env(environ)
    return None if config is None else LangfuseSink(config, temporal=temporal, http=http)


def _job_metadata(job: JobCalls) -> dict[str, Any]:
    found: dict[str, Any] = {"job_id": job.job_id, "status": job.status, "cache_hit": job.cache_hit}
    if job.error_code:
        found["error_code"] = job.error_code
    if job.metadata:
        found["labels"] = job.metadata
    return found


def _request_bodies(spans: Sequence[ReadableSpan], *, max_bytes: int = MAX_REQUEST_BYTES) -> list[bytes]:
    """Protobuf `ExportTraceServiceRequest`s of whole traces, each under `max_bytes` unless one trace is not."""
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.context is not None:
            by_trace.setdefault(span.context.trace_id, []).append(span)
    bodies: list[bytes] = []
    group: list[ReadableSpan] = []
    size = 0
    for trace_spans in by_trace.values():
        # A trace's own encoding is about what it adds to a request (their resource and scope are shared).
        trace_size = len(encode_spans(trace_spans).SerializeToString())
        if group and size + trace_size > max_bytes:
            bodies.append(encode_spans(group).SerializeToString())
            group, size = [], 0
        group.extend(trace_spans)
        size += trace_size
    if group:
        bodies.append(encode_spans(group).SerializeToString())
    return bodies


def _nanos(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
