"""The warehouse export end to end: 500 jobs while the local RudderStack data plane refuses everything for a
while, then recovers. Every event of the outbox arrives, a repeat only under its own `messageId`, and the export
lag returns to 0.

The harness's worker runs the export activity (its settings name the data plane); the test starts the export
workflow on the harness's task queue, under an id of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY
from sqlmodel import select

from store.engine import create_engine, session_factory
from store.models import EventLog
from tests.support.common import HELLO
from tests.support.fake_rudderstack import FakeRudderStack
from tests.support.harness import Harness, KintsugiFactory
from workflows.export import ensure_export_workflows

JOBS = 500
CONCURRENCY = 25
WRITE_KEY = "e2e-write-key"


async def _until(condition: Callable[[], bool | Awaitable[bool]], what: str, *, timeout_s: float = 45) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.1)


async def _submit_jobs(kintsugi: Harness) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> str:
        async with gate:
            # Synchronous jobs (started eagerly on the API's worker): the fastest way to fill the outbox.
            response = await kintsugi.submit({"model": "sim-1", "messages": HELLO}, wait=10)
            assert response.status_code in (200, 202), response.text
            return str(response.json()["id"])

    return list(await asyncio.gather(*(one() for _ in range(JOBS))))


def _lag() -> float | None:
    return REGISTRY.get_sample_value("kintsugi_export_lag_seconds", {"sink": "warehouse"})


async def test_every_event_reaches_the_warehouse_though_it_was_down_for_a_while(
    make_kintsugi: KintsugiFactory, sqlite_url: str
) -> None:
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)

    async def outbox() -> list[EventLog]:
        async with sessions() as session:
            return list((await session.exec(select(EventLog))).all())

    async def finished(job_ids: list[str]) -> bool:
        done = {row.job_id for row in await outbox() if row.type in ("job.succeeded", "job.failed")}
        return done >= set(job_ids)

    async def delivered() -> bool:
        rows = await outbox()
        arrived = {message["messageId"] for message in receiver.messages}
        return all(row.warehouse_exported_at is not None and str(row.id) in arrived for row in rows)

    overrides: dict[str, Any] = {"export_batch_size": 100, "export_max_age_s": 0.5}
    with FakeRudderStack(write_key=WRITE_KEY) as receiver:
        overrides |= {"rudderstack_data_plane_url": receiver.url, "rudderstack_write_key": WRITE_KEY}
        async with make_kintsugi(sqlite_url, **overrides) as kintsugi:
            flag = await kintsugi.http.put(
                "/v1/flags/enable_warehouse_export", json={"enabled": True}, headers=kintsugi.admin
            )
            assert flag.status_code == 200, flag.text
            receiver.fail()
            prefix = f"export-e2e-{uuid.uuid4().hex[:8]}-"
            await ensure_export_workflows(kintsugi.temporal, kintsugi.settings, ["warehouse"], id_prefix=prefix)
            submitting = asyncio.create_task(_submit_jobs(kintsugi))
            try:
                # The same batch refused, then retried 1 s and 2 s later.
                await _until(lambda: len(receiver.refused) >= 3, "the export retried the refused batch")
                receiver.recover()  # while jobs keep coming
                receiver.lose_answers(1)  # a batch that arrives, but whose answer does not: it is sent again
                job_ids = await submitting
                await _until(lambda: finished(job_ids), "every job finished")
                await _until(delivered, "every event delivered and marked")
                await _until(lambda: _lag() == 0, "the export lag back at 0")
                rows = await outbox()
            finally:
                submitting.cancel()
                await kintsugi.temporal.get_workflow_handle(f"{prefix}warehouse").terminate("test over")
                await engine.dispose()

    assert {row.job_id for row in rows if row.type == "job.succeeded"} == set(job_ids)
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in receiver.messages:
        copies[message["messageId"]].append(message)
    assert set(copies) == {str(row.id) for row in rows}  # every event, and nothing else
    assert any(len(same) > 1 for same in copies.values())  # the batch whose answer was lost came twice
    assert all(copy == same[0] for same in copies.values() for copy in same)  # a repeat is the same message
    for row in rows:
        message = copies[str(row.id)][0]
        assert (message["type"], message["event"], message["userId"]) == ("track", row.type, row.tenant_id)
        assert message["properties"]["job_id"] == row.job_id
