"""The worker's side of the token relay: one call's chunks, pushed to the API replica watching the job.

The API replica that holds a client's streaming connection names itself in the job (`relay_url`); the
activity opens one streamed `POST {relay_url}/internal/relay/{job_id}` when the first chunk arrives and
writes each chunk as a JSON line, then `{"end": true}` once the call has succeeded. A relay that cannot be
reached, or that goes away, is dropped: the call goes on, the answer is recorded as always, and the
client reads it whole when the job finishes. A body that stops without its end line (this worker died,
or the attempt failed) tells the API replica that the live stream is over for this attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from schemas.relay import RELAY_PATH, TOKEN_HEADER, RelayMessage

log = logging.getLogger("kintsugi.relay")

_CLOSE_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 2.0


class Relay:
    """Pushes chunks in order without ever holding up the upstream read (`send` only queues)."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, job_id: str, token: str, call_seq: int, attempt: int):
        self._http = http
        self._url = base_url.rstrip("/") + RELAY_PATH.format(job_id=job_id)
        self._headers = {TOKEN_HEADER: token, "Content-Type": "application/x-ndjson"}
        self._call_seq, self._attempt = call_seq, attempt
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._dropped = False

    async def send(self, chunk: dict[str, Any]) -> None:
        if self._dropped:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._post())
        self._lines.put_nowait(self._line(RelayMessage(call_seq=self._call_seq, attempt=self._attempt, chunk=chunk)))

    async def close(self, *, completed: bool) -> None:
        """End the body: with the end line when the call succeeded, without it when it failed."""
        if self._task is None:
            return
        if completed:
            self._lines.put_nowait(self._line(RelayMessage(call_seq=self._call_seq, attempt=self._attempt, end=True)))
        self._lines.put_nowait(None)
        try:
            await asyncio.wait_for(self._task, _CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._task.cancel()
            log.warning("relay to %s did not finish in %.0f s; dropped", self._url, _CLOSE_TIMEOUT_S)

    async def _body(self) -> AsyncIterator[bytes]:
        while (line := await self._lines.get()) is not None:
            yield line

    async def _post(self) -> None:
        timeout = httpx.Timeout(None, connect=_CONNECT_TIMEOUT_S)
        try:
            response = await self._http.post(self._url, content=self._body(), headers=self._headers, timeout=timeout)
            if response.status_code >= 400:
                log.warning("relay to %s refused: %s %s", self._url, response.status_code, response.text[:200])
        except httpx.HTTPError as err:
            # Nobody listens live any more (the replica restarted, the client left): the job goes on.
            log.info("relay to %s dropped: %s", self._url, err)
        finally:
            self._dropped = True

    @staticmethod
    def _line(message: RelayMessage) -> bytes:
        return message.model_dump_json(exclude_defaults=True).encode() + b"\n"
