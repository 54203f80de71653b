"""The OTLP job-trace sink: each finished job's span tree from history goes to the OpenTelemetry collector.

Live spans cannot show what happened across a crash, a retry hours later, a park and its repair; the trace
read back from history can, once the job has finished. It goes to the endpoint the standard `OTEL_*` variables
name, as OTLP/HTTP: protobuf unless `OTEL_EXPORTER_OTLP_PROTOCOL` says `http/json`. Its ids are derived from
the job (`domain.traces.otlp`), so a batch sent again repeats the same spans rather than adding new ones.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.util.re import parse_env_headers
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.exports.finished_jobs import closed_job
from client.job_traces import load_trace
from domain.errors import JobNotFound
from domain.traces.otlp import trace_to_otlp
from schemas.exports import TERMINAL_JOB_EVENTS, OutboxEvent, SinkName
from settings import Settings

OtlpProtocol = Literal["http/protobuf", "http/json"]
REQUEST_TIMEOUT_S = 30.0
MAX_REQUEST_BYTES = 4_000_000
"""A batch's traces go in requests of at most this size, under a collector's usual limit (a job larger on its
own still goes, alone)."""
HISTORY_READS = 16
"""Job traces read from Temporal at once while a batch is prepared."""
_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}

log = logging.getLogger("kintsugi.exports.otlp")


@dataclass(frozen=True)
class OtlpTraceConfig:
    endpoint: str
    """The full URL traces are posted to (`.../v1/traces`)."""
    headers: dict[str, str] = field(default_factory=dict)
    protocol: OtlpProtocol = "http/protobuf"
    gzip: bool = False
    service_name: str = "kintsugi"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OtlpTraceConfig | None:
        """The OpenTelemetry exporter's variables, traces-specific ones first; None when no endpoint is set.

        As the spec says: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is, `OTEL_EXPORTER_OTLP_ENDPOINT` gets
        `/v1/traces` appended.
        """

        def env(name: str) -> str:
            return (
                environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or ""
            ).strip()

        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not endpoint:
            base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not base:
                return None
            endpoint = base.rstrip("/") + "/v1/traces"
        protocol = env("PROTOCOL") or "http/protobuf"
        if protocol not in ("http/protobuf", "http/json"):
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: job traces are exported over OTLP/HTTP "
                "(http/protobuf or http/json); point the endpoint at the collector's HTTP port (4318)"
            )
        return cls(
            endpoint=endpoint,
            headers=dict(parse_env_headers(env("HEADERS"), liberal=True)),
            protocol="http/json" if protocol == "http/json" else "http/protobuf",
            gzip=env("COMPRESSION") == "gzip",
            service_name=environ.get("OTEL_SERVICE_NAME", "").strip() or "kintsugi",
        )


class CollectorRejected(Exception):
    """The collector answered with a non-2xx status: nothing of that request counts as delivered."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the OTLP endpoint answered {status}: {body[:200]}")
        self.status = status


class OtlpTraceSink:
    """One OTLP trace per finished job (its terminal event): one span per span of its trace."""

    name: SinkName = "otlp"

    def __init__(
        self,
        config: OtlpTraceConfig,
        *,
        temporal: Client,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
    ) -> None:
        self._config = config
        self._temporal = temporal
        self._sessions = sessions
        """Where the trace's costs are read (`load_trace`)."""
        self._http = http
        """Without retries of its own: the export activity's retry policy is the only one."""
        content_type = "application/json" if config.protocol == "http/json" else "application/x-protobuf"
        self._headers = {**config.headers, "Content-Type": content_type}
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"

    def wants(self, event: OutboxEvent) -> bool:
        return event.type in TERMINAL_JOB_EVENTS

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Read each job's trace (once it has closed) and post the batch's traces; raise at the first refusal."""
        documents = [document for document in await self._read_traces(events) if document is not None]
        # Encoding takes a millisecond or so per job: in a thread, the worker's event loop goes on meanwhile.
        for body in await asyncio.to_thread(self._request_bodies, documents):
            response = await self._http.post(
                self._config.endpoint, content=body, headers=self._headers, timeout=REQUEST_TIMEOUT_S
            )
            if not response.is_success:
                raise CollectorRejected(response.status_code, response.text)

    async def _read_traces(self, events: Sequence[OutboxEvent]) -> list[dict[str, Any] | None]:
        reads = asyncio.Semaphore(HISTORY_READS)
        jobs = {event.job_id: event.tenant_id for event in events}  # one trace per job, whatever the events

        async def read(job_id: str, tenant_id: str) -> dict[str, Any] | None:
            async with reads:
                try:
                    await closed_job(self._temporal, tenant_id, job_id)
                    trace = await load_trace(self._temporal, self._sessions, tenant_id, job_id)
                except JobNotFound:
                    # Past Temporal's retention (or deleted): there is nothing left to send, ever.
                    log.warning("job %s of tenant %s is gone from Temporal: no OTLP trace", job_id, tenant_id)
                    return None
            return trace_to_otlp(trace, service_name=self._config.service_name)

        return await asyncio.gather(*(read(job_id, tenant_id) for job_id, tenant_id in jobs.items()))

    def _request_bodies(self, documents: Sequence[dict[str, Any]]) -> list[bytes]:
        """Requests of whole traces, each under `MAX_REQUEST_BYTES` (before compression) unless one trace is not."""
        groups: list[list[dict[str, Any]]] = []
        size = 0
        for document in documents:
            document_size = len(self._encode([document]))
            if not groups or (groups[-1] and size + document_size > MAX_REQUEST_BYTES):
                groups.append([])
                size = 0
            groups[-1].append(document)
            size += document_size
        bodies = [self._encode(group) for group in groups]
        return [gzip.compress(body) for body in bodies] if self._config.gzip else bodies

    def _encode(self, documents: Sequence[dict[str, Any]]) -> bytes:
        merged = {"resourceSpans": [spans for document in documents for spans in document.get("resourceSpans", [])]}
        if self._config.protocol == "http/json":
            return json.dumps(merged, separators=(",", ":")).encode()
        return otlp_json_to_protobuf(merged).SerializeToString()


def otlp_trace_sink(
    settings: Settings,
    http: httpx.AsyncClient,
    environ: Mapping[str, str],
    *,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
) -> OtlpTraceSink | None:
    """The OTLP job-trace sink when an OTLP traces endpoint is configured; None otherwise."""
    config = OtlpTraceConfig.from_env(environ)
    return None if config is None else OtlpTraceSink(config, temporal=temporal, sessions=sessions, http=http)


def otlp_json_to_protobuf(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """An OTLP/JSON trace request as protobuf. OTLP/JSON spells trace and span ids in hex where protobuf's JSON
    mapping expects base64 (the spec's one exception to that mapping), so the ids are converted first."""
    return json_format.ParseDict(_ids_as_base64(document), ExportTraceServiceRequest())


def _ids_as_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _ID_FIELDS and isinstance(value, str)
            else _ids_as_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_ids_as_base64(item) for item in node]
    return node
