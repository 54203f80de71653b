"""The warehouse sink against a local RudderStack data plane: the messages it sends, and what it does when the
data plane refuses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.exports.registry import build_sinks, close_sinks
from activities.exports.warehouse import RudderStackRejected, WarehouseSink
from schemas.exports import OutboxEvent
from settings import Settings
from tests.support.fake_rudderstack import FakeRudderStack

AT = datetime(2026, 11, 26, 12, 30, 5, 250000, tzinfo=UTC)


@pytest.fixture
def rudderstack() -> Iterator[FakeRudderStack]:
    with FakeRudderStack(write_key="wk-1") as server:
        yield server


def event(id: int, **payload: object) -> OutboxEvent:
    return OutboxEvent(
        id=id, tenant_id="acme", job_id=f"job-{id}", type="job.succeeded", payload=payload, created_at=AT
    )


async def test_each_event_is_a_track_message_with_its_id_as_message_id(
    rudderstack: FakeRudderStack, http: httpx.AsyncClient
) -> None:
    sink = WarehouseSink(http, data_plane_url=rudderstack.url, write_key="wk-1")

    await sink.deliver([event(41, cost_usd=0.002, route="fast"), event(42)])

    assert rudderstack.batches == [
        [
            {
                "type": "track",
                "event": "job.succeeded",
                "messageId": "41",
                "userId": "acme",
                "timestamp": "2026-11-26T12:30:05.250000+00:00",
                "properties": {"job_id": "job-41", "cost_usd": 0.002, "route": "fast"},
                "context": {"library": {"name": "kintsugi"}},
            },
            {
                "type": "track",
                "event": "job.succeeded",
                "messageId": "42",
                "userId": "acme",
                "timestamp": "2026-11-26T12:30:05.250000+00:00",
                "properties": {"job_id": "job-42"},
                "context": {"library": {"name": "kintsugi"}},
            },
        ]
    ]


async def test_a_batch_over_the_request_limit_goes_in_several_requests(
    rudderstack: FakeRudderStack, http: httpx.AsyncClient
) -> None:
    rudderstack.max_body_bytes = 2_000
    sink = WarehouseSink(http, data_plane_url=rudderstack.url, write_key="wk-1", max_request_bytes=2_000)
    events = [event(i, note="x" * 200) for i in range(1, 31)]

    await sink.deliver(events)

    assert len(rudderstack.batches) > 1
    assert rudderstack.refused == []
    assert [m["messageId"] for m in rudderstack.messages] == [str(i) for i in range(1, 31)]


async def test_a_refusing_data_plane_raises_with_its_status(
    rudderstack: FakeRudderStack, http: httpx.AsyncClient
) -> None:
    rudderstack.fail_next(1)
    sink = WarehouseSink(http, data_plane_url=rudderstack.url, write_key="wk-1")

    with pytest.raises(RudderStackRejected) as refused:
        await sink.deliver([event(1)])

    assert refused.value.status == 503
    assert rudderstack.messages == []
    assert rudderstack.refused == [503]  # one request: the sink does not retry on its own


async def test_a_wrong_write_key_is_refused(rudderstack: FakeRudderStack, http: httpx.AsyncClient) -> None:
    sink = WarehouseSink(http, data_plane_url=rudderstack.url, write_key="not-the-key")

    with pytest.raises(RudderStackRejected) as refused:
        await sink.deliver([event(1)])

    assert refused.value.status == 401


async def test_each_sink_is_built_only_when_its_endpoint_is_configured(
    http: httpx.AsyncClient, temporal: Client, sqlite_sessions: async_sessionmaker[AsyncSession]
) -> None:
    off = Settings(env="test", admin_api_key="k", rudderstack_data_plane_url="")
    on = Settings(
        env="test", admin_api_key="k", rudderstack_data_plane_url="http://rs.local", rudderstack_write_key="w"
    )
    everything = {
        "LANGFUSE_BASE_URL": "http://langfuse.local",
        "LANGFUSE_PUBLIC_KEY": "pk",
        "LANGFUSE_SECRET_KEY": "sk",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.local:4318",
    }

    def names(settings: Settings, environ: dict[str, str]) -> list[str]:
        sinks = build_sinks(settings, http, temporal=temporal, sessions=sqlite_sessions, environ=environ)
        close_sinks(sinks)
        return [s.name for s in sinks]

    assert names(off, {}) == []
    assert names(on, {}) == ["warehouse"]
    assert names(off, everything) == ["langfuse", "otlp"]
    assert names(on, everything) == ["warehouse", "langfuse", "otlp"]
    # A misconfigured exporter is left out (and logged); the others, and the worker's jobs, go on.
    assert names(on, {"LANGFUSE_BASE_URL": "http://langfuse.local"}) == ["warehouse"]
