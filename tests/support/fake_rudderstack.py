"""A local RudderStack data plane: `POST /v1/batch` with basic auth, recording the batches it accepts.

A real HTTP server (stdlib, one thread per request) on 127.0.0.1 and a free port. Tests tell it to refuse
requests with 503 for a while (`fail`, `recover`, `fail_next`), as a data plane that is down would, or to lose
the answer to a batch it recorded (`lose_answers`).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 500_000
"""RudderStack's limit on one `/v1/batch` request; larger ones are refused with 413."""


class FakeRudderStack:
    def __init__(self, *, write_key: str = "test-write-key", max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.write_key = write_key
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._batches: list[list[dict[str, Any]]] = []
        self._failing = False
        self._fail_next = 0
        self._lose_answers = 0
        self._refused: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        """`http://127.0.0.1:PORT`: the data plane URL (`KINTSUGI_RUDDERSTACK_DATA_PLANE_URL`)."""

    # --- steering ---------------------------------------------------------------------------------------

    def fail(self) -> None:
        """Refuse every request with 503 until `recover`."""
        with self._lock:
            self._failing = True

    def recover(self) -> None:
        with self._lock:
            self._failing = False
            self._fail_next = 0

    def fail_next(self, requests: int) -> None:
        """Refuse the next `requests` requests with 503, then accept again."""
        with self._lock:
            self._fail_next = requests

    def lose_answers(self, requests: int) -> None:
        """Record the next `requests` requests as arrived but answer them 503, as when the answer is lost on the
        way back: the sender cannot tell, and sends them again."""
        with self._lock:
            self._lose_answers = requests

    # --- what arrived -----------------------------------------------------------------------------------

    @property
    def batches(self) -> list[list[dict[str, Any]]]:
        """The accepted requests' messages, one list per request, in the order they arrived."""
        with self._lock:
            return [list(batch) for batch in self._batches]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, repeats included."""
        return [message for batch in self.batches for message in batch]

    @property
    def refused(self) -> list[int]:
        """The status of each refused request (503 while failing, 401 for bad auth, 413, 400)."""
        with self._lock:
            return list(self._refused)

    # --- the server -------------------------------------------------------------------------------------

    def _answer(self, path: str, authorization: str, body: bytes) -> int:
        expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        with self._lock:
            status = 200
            if path != "/v1/batch":
                status = 404
            elif authorization != expected:
                status = 401
            elif self._failing or self._fail_next > 0:
                self._fail_next = max(self._fail_next - 1, 0)
                status = 503
            elif len(body) > self.max_body_bytes:
                status = 413
            else:
                try:
                    batch = json.loads(body)["batch"]
                except (ValueError, KeyError, TypeError):
                    status = 400
                else:
                    self._batches.append(batch)
                    if self._lose_answers > 0:
                        self._lose_answers -= 1
                        status = 503
            if status != 200:
                self._refused.append(status)
            return status

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = fake._answer(self.path, self.headers.get("Authorization", ""), body)
                answer = b'{"ok":true}' if status == 200 else b'{"error":"refused"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a test's output is not the place for an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-rudderstack", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeRudderStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
