"""ExportWorkflow on the time-skipping server with a scripted `export_batch` (registered under the real name), its
recorded history replayed, and `ensure_export_workflows` on a real dev server.

Re-record the history after changing the workflow's commands: `python -m tests.workflows.test_export`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from schemas.exports import ExportBatchInput, ExportBatchOutput, ExportWorkflowInput, SinkName, export_workflow_id
from settings import Settings
from tests.support.common import HISTORIES
from workflows.export import BATCHES_PER_RUN, MIN_WAIT, ExportWorkflow, ensure_export_workflows

RECORDED = HISTORIES / "export" / "drain.json"
"""In a subfolder: `tests/workflows/test_replay.py` reads every job history at the top level."""

INPUT = ExportWorkflowInput(sink="warehouse", batch_size=50, max_age_s=2.0)
MORE = ExportBatchOutput(selected=50, sent=50, more=True, wait_s=0)
DONE = ExportBatchOutput(selected=3, sent=3, more=False, wait_s=0)


def waiting(seconds: float) -> ExportBatchOutput:
    return ExportBatchOutput(selected=0, sent=0, more=False, wait_s=seconds)


def sink_down() -> ApplicationError:
    return ApplicationError("RudderStack answered 503")


@dataclass(frozen=True)
class Call:
    input: ExportBatchInput
    attempt: int
    at: datetime
    """When the attempt ran, on the test server's clock (skipped along with the timers)."""
    run_id: str | None


class ScriptedExports:
    """`export_batch`, answering each attempt with the script's next step; past its end it fails the workflow
    (non-retryable), which ends the otherwise endless run so the test can read what happened."""

    def __init__(self, script: Sequence[ExportBatchOutput | ApplicationError]) -> None:
        self.script = list(script)
        self.calls: list[Call] = []
        self.called = asyncio.Event()
        self.clock: Callable[[], Awaitable[datetime]] | None = None
        """The test server's clock (`WorkflowEnvironment.get_current_time`), set by `exporting`."""

    @activity.defn(name="export_batch")
    async def export_batch(self, input: ExportBatchInput) -> ExportBatchOutput:
        info = activity.info()
        at = await self.clock() if self.clock is not None else info.current_attempt_scheduled_time
        self.calls.append(Call(input, info.attempt, at, info.workflow_run_id))
        self.called.set()
        if not self.script:
            raise ApplicationError("end of the script", non_retryable=True)
        step = self.script.pop(0)
        if isinstance(step, ApplicationError):
            raise step
        return step

    def gaps(self) -> list[float]:
        """Seconds between consecutive attempts."""
        return [(b.at - a.at).total_seconds() for a, b in zip(self.calls, self.calls[1:], strict=False)]

    async def wait_for_call(self) -> None:
        await asyncio.wait_for(self.called.wait(), timeout=10)


@dataclass
class Rig:
    fake: ScriptedExports
    handle: WorkflowHandle[Any, Any]

    async def until_end_of_script(self) -> None:
        """Let the run go (time skips while it is awaited) until the script ran out."""
        with pytest.raises(WorkflowFailureError):
            await self.handle.result()


async def timers(rig: Rig) -> list[float]:
    """The durations of the timers the workflow started, in seconds."""
    history = await rig.handle.fetch_history()
    return [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for event in history.events
        if event.HasField("timer_started_event_attributes")
    ]


@contextlib.asynccontextmanager
async def exporting(env: WorkflowEnvironment, fake: ScriptedExports) -> AsyncIterator[Rig]:
    """The workflow started with `INPUT`, on a worker of a fresh task queue running `fake`."""
    task_queue = f"tq-{uuid.uuid4()}"
    fake.clock = env.get_current_time
    async with Worker(env.client, task_queue=task_queue, workflows=[ExportWorkflow], activities=[fake.export_batch]):
        handle = await env.client.start_workflow(
            ExportWorkflow.run, INPUT, id=f"export-{uuid.uuid4()}", task_queue=task_queue
        )
        yield Rig(fake, handle)


async def test_when_nothing_is_due_it_waits_as_long_as_the_activity_says(env: WorkflowEnvironment) -> None:
    fake = ScriptedExports([waiting(30), waiting(1.5)])

    async with exporting(env, fake) as rig:
        await rig.until_end_of_script()

    assert len(fake.calls) == 3
    assert await timers(rig) == [30, 1.5]
    first, second = fake.gaps()
    assert first >= 30 and second >= 1.5
    assert all(call.input == ExportBatchInput(sink="warehouse", batch_size=50, max_age_s=2.0) for call in fake.calls)


async def test_while_full_batches_wait_it_exports_again_at_once(env: WorkflowEnvironment) -> None:
    fake = ScriptedExports([MORE, MORE, DONE, waiting(10)])

    async with exporting(env, fake) as rig:
        await rig.until_end_of_script()

    assert len(fake.calls) == 5
    # `more`: straight on, no timer; a batch that was not full: a short wait before looking again.
    assert await timers(rig) == [MIN_WAIT.total_seconds(), 10]


