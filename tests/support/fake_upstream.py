"""A real HTTP server speaking the OpenAI and Anthropic protocols, with faults injected per model.

Tests start it in a background thread (`FakeUpstream`); the benchmark runs it as a process:

    python -m tests.support.fake_upstream --port 9101 --latency-ms 200

A separate process is steered over HTTP: `POST /_fake/configure {"model": ..., <behaviour>}`,
`POST /_fake/reset`, `GET /_fake/calls/{model}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.support.fake_anthropic import AnthropicBehavior, message_body, message_events
from tests.support.fake_chat import ChatBehavior, answer_body, answer_stream
from tests.support.fake_embeddings import embeddings_body


@dataclass(frozen=True)
class Behavior(ChatBehavior, AnthropicBehavior):
    """What the server does with requests for one model; see `FakeUpstream.configure`.

    The OpenAI chat endpoint's answer options (tool calls, refusals, usage details, spaced SSE chunks) are
    the fields of `ChatBehavior` (`fake_chat.py`).
    """

    fail_first: int = 0
    fail_always: bool = False
    status: int = 500
    retry_after: str | None = None
    error_code: str | None = None
    hang_s: float = 0.0
    latency_ms: float | None = None
    content: str | None = None
    malformed: bool = False
    """Answer a success as 200 with a truncated, unparsable JSON body."""

    @property
    def injects_failures(self) -> bool:
        return self.fail_always or self.fail_first > 0


@dataclass
class _ModelState:
    behavior: Behavior = field(default_factory=Behavior)
    calls: int = 0
    last_request: dict[str, Any] = field(default_factory=dict)


class Control:
    """Lock-guarded state of the server: tests write it from one thread, requests read it in another."""

    def __init__(self, *, latency_ms: float = 0) -> None:
        self.latency_ms = latency_ms
        self._lock = threading.Lock()
        self._models: dict[str, _ModelState] = {}

    def configure(self, model: str, **behavior: Any) -> None:
        """Replace the behaviour for `model` and restart its request count (so `fail_first` counts anew)."""
        with self._lock:
            self._models[model] = _ModelState(behavior=Behavior(**behavior))

    def calls(self, model: str) -> int:
        with self._lock:
            state = self._models.get(model)
            return state.calls if state else 0

    def last_request(self, model: str) -> dict[str, Any]:
        """`{"path", "headers", "body"}` of the latest request for `model` (header names lower-case)."""
        with self._lock:
            state = self._models.get(model)
            return dict(state.last_request) if state else {}

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def reset(self) -> None:
        with self._lock:
            self._models.clear()

    def record(self, model: str, request: dict[str, Any]) -> tuple[int, Behavior]:
        """Count a request; return its 1-based number for the model and the behaviour that applies."""
        with self._lock:
            state = self._models.setdefault(model, _ModelState())
            state.calls += 1
            state.last_request = request
            return state.calls, state.behavior


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts / Anthropic blocks
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _prompt_text(body: dict[str, Any]) -> str:
    return json.dumps(body.get("messages", "")) + str(body.get("system", ""))


def build_app(control: Control) -> FastAPI:
    app = FastAPI(title="fake upstream")

    async def admit(request: Request) -> tuple[dict[str, Any], int, Behavior] | Response:
        """Parse, count and record the request; sleep and answer the injected failure if one applies."""
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON", "invalid_request_error", None)
        if not isinstance(body, dict):
            return _error(400, "request body must be an object", "invalid_request_error", None)
        model = str(body.get("model", ""))
        n, behavior = control.record(model, {"path": request.url.path, "headers": dict(request.headers), "body": body})
        failing = behavior.fail_always or n <= behavior.fail_first
        if behavior.hang_s and (failing or not behavior.injects_failures):
            await asyncio.sleep(behavior.hang_s)
        if failing:
            return _injected_failure(behavior, model, n)
        latency = behavior.latency_ms if behavior.latency_ms is not None else control.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        if behavior.malformed:
            return Response('{"id": "truncated', media_type="application/json")
        return body, n, behavior

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, n, behavior = admitted
        completion_id = f"chatcmpl-fake-{n}"
        if body.get("stream"):
            return StreamingResponse(
                answer_stream(body, behavior, content=behavior.content, completion_id=completion_id),
                media_type="text/event-stream",
            )
        return JSONResponse(answer_body(body, behavior, content=behavior.content, completion_id=completion_id))

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, n, behavior = admitted
        content, message_id = behavior.content, f"msg_fake_{n}"
        if body.get("stream"):
            events = message_events(body, behavior, behavior, content=content, message_id=message_id)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(message_body(body, behavior, behavior, content=content, message_id=message_id))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        return JSONResponse(embeddings_body(admitted[0]))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-upstream"} for m in control.models()]
        return {"object": "list", "data": data}

    @app.post("/_fake/configure")
    async def configure(request: Request) -> Response:
        behavior = await request.json()
        model = behavior.pop("model", None)
        try:
            control.configure(str(model), **behavior)
        except TypeError as err:
            return _error(422, str(err), "invalid_request_error", None)
        return JSONResponse({"model": model})

    @app.post("/_fake/reset")
    async def reset() -> dict[str, str]:
        control.reset()
        return {}

    @app.get("/_fake/calls/{model}")
    async def calls(model: str) -> dict[str, int]:
        return {"calls": control.calls(model)}

    return app


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _injected_failure(behavior: Behavior, model: str, n: int) -> Response:
    if behavior.error_code == "context_length_exceeded":
        message = f"This model's maximum context length is 8192 tokens; request {n} for {model} exceeds it."
    else:
        message = f"injected failure {n} for {model}"
    headers = {"Retry-After": behavior.retry_after} if behavior.retry_after is not None else None
    error_type = _ERROR_TYPES.get(behavior.status, "server_error")
    return _error(behavior.status, message, error_type, behavior.error_code, headers)


def _error(
    status: int, message: str, error_type: str, code: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "code": code}}, status_code=status, headers=headers
    )


class FakeUpstream:
    """The fake server on 127.0.0.1 and a free port, run by uvicorn in a daemon thread."""

    def __init__(self, *, latency_ms: float = 0) -> None:
        self._control = Control(latency_ms=latency_ms)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        """`http://127.0.0.1:PORT`; the OpenAI base URL is `url + "/v1"`."""

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # binding here, not in uvicorn, means no race for the port
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self._control),
            log_level="warning",
            access_log=False,
            lifespan="off",
            # A hung request (hang_s) must not hold up stop().
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        # uvicorn installs signal handlers only on the main thread, so running it in another one is safe.
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def configure(self, model: str, **behavior: Any) -> None:
        """Set how requests whose `model` is `model` are answered, and restart its request count.

        Keywords: `fail_first` (fail the first K requests), `fail_always`, `status` (of failures, 500),
        `retry_after` (Retry-After header on failures), `error_code` (OpenAI error `code`), `hang_s`
        (sleep before answering: the failing requests if any are injected, else every request),
        `latency_ms` (delay of a success; the server-wide default otherwise), `content` (the reply;
        default `echo: <last user message>`), `malformed` (a 200 whose body is not JSON).
        The chat endpoint's answer options: `chunks` and `chunk_delay_ms` (a streamed answer in that many
        pieces, each after that pause), `tool_arguments`, `refusal`, `finish_reason`, `annotations`,
        `cached_tokens`, `reasoning_tokens`, `system_fingerprint` (see `fake_chat.ChatBehavior`).
        """
        valid = {f.name for f in fields(Behavior)}
        if unknown := set(behavior) - valid:
            raise TypeError(f"unknown behaviour {sorted(unknown)}; expected some of {sorted(valid)}")
        self._control.configure(model, **behavior)

    def calls(self, model: str) -> int:
        return self._control.calls(model)

    def last_request(self, model: str) -> dict[str, Any]:
        return self._control.last_request(model)

    def reset(self) -> None:
        self._control.reset()

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--latency-ms", type=float, default=0)
    args = parser.parse_args()
    uvicorn.run(
        build_app(Control(latency_ms=args.latency_ms)),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
