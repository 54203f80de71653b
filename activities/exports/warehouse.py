"""The warehouse sink: outbox events as RudderStack `track` messages, through its HTTP API (`/v1/batch`).

RudderStack drops a message whose `messageId` it has already seen, so a batch sent again after a failure (the
outbox is at-least-once) lands once: the message id is the event's id, the same on every attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from schemas.exports import OutboxEvent, SinkName
from settings import Settings

MAX_REQUEST_BYTES = 500_000
"""RudderStack refuses a `/v1/batch` request over ~500 KB: a larger batch goes in several requests."""
REQUEST_TIMEOUT_S = 30.0
"""One request's budget; the export activity's start-to-close timeout bounds the whole batch."""
_LIBRARY = {"library": {"name": "kintsugi"}}


class RudderStackRejected(Exception):
    """RudderStack answered a batch with a non-2xx status: nothing of that request counts as delivered."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"RudderStack answered {status}: {body[:200]}")
        self.status = status


def track_message(event: OutboxEvent) -> dict[str, Any]:
    """The `track` message of one outbox event (DESIGN.md, "Telemetry and exports")."""
    return {
        "type": "track",
        "event": event.type,
        "messageId": str(event.id),
        "userId": event.tenant_id,
        "timestamp": event.created_at.isoformat(),
        "properties": {"job_id": event.job_id, **event.payload},
        "context": _LIBRARY,
    }


def request_bodies(messages: Sequence[dict[str, Any]], *, max_bytes: int = MAX_REQUEST_BYTES) -> Iterator[bytes]:
    """`{"batch": [...]}` bodies of at most `max_bytes` each, messages in order; a message larger than that on
    its own still goes, alone (RudderStack decides about it)."""
    head, tail = b'{"batch":[', b"]}"
    encoded: list[bytes] = []
    size = len(head) + len(tail)
    for message in messages:
        item = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        if encoded and size + len(item) + 1 > max_bytes:
            yield head + b",".join(encoded) + tail
            encoded, size = [], len(head) + len(tail)
        encoded.append(item)
        size += len(item) + 1
    if encoded:
        yield head + b",".join(encoded) + tail


class WarehouseSink:
    """Every outbox event goes to the warehouse (the tenant's `enable_warehouse_export` decides, not the row)."""

    name: SinkName = "warehouse"

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        data_plane_url: str,
        write_key: str,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._http = http
        """Without retries of its own: the export activity's retry policy is the only one."""
        self._url = f"{data_plane_url.rstrip('/')}/v1/batch"
        # Basic auth with the write key as the user and no password, as RudderStack's HTTP API expects.
        self._auth = httpx.BasicAuth(write_key, "")
        self._max_request_bytes = max_request_bytes

    def wants(self, event: OutboxEvent) -> bool:
        return True

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Send every event, in requests under RudderStack's size limit; raise at the first one refused.

        Requests sent before a refused one are sent again on the retry: their message ids make that harmless.
        """
        messages = [track_message(event) for event in events]
        for body in request_bodies(messages, max_bytes=self._max_request_bytes):
            response = await self._http.post(
                self._url,
                content=body,
                auth=self._auth,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT_S,
            )
            if not response.is_success:
                raise RudderStackRejected(response.status_code, response.text)


def warehouse_sink(settings: Settings, http: httpx.AsyncClient, environ: Mapping[str, str]) -> WarehouseSink | None:
    """The warehouse sink when `KINTSUGI_RUDDERSTACK_DATA_PLANE_URL` is set; None otherwise."""
    if not settings.rudderstack_data_plane_url.strip():
        return None
    return WarehouseSink(
        http, data_plane_url=settings.rudderstack_data_plane_url.strip(), write_key=settings.rudderstack_write_key
    )
