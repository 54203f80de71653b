"""Live answers of the jobs this API replica is streaming: what the relay pushed, for the clients watching.

One `LiveStream` per job: the chat route opens it before it starts the job, the relay endpoint feeds it
the worker's chunks, and any number of clients follow it (the one that asked, and any that reattach here
with `Last-Event-ID`). A stream is one attempt of one call: if a second attempt starts after characters
were delivered, the stream is *broken* (a client cannot take back what it printed) and followers get an
error naming the job; the finished answer is then read from the job. Streams are forgotten a while after
they end; the finished answer never needs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from domain.streaming import StreamEvent, delta_units

Generation = tuple[int, int]
"""(call number, attempt) of the upstream call a chunk came from."""


class StreamBroken(Exception):
    """The live stream of a job stopped before its answer was complete (its worker died, the call failed
    after characters were delivered): the job goes on, and its finished answer can be read."""


@dataclass
class LiveStream:
    events: list[StreamEvent] = field(default_factory=list)
    offset: int = 0
    generation: Generation | None = None
    ended: bool = False
    broken: str | None = None
    """Why the stream broke, for the error event; None while it is whole."""
    closed_at: float | None = None
    touched_at: float = field(default_factory=time.monotonic)
    """When the stream was opened or last given a chunk."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class StreamHub:
    def __init__(self, *, keep_s: float = 300.0, idle_s: float = 3600.0) -> None:
        self._streams: dict[str, LiveStream] = {}
        self._keep_s = keep_s
        self._idle_s = idle_s

    def watch(self, job_id: str) -> None:
        """Expect a relay for `job_id` (before the job starts, so no chunk arrives unexpected)."""
        self._forget_old()
        self._streams.setdefault(job_id, LiveStream())

    def watching(self, job_id: str) -> bool:
        return job_id in self._streams

    def delivered(self, job_id: str) -> bool:
        """Whether the live stream of `job_id` has anything for a client."""
        stream = self._streams.get(job_id)
        return stream is not None and bool(stream.events)

    def publish(self, job_id: str, generation: Generation, chunk: dict[str, Any]) -> None:
        stream = self._streams.get(job_id)
        if stream is None or stream.broken or stream.ended:
            return
        if stream.generation != generation:
            if stream.offset > 0:
                self._break(stream, f"job {job_id}: the upstream call was retried after part of the answer was sent")
                return
            stream.generation = generation  # nothing printed yet: the new attempt simply takes over
        # Finish reasons and usage come from the recorded answer once the job has finished (so they are sent
        # once, and only for an answer that was billed); the live stream carries the deltas.
        choices = [
            {**{k: v for k, v in choice.items() if k != "finish_reason"}, "finish_reason": None}
            for choice in chunk.get("choices") or []
            if isinstance(choice, dict) and (choice.get("delta") or choice.get("logprobs"))
        ]
        if not choices:
            return
        stream.touched_at = time.monotonic()
        stream.offset += delta_units(choices)
        stream.events.append(StreamEvent(stream.offset, choices))
        stream.notify()

    def end(self, job_id: str, generation: Generation) -> None:
        """The call behind the stream succeeded: everything it had to say was published."""
        stream = self._streams.get(job_id)
        if stream is not None and stream.generation == generation and not stream.broken:
            stream.ended = True
            stream.closed_at = time.monotonic()
            stream.notify()

    def cut(self, job_id: str, generation: Generation | None) -> None:
        """The relay of `generation` stopped without its end: its worker died or its attempt failed."""
        stream = self._streams.get(job_id)
        if stream is None or stream.ended or stream.broken:
            return
        if generation is None or stream.generation == generation:
            if stream.offset > 0:
                self._break(stream, f"job {job_id}: the worker streaming its answer stopped mid-stream")
            else:
                stream.generation = None  # nothing printed: the next attempt may stream from the start

    def release(self, job_id: str) -> None:
        """The job behind the stream has finished (or never started): forget the stream after the grace
        period, in which a client that dropped can still resume from it."""
        stream = self._streams.get(job_id)
        if stream is not None and stream.closed_at is None:
            stream.closed_at = time.monotonic()

    async def follow(self, job_id: str, *, after: int, until: asyncio.Future[Any]) -> AsyncIterator[StreamEvent]:
        """The stream's events past `after` characters, live, until it ends or `until` (the job) is done.

        Raises:
            StreamBroken: the stream broke; what was yielded is all this stream will say.
        """
        stream = self._streams.get(job_id)
        if stream is None or stream.broken:
            return  # nothing live (any more): the caller reads the finished answer from the job
        index = 0
        while True:
            while index < len(stream.events):
                event = stream.events[index]
                index += 1
                if after == 0 or event.offset > after:
                    yield event
            if stream.broken:
                raise StreamBroken(stream.broken)
            if stream.ended or until.done():
                return
            changed = asyncio.ensure_future(stream._changed.wait())
            try:
                await asyncio.wait({changed, until}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    def _break(self, stream: LiveStream, reason: str) -> None:
        stream.broken = reason
        stream.closed_at = time.monotonic()
        stream.notify()

    def _forget_old(self) -> None:
        # A stream whose job is still running is kept (its client may be reading, or may resume); one whose
        # job finished is kept `keep_s` for a resume; one nobody touched for `idle_s` lost its job somehow.
        now = time.monotonic()
        for job_id, stream in list(self._streams.items()):
            closed = stream.closed_at is not None and now - stream.closed_at > self._keep_s
            if closed or now - stream.touched_at > self._idle_s:
                del self._streams[job_id]
