"""A real OTLP/HTTP trace receiver for the export sinks' tests: Langfuse's OTLP route and a collector's.

It accepts a POST on any path (`/api/public/otel/v1/traces`, `/v1/traces`), in protobuf or JSON, gzipped or
not, decodes it the way a collector does, and keeps every span with the request's path and headers (so a test
checks the auth too). `fail()` makes it answer errors until `recover()`, like a collector that is down.

    with OtlpReceiver() as receiver:
        ...  # point a sink at receiver.url
        [span] = receiver.spans()
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}
"""OTLP/JSON spells these as hex (the spec's exception to the protobuf JSON mapping, which wants base64)."""


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with ids in hex and attribute values as Python values."""

    path: str
    headers: dict[str, str]
    """The request's headers, names in lower case."""
    content_type: str
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    """`Status.StatusCode`: 0 unset, 1 ok, 2 error."""
    status_message: str
    attributes: dict[str, Any]
    events: list[str] = field(default_factory=list)
    """The names of the span's events."""


class _State:
    """What requests write from the server's thread and tests read from theirs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.failing_status: int | None = None


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _id_as_base64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode()
            if key in _ID_FIELDS and item
            else _hex_ids_to_base64(item)
            for key, item in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def decode_request(body: bytes, content_type: str, content_encoding: str = "") -> ExportTraceServiceRequest:
    """An OTLP/HTTP trace request's body, protobuf or JSON; raises ValueError on anything else."""
    if content_encoding == "gzip":
        body = gzip.decompress(body)
    request = ExportTraceServiceRequest()
    if content_type.startswith("application/x-protobuf"):
        request.ParseFromString(body)
    elif content_type.startswith("application/json"):
        json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request)
    else:
        raise ValueError(f"not an OTLP content type: {content_type!r}")
    return request


def _spans(
    request: ExportTraceServiceRequest, path: str, headers: dict[str, str], content_type: str
) -> list[ReceivedSpan]:
    found: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        path=path,
                        headers=headers,
                        content_type=content_type,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        events=[event.name for event in span.events],
                    )
                )
    return found


def _build_app(state: _State) -> Starlette:
    async def accept(request: Request) -> Response:
        body = await request.body()
        with state.lock:
            state.requests += 1
            failing = state.failing_status
        if failing is not None:
            return JSONResponse({"error": "failing as told"}, status_code=failing)
        content_type = request.headers.get("content-type", "")
        try:
            decoded = decode_request(body, content_type, request.headers.get("content-encoding", ""))
        except ValueError as err:  # protobuf's DecodeError and json_format's ParseError are ValueErrors
            return JSONResponse({"error": str(err)}, status_code=400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        spans = _spans(decoded, request.url.path, headers, content_type)
        with state.lock:
            state.spans.extend(spans)
        # What a collector answers: an ExportTraceServiceResponse with nothing rejected.
        return JSONResponse({"partialSuccess": {}})

    return Starlette(routes=[Route("/{path:path}", accept, methods=["POST"])])


class OtlpReceiver:
    """The receiver on 127.0.0.1 and a free port, run by uvicorn in a daemon thread."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        """`http://127.0.0.1:PORT`, the base URL to give a sink."""

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # binding here, not in uvicorn, means no race for the port
        port = sock.getsockname()[1]
        config = uvicorn.Config(_build_app(self._state), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        # uvicorn installs signal handlers only on the main thread, so running it in another one is safe.
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("OTLP receiver did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def fail(self, status: int = 503) -> None:
        """Answer every request with `status` (without keeping it) until `recover()`."""
        with self._state.lock:
            self._state.failing_status = status

    def recover(self) -> None:
        with self._state.lock:
            self._state.failing_status = None

    @property
    def requests(self) -> int:
        """Every POST received, failed ones included."""
        with self._state.lock:
            return self._state.requests

    def spans(self) -> list[ReceivedSpan]:
        """Every span accepted so far, in arrival order."""
        with self._state.lock:
            return list(self._state.spans)

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
