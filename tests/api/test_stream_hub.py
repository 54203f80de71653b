"""The live stream of a job on one API replica: ordered, resumable, and honest when an attempt breaks it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.stream_hub import StreamBroken, StreamHub


def text(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


async def follow(hub: StreamHub, job_id: str, after: int = 0) -> list[tuple[int, str]]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return [
        (event.offset, event.choices[0]["delta"].get("content", ""))
        async for event in hub.follow(job_id, after=after, until=done)
    ]


def listen_in_background(hub: StreamHub, job_id: str, received: list[int]) -> asyncio.Task[None]:
    """A follower that joined before anything was published, noting each event's offset."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def listen() -> None:
        async for event in hub.follow(job_id, after=0, until=done):
            received.append(event.offset)

    return asyncio.create_task(listen())


async def test_followers_get_every_chunk_with_offsets_and_can_resume_from_one() -> None:
    hub = StreamHub()
    hub.watch("job")
    for piece in ("Hel", "lo, ", "world"):
        hub.publish("job", (1, 1), text(piece))
    hub.end("job", (1, 1))

    assert await follow(hub, "job") == [(3, "Hel"), (7, "lo, "), (12, "world")]
    assert await follow(hub, "job", after=7) == [(12, "world")]


async def test_a_follower_receives_chunks_published_after_it_joined() -> None:
    hub = StreamHub()
    hub.watch("job")
    received: list[int] = []
    listener = listen_in_background(hub, "job", received)
    await asyncio.sleep(0)
    hub.publish("job", (1, 1), text("ab"))
    await asyncio.sleep(0)
    hub.publish("job", (1, 1), text("cd"))
    hub.end("job", (1, 1))
    await asyncio.wait_for(listener, 1)

    assert received == [2, 4]


async def test_finish_reasons_and_usage_only_chunks_are_left_to_the_record() -> None:
    hub = StreamHub()
    hub.watch("job")
    hub.publish("job", (1, 1), {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]})
    hub.publish("job", (1, 1), {"choices": [], "usage": {"prompt_tokens": 1}})
    hub.end("job", (1, 1))

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    events = [event async for event in hub.follow("job", after=0, until=done)]
    assert [event.choices[0]["finish_reason"] for event in events] == [None]


async def test_a_retry_after_printed_characters_breaks_the_stream_for_its_followers() -> None:
    hub = StreamHub()
    hub.watch("job")
    received: list[int] = []
    listener = listen_in_background(hub, "job", received)
    hub.publish("job", (1, 1), text("partial"))
    await asyncio.sleep(0.01)
    hub.publish("job", (1, 2), text("another answer"))

    with pytest.raises(StreamBroken, match="job"):
        await asyncio.wait_for(listener, 1)
    assert received == [7]
    assert await follow(hub, "job") == []  # later readers get the recorded answer instead


async def test_an_attempt_that_failed_before_printing_anything_hands_over_to_the_next() -> None:
    hub = StreamHub()
    hub.watch("job")
    hub.publish("job", (1, 1), {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    hub.cut("job", (1, 1))
    hub.publish("job", (2, 1), text("rerouted"))
    hub.end("job", (2, 1))

    assert [offset for offset, _ in await follow(hub, "job")] == [0, 8]


async def test_a_relay_for_a_job_nobody_watches_is_dropped() -> None:
    hub = StreamHub()
    hub.publish("job", (1, 1), text("x"))

    assert not hub.watching("job")
    assert await follow(hub, "job") == []


async def test_a_stream_outlives_a_follower_that_left_while_its_job_runs() -> None:
    hub = StreamHub(keep_s=0)
    hub.watch("job")
    hub.publish("job", (1, 1), text("before"))
    hub.watch("another")  # forgets what is due to be forgotten

    hub.publish("job", (1, 1), text(" after"))
    hub.end("job", (1, 1))

    assert [content for _, content in await follow(hub, "job")] == ["before", " after"]