async def test_a_failing_batch_is_retried_with_backoff_until_the_sink_takes_it(env: WorkflowEnvironment) -> None:
    fake = ScriptedExports([sink_down(), sink_down(), sink_down(), sink_down(), DONE])

    async with exporting(env, fake) as rig:
        await rig.until_end_of_script()

    attempts = [call.attempt for call in fake.calls]
    assert attempts[:5] == [1, 2, 3, 4, 5]  # one batch, retried until it went
    # Backoff from 1 s, doubling (each gap at least its interval, and short of the next one).
    assert all(interval <= gap < 2 * interval for gap, interval in zip(fake.gaps()[:4], [1, 2, 4, 8], strict=True))
    assert await timers(rig) == [0.1]  # the retries are the server's, not the workflow's
    assert all(call.input == fake.calls[0].input for call in fake.calls[:5])
    assert fake.calls[5].attempt == 1  # the next batch


async def test_a_flush_exports_what_is_pending_without_waiting(env: WorkflowEnvironment) -> None:
    fake = ScriptedExports([waiting(600), DONE])

    async with exporting(env, fake) as rig:
        await fake.wait_for_call()
        await rig.handle.signal(ExportWorkflow.flush)
        await rig.until_end_of_script()

    assert fake.calls[1].input.max_age_s == 0  # anything pending is due
    assert fake.gaps()[0] < 600
    assert fake.calls[2].input.max_age_s == INPUT.max_age_s  # a flush counts once


async def test_after_its_batches_per_run_it_continues_as_new_with_the_same_input(env: WorkflowEnvironment) -> None:
    fake = ScriptedExports([MORE] * BATCHES_PER_RUN + [waiting(5)])

    async with exporting(env, fake) as rig:
        await rig.until_end_of_script()

    runs = [call.run_id for call in fake.calls]
    assert len(set(runs[:BATCHES_PER_RUN])) == 1
    assert runs[BATCHES_PER_RUN] != runs[0]
    assert rig.handle.result_run_id == runs[0]
    assert fake.calls[BATCHES_PER_RUN].input == fake.calls[0].input


# --- replay ---------------------------------------------------------------------------------------------


def replayer() -> Replayer:
    return Replayer(workflows=[ExportWorkflow], data_converter=pydantic_data_converter)


def scenario() -> ScriptedExports:
    """A batch, more; a wait (flushed); a failing batch retried; then the script ends."""
    return ScriptedExports([MORE, waiting(600), sink_down(), DONE, waiting(3)])


async def run_scenario(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    fake = scenario()
    async with exporting(env, fake) as rig:
        while len(fake.calls) < 2:
            fake.called.clear()
            await fake.wait_for_call()
        await rig.handle.signal(ExportWorkflow.flush)
        await rig.until_end_of_script()
    return rig.handle


def _without_stack_traces(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_stack_traces(v) for k, v in value.items() if k != "stackTrace"}
    if isinstance(value, list):
        return [_without_stack_traces(v) for v in value]
    return value


async def test_the_recorded_history_replays() -> None:
    raw = json.loads(RECORDED.read_text())

    result = await replayer().replay_workflow(WorkflowHistory.from_json(RECORDED.stem, raw))

    assert result.replay_failure is None


async def test_a_fresh_history_replays(env: WorkflowEnvironment) -> None:
    handle = await run_scenario(env)

    history = await handle.fetch_history()

    result = await replayer().replay_workflow(history)
    assert result.replay_failure is None
    assert any(e.HasField("workflow_execution_signaled_event_attributes") for e in history.events)


async def record(path: Path = RECORDED) -> None:
    """Run `scenario` on a time-skipping server and write its history (as `temporal workflow show` would)."""
    from tests.workflows.conftest import time_skipping_server

    async with time_skipping_server() as env:
        handle = await run_scenario(env)
        history = await handle.fetch_history()
    text = json.dumps(_without_stack_traces(history.to_json_dict()), indent=1) + "\n"
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(path.write_text, text)
    print(f"{len(history.events)} events -> {path}")


# --- one workflow per sink ------------------------------------------------------------------------------


async def test_each_configured_sink_gets_one_export_workflow_however_many_workers_ensure_it(temporal: Client) -> None:
    prefix = f"export-test-{uuid.uuid4().hex[:8]}-"
    settings = Settings(env="test", admin_api_key="unused", task_queue=f"tq-{uuid.uuid4()}", export_batch_size=77)
    sinks: list[SinkName] = ["warehouse", "otlp"]
    handles = [temporal.get_workflow_handle(export_workflow_id(sink, prefix=prefix)) for sink in sinks]

    try:
        await ensure_export_workflows(temporal, settings, sinks, id_prefix=prefix)
        first = [await handle.describe() for handle in handles]
        await ensure_export_workflows(temporal, settings, sinks, id_prefix=prefix)  # another worker, or a restart
        again = [await handle.describe() for handle in handles]

        assert [d.run_id for d in again] == [d.run_id for d in first]
        assert {(d.workflow_type, d.status, d.task_queue) for d in again} == {
            ("ExportWorkflow", WorkflowExecutionStatus.RUNNING, settings.task_queue)
        }
        started = await handles[0].fetch_history()
        input = started.events[0].workflow_execution_started_event_attributes.input.payloads[0].data
        assert json.loads(input) == {"sink": "warehouse", "batch_size": 77, "max_age_s": settings.export_max_age_s}

        await handles[0].terminate("an operator applies new settings")
        await ensure_export_workflows(temporal, settings, sinks, id_prefix=prefix)  # the next worker start
        assert (await handles[0].describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test over")


if __name__ == "__main__":
    asyncio.run(record())
